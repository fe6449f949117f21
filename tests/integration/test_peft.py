"""One PEFT implementation (mvc.peft): its rules as pure functions, and the same merged bits from
``mvc.load``, ``mvc merge-adapter`` and a deployed channel — checked against peft's own
``merge_and_unload`` on CPU torch.

The reference tests need torch and peft. Outside CI they skip when those are missing; under CI
(``CI=true``, see .ci/run, which installs them) a missing one is a failure.
"""

from __future__ import annotations

import importlib
import json
import os
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

import mvc
from mvc import peft
from mvc.errors import EXIT_ERROR, InvalidInput
from mvc.formats.safetensors import TensorInfo

# --- the rules, as pure functions ------------------------------------------------------------


def config(**raw: Any) -> peft.AdapterConfig:
    return peft.parse_adapter_config(json.dumps(raw).encode(), "", "adapter_config.json")


def test_pattern_keys_match_module_names_as_peft_does() -> None:
    # peft.utils.other.get_pattern_key: re.match(rf"(.*\.)?({key})$", module), first key wins
    cfg = config(
        r=8,
        lora_alpha=16,
        rank_pattern={"q": 2, "layer.1.v": 4, r"layer\.[23]\.k": 6},
        alpha_pattern={"layer.1.q": 32},
    )
    assert cfg.rank_of("model.layer.0.q") == 2  # a suffix at a dot
    assert cfg.rank_of("model.layer.0.qq") == 8  # not a suffix at a dot
    assert cfg.rank_of("model.layer.0.xq") == 8
    assert cfg.rank_of("layer.1.v") == 4 and cfg.rank_of("x.layer.1.v") == 4
    assert cfg.rank_of("layer.3.k") == 6 and cfg.rank_of("layer.4.k") == 8  # keys are regexes
    assert cfg.alpha_of("layer.1.q") == 32 and cfg.alpha_of("layer.11.q") == 16
    assert cfg.scale_of("layer.1.q") == 32 / 2 and cfg.scale_of("layer.0.v") == 16 / 8
    assert config(r=4, lora_alpha=8, use_rslora=True).scale_of("any") == 8 / 2
    assert config(r=4).scale_of("any") == 8 / 4  # peft's LoraConfig defaults: lora_alpha=8
    assert config().rank == 8


def test_target_modules_and_exclude_modules_match_as_peft_does() -> None:
    listed = config(target_modules=["q_proj", "v"], exclude_modules=["layers.1.q_proj"])
    assert listed.targets("model.layers.0.q_proj") and listed.targets("v")
    assert not listed.targets("model.layers.1.q_proj")  # excluded by suffix
    assert not listed.targets("model.layers.0.xq_proj")
    regex = config(target_modules=r".*\.(q|v)_proj")
    assert regex.targets("a.q_proj") and not regex.targets("q_proj")  # a full match
    assert config(target_modules="all-linear").targets("anything")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"r": 0}, "r must be a positive"),
        ({"r": 2.5}, "r must be a positive integer"),
        ({"lora_alpha": "8"}, "lora_alpha must be a positive"),
        ({"lora_alpha": float("nan")}, "lora_alpha must be a positive"),
        ({"lora_alpha": float("inf")}, "lora_alpha must be a positive"),
        ({"alpha_pattern": {"q": float("nan")}}, "alpha_pattern['q'] must be a positive number"),
        ({"rank_pattern": {"q": 0}}, "rank_pattern['q'] must be a positive integer"),
        ({"alpha_pattern": {"(": 8}}, "alpha_pattern key '(' is not a regex"),
        ({"alpha_pattern": ["q"]}, "alpha_pattern must be an object"),
        ({"fan_in_fan_out": "yes"}, "fan_in_fan_out must be true or false"),
        ({"target_modules": [1]}, "target_modules must be a list"),
        ({"target_modules": "q_proj)"}, "target_modules 'q_proj)' is not a regex"),
        ({"rank_pattern": {"[q": 2}}, "rank_pattern key '[q' is not a regex"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(raw: dict, message: str) -> None:
    with pytest.raises(InvalidInput, match="adapter_config.json") as caught:
        config(**raw)
    assert message in caught.value.message


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 70)
    | st.sampled_from([float("nan"), float("inf"), 0.5, -1.0])
    | st.floats()
    | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
FIELDS = st.sampled_from(
    [
        "r",
        "lora_alpha",
        "use_rslora",
        "fan_in_fan_out",
        "rank_pattern",
        "alpha_pattern",
        "target_modules",
        "exclude_modules",
        "modules_to_save",
        "peft_type",
        "use_dora",
        "bias",
    ]
)


EDGES = st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), 0, -1, 0.5, 2**70, True, "8", None, {"q": 0}]
)
VALID = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"]}


@settings(max_examples=300, deadline=None)
@given(
    st.builds(lambda key, value: {**VALID, key: value}, FIELDS, EDGES | JSON)  # one field off
    | st.dictionaries(FIELDS, JSON, max_size=4)
    | JSON,
    st.binary(max_size=12),
)
def test_any_adapter_config_gives_a_value_or_our_own_error(raw: Any, noise: bytes) -> None:
    for data in (json.dumps(raw).encode(), noise):
        try:
            cfg = peft.parse_adapter_config(data, "", "adapter_config.json")
        except InvalidInput:
            continue
        for module in ("q", "layer.1.q", ""):
            cfg.targets(module)
            if cfg.peft_type == "LORA":
                assert cfg.scale_of(module) > 0 and cfg.max_rank >= 1
        cfg.unsupported_reason()


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ({"use_dora": True}, "DoRA (use_dora: true)"),
        ({"peft_type": "IA3"}, "peft_type IA3 (not LoRA)"),
        ({"lora_bias": True}, "LoRA biases (lora_bias: true)"),
        ({"bias": "all"}, "trained biases (bias: 'all')"),
        ({"target_parameters": ["experts.w"]}, "LoRA on parameters (target_parameters)"),
        ({"init_lora_weights": "mica"}, "MiCA (init_lora_weights: mica)"),
    ],
)
def test_every_unsupported_option_is_one_refusal(raw: dict, reason: str) -> None:
    cfg = config(r=4, **raw)
    with pytest.raises(peft.UnsupportedAdapter) as caught:
        peft.require_supported(cfg, None, "x@1")
    assert caught.value.message == (
        f"x@1 uses {reason}; mvc checks, merges and serves LoRA adapters only: {peft.SUPPORTED}"
    )
    # options that only shape training merge as plain LoRA
    peft.require_supported(config(r=4, lora_dropout=0.1, init_lora_weights="gaussian"), None, "x")


def info(name: str, *shape: int) -> TensorInfo:
    return TensorInfo(name, "F32", shape, 0, 4 * int(np.prod(shape)))


def test_tensors_that_plain_lora_does_not_have_are_unsupported() -> None:
    dora = peft.pair_tensors([info("base_model.model.q.lora_magnitude_vector", 8)])
    assert dora.unsupported is not None and dora.unsupported.startswith("DoRA")
    conv = peft.pair_tensors([info("base_model.model.c.lora_A.weight", 4, 3, 3, 3)])
    assert conv.unsupported == "LoRA on a convolution (c, 4-d factors)"
    saved = peft.pair_tensors([info("base_model.model.head.modules_to_save.default.weight", 2)])
    assert list(saved.saved) == ["head.weight"] and saved.unsupported is None


def test_the_merge_runs_in_row_blocks_and_matches_the_formula(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((37, 11)).astype(np.float32)
    a = rng.standard_normal((3, 11)).astype(np.float32)
    b = rng.standard_normal((37, 3)).astype(np.float32)
    plan = peft.MergePlan("w", peft.LoraModule("w", "linear"), 0.75, False)
    whole = peft.merge_array(plan, weight, a, b)
    np.testing.assert_allclose(whole, weight + (b @ a) * np.float32(0.75), rtol=1e-6)
    monkeypatch.setattr(peft, "MERGE_BLOCK", 5 * 11 * 4)  # five rows per block
    assert [hi - lo for lo, hi in peft.row_blocks((37, 11), "F32")] == [5] * 7 + [2]
    np.testing.assert_array_equal(peft.merge_array(plan, weight, a, b), whole)
    flipped = peft.MergePlan("w", plan.module, 0.75, True)  # fan_in_fan_out: W is (in, out)
    np.testing.assert_allclose(
        peft.merge_array(flipped, weight.T.copy(), a, b), whole.T, rtol=1e-6, atol=1e-6
    )


# --- the same bits from every path ------------------------------------------------------------


def mvc_merges(cli, base: str, adapter: str) -> dict[str, dict[str, np.ndarray]]:
    """The merged weights by each path: merge-adapter, mvc.load, and a deployed channel."""
    cli("merge-adapter", base, adapter, "--model", f"{base}-merged")
    cli("checkout", f"{base}-merged", "--to", f"out/{base}-merged")
    cli("channel", "set", base, "prod", f"main + {adapter}@main")
    loaded = mvc.load(f"{base}@main + {adapter}@main", mmap=False)
    deployed = mvc.load(f"{base}@prod", mmap=False)
    return {
        "merge-adapter": load_file(f"out/{base}-merged/model.safetensors"),
        "load": {k: np.asarray(v) for k, v in loaded.items()},
        "deploy": {k: np.asarray(v) for k, v in deployed.items()},
    }


def assert_bit_identical(merges: dict[str, dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    first, *others = merges.values()
    for name, other in zip(list(merges)[1:], others, strict=True):
        assert other.keys() == first.keys(), name
        for tensor, values in first.items():
            assert other[tensor].dtype == values.dtype
            assert other[tensor].tobytes() == values.tobytes(), (name, tensor)
    return first


def write_numpy_adapter(folder: Path, settings: dict, extra: dict | None = None) -> None:
    rng = np.random.default_rng(1)
    tensors = {}
    for layer in (0, 1):
        prefix = f"base_model.model.layer.{layer}.q"
        tensors[f"{prefix}.lora_A.weight"] = rng.standard_normal((4, 16)).astype(np.float32)
        tensors[f"{prefix}.lora_B.weight"] = rng.standard_normal((16, 4)).astype(np.float32)
    tensors.update(extra or {})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"], **settings}
    (folder / "adapter_config.json").write_text(json.dumps(config))


def test_alpha_pattern_gives_the_same_bits_on_every_path(store, cli) -> None:
    """The case of issue 8: load ignored alpha_pattern and differed from merge-adapter by 66.2."""
    rng = np.random.default_rng(0)
    base = {f"layer.{i}.q.weight": rng.standard_normal((16, 16)).astype(np.float32) for i in (0, 1)}
    Path("models/tiny").mkdir(parents=True)
    save_file(base, "models/tiny/model.safetensors")
    cli("commit", "models/tiny", "-m", "base")
    write_numpy_adapter(Path("out/lora"), {"alpha_pattern": {"layer.1.q": 32}})
    cli("commit", "out/lora", "--model", "lora", "-m", "lora", "--base", "tiny")
    merged = assert_bit_identical(mvc_merges(cli, "tiny", "lora"))
    lora = load_file("out/lora/adapter_model.safetensors")
    for layer, scale in ((0, 8 / 4), (1, 32 / 4)):
        a = lora[f"base_model.model.layer.{layer}.q.lora_A.weight"]
        b = lora[f"base_model.model.layer.{layer}.q.lora_B.weight"]
        expected = base[f"layer.{layer}.q.weight"] + (b @ a) * np.float32(scale)
        np.testing.assert_allclose(merged[f"layer.{layer}.q.weight"], expected, rtol=1e-6)


def refusals(cli, base: str, adapter: str) -> dict[str, str]:
    """The error each path gives for ``adapter``, without the path's own label for it."""

    def tail(message: str) -> str:
        return message.split(" uses ", 1)[1]

    found = {}
    for name, args in {
        "check-compat": ("check-compat", base, adapter),
        "merge-adapter": ("merge-adapter", base, adapter, "--model", "merged"),
        "deploy": ("channel", "set", base, "prod", f"main + {adapter}@main"),
    }.items():
        result = cli(*args, expect=EXIT_ERROR)
        found[name] = tail(result.stderr.splitlines()[0])
    with pytest.raises(peft.UnsupportedAdapter) as caught:
        mvc.load(f"{base}@main + {adapter}@main")
    found["load"] = tail(caught.value.message)
    return found


def test_dora_is_refused_the_same_way_by_every_path(store, cli) -> None:
    rng = np.random.default_rng(0)
    base = {f"layer.{i}.q.weight": rng.standard_normal((16, 16)).astype(np.float32) for i in (0, 1)}
    Path("models/tiny").mkdir(parents=True)
    save_file(base, "models/tiny/model.safetensors")
    cli("commit", "models/tiny", "-m", "base")
    magnitude = {"base_model.model.layer.0.q.lora_magnitude_vector": np.ones(16, np.float32)}
    write_numpy_adapter(Path("out/dora"), {"use_dora": True}, magnitude)
    cli(
        "commit", "out/dora", "--model", "dora", "-m", "dora", "--base", "tiny"
    )  # recorded for what it is
    found = refusals(cli, "tiny", "dora")
    assert set(found.values()) == {
        f"DoRA (use_dora: true); mvc checks, merges and serves LoRA adapters only: {peft.SUPPORTED}"
    }, found
    assert "merged" not in cli("models").stdout
    assert cli("channel", "list", "tiny", expect=None).stdout.strip() == ""


# --- against peft's own merge_and_unload -------------------------------------------------------


def _require(name: str) -> ModuleType:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        return importlib.import_module(name)  # CI installs it (.ci/run): missing is a failure
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed (CI installs it; see .ci/run)")


@pytest.fixture(scope="module")
def torch_peft() -> tuple[Any, Any, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers/peft import-time notices are not ours
        torch = _require("torch")
        real_peft = _require("peft")
        conv1d = _require("transformers.pytorch_utils").Conv1D
    return torch, real_peft, conv1d


def tiny_model(torch: Any, conv1d: Any) -> Any:
    """Named like the test adapters: layer.N.q / layer.N.v (Linear), layer.N.c_attn (GPT-2's
    Conv1D, weight stored (in, out)), embed (Embedding), head (Linear)."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.q, self.v, self.c_attn = nn.Linear(16, 16), nn.Linear(16, 24), conv1d(24, 16)

    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(32, 16)
            self.layer = nn.ModuleList([Block(), Block()])
            self.head = nn.Linear(16, 32)

    torch.manual_seed(0)
    return Tiny()


CASES = {
    "plain": {"target_modules": ["q", "v"], "modules_to_save": ["head"]},
    "patterns": {
        "target_modules": ["q", "v"],
        "rank_pattern": {"v": 2, "layer.1.q": 8},
        "alpha_pattern": {"layer.1.q": 32},
    },
    "fan_in_fan_out": {"target_modules": ["c_attn"], "fan_in_fan_out": True},
    "rslora_embedding": {"target_modules": ["q", "embed"], "use_rslora": True},
    "bf16_base": {"target_modules": ["q", "v"], "dtype": "bfloat16"},
}


def build_with_peft(torch: Any, real_peft: Any, conv1d: Any, case: dict) -> dict[str, np.ndarray]:
    """Write models/tiny (the base) and out/lora (peft's save_pretrained); return peft's
    merge_and_unload weights."""
    from safetensors.torch import save_file as save_torch

    case = dict(case)
    model = tiny_model(torch, conv1d).to(getattr(torch, case.pop("dtype", "float32")))
    Path("models/tiny").mkdir(parents=True)
    save_torch(
        {k: v.contiguous() for k, v in model.state_dict().items()}, "models/tiny/model.safetensors"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = real_peft.get_peft_model(
            model, real_peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False, **case)
        )
        generator = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, param in wrapped.named_parameters():
                if "lora_" in name or "modules_to_save" in name:
                    param.copy_(torch.randn(param.shape, generator=generator))
        wrapped.save_pretrained("out/lora")
        merged = wrapped.merge_and_unload()
    return {k: as_numpy(torch, v) for k, v in merged.state_dict().items()}


def as_numpy(torch: Any, tensor: Any) -> np.ndarray:
    import ml_dtypes

    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16: go through its bits
        return tensor.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
    return tensor.detach().numpy().copy()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_merges_match_peft_merge_and_unload(store, cli, torch_peft, case: str) -> None:
    expected = build_with_peft(*torch_peft, CASES[case])
    cli("commit", "models/tiny", "-m", "base")
    cli("commit", "out/lora", "--model", "tiny-lora", "-m", "tiny-lora", "--base", "tiny")
    merged = assert_bit_identical(mvc_merges(cli, "tiny", "tiny-lora"))
    assert merged.keys() == expected.keys()
    base = load_file("models/tiny/model.safetensors")
    changed = [n for n in merged if merged[n].tobytes() != base[n].tobytes()]
    assert changed and all(
        n in changed for n in merged if expected[n].tobytes() != base[n].tobytes()
    )
    for name, values in expected.items():
        # float32: mvc and torch sum the r products of B·A in their own BLAS order, so the
        # merged weights may differ in the last bit or two; never by more than 1e-6 of the
        # tensor's scale (a wrong alpha/rank/orientation differs by O(1)).
        assert merged[name].dtype == values.dtype
        got, want = merged[name].astype(np.float64), values.astype(np.float64)
        worst = float(np.max(np.abs(got - want)))
        assert worst <= 1e-6 * max(1.0, float(np.max(np.abs(want)))), (name, worst)


@pytest.mark.slow
def test_a_peft_dora_adapter_is_refused_by_every_path(store, cli, torch_peft) -> None:
    build_with_peft(*torch_peft, {"target_modules": ["q", "v"], "use_dora": True})
    cli("commit", "models/tiny", "-m", "base")
    cli("commit", "out/lora", "--model", "tiny-dora", "-m", "tiny-dora", "--base", "tiny")
    found = refusals(cli, "tiny", "tiny-dora")
    assert len(set(found.values())) == 1, found
    assert next(iter(found.values())).startswith("DoRA (use_dora: true)")
