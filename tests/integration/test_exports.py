"""Exports, checked the way each server reads them: config.pbtxt parsed as protobuf text,
KServe YAML parsed with pyyaml, vLLM arguments parsed as its command line, files by blake3."""

from __future__ import annotations

import importlib
import json
import os
import shlex
import warnings
from typing import Any

import numpy as np
import pytest
import yaml
from deployfix import Store

from mvc.errors import NotFound, UsageError
from mvc.exports import ExportOptions, export
from mvc.ids import new_hasher, short
from mvc.ops import deploy as ops

M, C = "bert", "prod"


def b3(path: str) -> str:
    hasher = new_hasher()
    with open(path, "rb") as handle:
        hasher.update(handle.read())
    return str(hasher.hexdigest())


def assert_version_files(st: Store, version: str, folder: str) -> None:
    tree = st.repo.objects.get_tree(st.repo.objects.get_version(version).tree)
    for rel, entry in tree.files.items():
        assert b3(os.path.join(folder, rel)) == entry.b3, rel


# --- the real parsers: Triton's model_config.proto, vLLM's own command line and engine args -----


def require(name: str) -> Any:
    """A real component the tests check against: CI installs it (.ci/run), so there a missing
    one fails; elsewhere the test skips."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        return importlib.import_module(name)
    try:
        return importlib.import_module(name)
    except ImportError:
        pytest.skip(f"{name} is not installed (CI installs it; see .ci/run)")


def triton_config(folder: str) -> Any:
    """config.pbtxt parsed by protobuf's text format into Triton's own ModelConfig message
    (tritonclient ships model_config_pb2): an unknown field or a bad value fails here."""
    model_config = require("tritonclient.grpc.model_config_pb2")
    text_format = require("google.protobuf.text_format")
    with open(os.path.join(folder, "config.pbtxt"), encoding="utf-8") as handle:
        return text_format.Parse(handle.read(), model_config.ModelConfig())


def parameters(config: Any) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def policy(config: Any) -> list[int]:
    return list(config.version_policy.specific.versions)


_VLLM: dict[str, Any] = {}


def vllm() -> dict[str, Any]:
    """vLLM's own pieces, imported once: the ``vllm serve`` parser, AsyncEngineArgs, LoRAConfig
    and PEFTHelper. vLLM is installed without its GPU dependencies (.ci/run lists the few its
    parsers import); VLLM_TARGET_DEVICE=cpu selects its CPU platform, as on a machine without
    a GPU it must be told."""
    if not _VLLM:
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # vLLM's and torch's import-time notices
            require("vllm")
            from vllm.config.lora import LoRAConfig
            from vllm.engine.arg_utils import AsyncEngineArgs
            from vllm.entrypoints.common.cli_args import make_arg_parser
            from vllm.lora.peft_helper import PEFTHelper
            from vllm.utils.argparse_utils import FlexibleArgumentParser

            parser = make_arg_parser(FlexibleArgumentParser(prog="vllm serve"))
        _VLLM.update(
            parser=parser,
            AsyncEngineArgs=AsyncEngineArgs,
            LoRAConfig=LoRAConfig,
            PEFTHelper=PEFTHelper,
        )
    return _VLLM


def vllm_serve_args(words: list[str]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return vllm()["parser"].parse_args(words)


# --- triton ---------------------------------------------------------------------------------------


def test_triton_repository_and_stable_version_numbers(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "model_repository")
    script = tmp_path / "model.py"
    script.write_text("class TritonPythonModel:\n    pass\n")
    options = ExportOptions(python_model=str(script))
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    result = export(st.repo, M, C, "triton", dest, options)
    config = triton_config(os.path.join(dest, "bert"))
    assert config.name == "bert" and config.backend == "python"
    assert config.max_batch_size == 0
    assert policy(config) == [1, 2]
    params = parameters(config)
    assert params["mvc.channel"] == "prod" and params["mvc.record"] == result.record
    routing = {r["label"]: (r["version"], r["weight"]) for r in json.loads(params["mvc.routing"])}
    assert routing == {"stable": (1, 90), "canary": (2, 10)}
    assert_version_files(st, st.ids["bert@v1.4.0"], os.path.join(dest, "bert/1/weights"))
    assert_version_files(st, st.ids["bert@v1.5.0"], os.path.join(dest, "bert/2/weights"))
    assert (tmp_path / "model_repository/bert/2/model.py").read_text() == script.read_text()
    assert result.configs[-1] == "bert/config.pbtxt"  # configs last, after the files they name

    ops.promote(st.repo, M, C)
    ops.deploy_canary(st.repo, M, C, "v1.6.0", 25)
    again = export(st.repo, M, C, "triton", dest, options)
    assert policy(triton_config(os.path.join(dest, "bert"))) == [2, 3]
    assert not [k for k in again.written if k.startswith(("bert/1/", "bert/2/weights"))]
    assert again.skipped > 0
    ops.rollback(st.repo, M, C, to="v1.4.0")
    export(st.repo, M, C, "triton", dest, options)
    assert policy(triton_config(os.path.join(dest, "bert"))) == [1]  # v1.4.0 is still number 1
    numbers = again.details["versions"]
    assert numbers["1"]["version"] == st.ids["bert@v1.4.0"]
    assert numbers["3"]["version"] == st.ids["bert@v1.6.0"]


def test_triton_vllm_backend_with_adapters(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "repo")
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    ops.deploy_shadow(st.repo, M, C, "v1.5.0")
    result = export(st.repo, M, C, "triton", dest, ExportOptions(backend="vllm", name="bert-sql"))
    config = triton_config(os.path.join(dest, "bert-sql"))
    assert config.backend == "vllm"
    kind = require("tritonclient.grpc.model_config_pb2").ModelInstanceGroup.KIND_MODEL
    assert config.instance_group[0].kind == kind
    assert config.model_transaction_policy.decoupled  # the vLLM backend refuses to start without
    assert policy(config) == [1, 2]  # the shadow is loaded too: it receives mirrored traffic
    engine = json.loads((tmp_path / "repo/bert-sql/1/model.json").read_text())
    assert engine["model"] == os.path.join(dest, "bert-sql/1/weights") and engine["enable_lora"]
    loras = json.loads((tmp_path / "repo/bert-sql/1/multi_lora.json").read_text())
    (lora_name,) = loras
    assert_version_files(st, st.ids["sql-lora@v1.3.0"], loras[lora_name])
    shadow_engine = json.loads((tmp_path / "repo/bert-sql/2/model.json").read_text())
    assert "enable_lora" not in shadow_engine
    assert result.warnings == []
    # each arm's requests carry the lora_name its version folder knows (none: the base)
    routing = {r["label"]: r for r in json.loads(parameters(config)["mvc.routing"])}
    assert routing["stable"]["lora_name"] == lora_name and routing["shadow"]["lora_name"] is None
    assert result.details["routing"] == list(routing.values())
    # two engines on one GPU: vLLM's 0.9 split between them
    assert engine["gpu_memory_utilization"] == shadow_engine["gpu_memory_utilization"] == 0.45

    # the real AsyncEngineArgs takes every model.json as it is (Triton's vLLM backend calls
    # AsyncEngineArgs(**model.json)), and vLLM's LoRAConfig accepts its LoRA settings
    real = vllm()
    for folder in ("1", "2"):
        document = json.loads((tmp_path / f"repo/bert-sql/{folder}/model.json").read_text())
        args = real["AsyncEngineArgs"](**document)
        assert args.model == document["model"]
    lora = real["LoRAConfig"](max_lora_rank=engine["max_lora_rank"], max_loras=engine["max_loras"])
    helper = real["PEFTHelper"].from_local_dir(loras[lora_name], max_position_embeddings=None)
    helper.validate_legal(lora)  # vLLM's own check that this adapter fits the engine


def test_triton_vllm_canary_of_adapters_ranks_and_names(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "repo")
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")  # rank 2
    ops.deploy_canary(st.repo, M, C, "v1.4.0 + sql-lora@v2.0.0", 10)  # rank 20
    export(st.repo, M, C, "triton", dest, ExportOptions(backend="vllm"))
    config = triton_config(os.path.join(dest, "bert"))
    routing = {r["label"]: r for r in json.loads(parameters(config)["mvc.routing"])}
    real = vllm()
    for label, rank in (("stable", 8), ("canary", 32)):
        folder = tmp_path / "repo/bert" / str(routing[label]["version"])
        engine = json.loads((folder / "model.json").read_text())
        assert engine["max_lora_rank"] == rank and engine["max_loras"] == 1
        assert engine["gpu_memory_utilization"] == 0.45
        assert list(json.loads((folder / "multi_lora.json").read_text())) == [
            routing[label]["lora_name"]
        ]
        real["AsyncEngineArgs"](**engine)
        real["LoRAConfig"](max_lora_rank=engine["max_lora_rank"], max_loras=1)
    assert routing["stable"]["lora_name"] != routing["canary"]["lora_name"]
    ops.promote(st.repo, M, C)  # one engine left: it gets vLLM's whole default share
    export(st.repo, M, C, "triton", dest, ExportOptions(backend="vllm"))
    (number,) = policy(triton_config(os.path.join(dest, "bert")))
    engine = json.loads((tmp_path / "repo/bert" / str(number) / "model.json").read_text())
    assert engine["gpu_memory_utilization"] == 0.9


def test_engine_keys_are_asyncengineargs_fields_of_the_tested_vllm() -> None:
    """The tested key list, and the source reading mvc does where vLLM is installed, both
    agree with the real dataclass."""
    import dataclasses
    from importlib.metadata import version

    from mvc.exports.vllm_engine import ENGINE_KEYS, TESTED_VLLM, installed_engine_fields

    real = {f.name for f in dataclasses.fields(vllm()["AsyncEngineArgs"])}
    assert version("vllm").startswith(TESTED_VLLM + ".")
    assert ENGINE_KEYS[TESTED_VLLM] <= real
    assert installed_engine_fields() == real
    assert "disable_log_requests" not in real  # why the old model.json failed to load


def test_engine_arguments_leave_out_what_vllm_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from mvc.exports import vllm_engine

    monkeypatch.setattr(
        vllm_engine, "installed_engine_fields", lambda: frozenset({"model", "max_loras"})
    )
    notes: list[str] = []
    kept = vllm_engine.engine_arguments({"model": "/m", "max_lora_rank": 8, "max_loras": 1}, notes)
    assert kept == {"model": "/m", "max_loras": 1}
    assert notes and "max_lora_rank" in notes[0]
    monkeypatch.setattr(vllm_engine, "installed_engine_fields", lambda: frozenset({"max_loras"}))
    with pytest.raises(UsageError, match="needs 'model'"):
        vllm_engine.engine_arguments({"model": "/m"}, notes)
    assert vllm_engine.memory_share(3) == 0.3 and vllm_engine.memory_share(7) == 0.12


def _run_model_py(folder: str, number: int, config: Any, inputs: dict[str, Any]) -> Any:
    """Load <number>/model.py the way Triton's python backend does (initialize with the args
    Triton passes: model_config as its JSON form of the proto, the model's folder, the version)
    and answer one request."""
    import importlib.util
    import sys

    json_format = require("google.protobuf.json_format")
    stub = os.path.join(os.path.dirname(__file__), "..", "triton_stub")
    if stub not in sys.path:
        sys.path.insert(0, stub)
    path = os.path.join(folder, str(number), "model.py")
    spec = importlib.util.spec_from_file_location(f"triton_model_{number}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    args = {
        "model_config": json_format.MessageToJson(config, preserving_proto_field_name=True),
        "model_repository": folder,
        "model_version": str(number),
        "model_name": config.name,
        "model_instance_kind": "CPU",
    }
    import triton_python_backend_utils as pb_utils

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers' and peft's load-time notices
        model.initialize(args)
        (response,) = model.execute([pb_utils.InferenceRequest(inputs)])
    model.finalize()
    assert not response.has_error(), response.error().message()
    return response


def test_triton_python_backend_model_py_serves_a_transformers_model(st: Store, tmp_path) -> None:
    """A real (tiny) BERT and a peft LoRA on it: the exported model.py answers exactly what the
    model built directly with transformers and peft answers."""
    torch, transformers, peft = require("torch"), require("transformers"), require("peft")
    from mvc.ops.commit import commit
    from mvc.ops.names import create_tag

    config = transformers.BertConfig(
        vocab_size=64,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
    )
    base_dir = os.path.join(st.root, "work", "tiny")
    adapter_dir = os.path.join(st.root, "work", "tiny-lora")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        transformers.BertModel(config).eval().save_pretrained(base_dir)
        lora_config = peft.LoraConfig(
            r=4, lora_alpha=8, target_modules=["query", "value"], init_lora_weights=False
        )
        torch.manual_seed(1)
        tuned = peft.get_peft_model(transformers.BertModel.from_pretrained(base_dir), lora_config)
        tuned.save_pretrained(adapter_dir)
    base = commit(st.repo, base_dir, message="tiny", model="tiny").version_id
    assert base
    create_tag(st.repo, "tiny", "v1.0.0", f"id={base}")
    commit(st.repo, adapter_dir, message="tiny lora", model="tiny-lora")
    ops.set_channel(st.repo, "tiny", C, "v1.0.0")
    ops.deploy_canary(st.repo, "tiny", C, "v1.0.0 + tiny-lora@main", 10)
    dest = str(tmp_path / "repo")
    result = export(st.repo, "tiny", C, "triton", dest)
    assert any("model.py" in w and "transformers" in w for w in result.warnings)
    folder = os.path.join(dest, "tiny")
    parsed = triton_config(folder)
    types = require("tritonclient.grpc.model_config_pb2")
    assert [(i.name, i.data_type, list(i.dims)) for i in parsed.input] == [
        ("input_ids", types.TYPE_INT64, [-1, -1]),
        ("attention_mask", types.TYPE_INT64, [-1, -1]),
    ]
    assert parsed.input[1].optional and not parsed.input[0].optional
    assert [(o.name, o.data_type, list(o.dims)) for o in parsed.output] == [
        ("last_hidden_state", types.TYPE_FP32, [-1, -1, -1])
    ]
    assert parameters(parsed)["mvc.task"] == "feature-extraction"

    ids = np.array([[2, 7, 11, 5, 3], [2, 9, 4, 0, 0]], dtype=np.int64)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=np.int64)
    routing = {r["label"]: r["version"] for r in json.loads(parameters(parsed)["mvc.routing"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = transformers.BertModel.from_pretrained(base_dir).eval()
        merged = peft.PeftModel.from_pretrained(
            transformers.BertModel.from_pretrained(base_dir), adapter_dir
        ).merge_and_unload()
    answers = {}
    for label, model in (("stable", reference), ("canary", merged.eval())):
        response = _run_model_py(
            folder, routing[label], parsed, {"input_ids": ids, "attention_mask": mask}
        )
        (tensor,) = response.output_tensors()
        with torch.no_grad():
            expected = model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
            ).last_hidden_state.numpy()
        assert tensor.name() == "last_hidden_state" and tensor.as_numpy().dtype == np.float32
        np.testing.assert_allclose(tensor.as_numpy(), expected, rtol=1e-5, atol=1e-6)
        answers[label] = tensor.as_numpy()
    assert not np.allclose(answers["stable"], answers["canary"])  # the adapter is applied
    # attention_mask is optional: all ones when left out
    unmasked = _run_model_py(folder, routing["stable"], parsed, {"input_ids": ids[:1]})
    np.testing.assert_allclose(
        unmasked.output_tensors()[0].as_numpy(), answers["stable"][:1], rtol=1e-5, atol=1e-6
    )


def test_triton_python_backend_says_what_it_cannot_serve(st: Store, tmp_path) -> None:
    from mvc.ops.commit import commit

    folder = os.path.join(st.root, "work", "plain")
    os.makedirs(folder)
    with open(os.path.join(folder, "weights.bin"), "wb") as handle:
        handle.write(b"\0" * 64)
    commit(st.repo, folder, message="plain", model="plain")
    ops.set_channel(st.repo, "plain", C, "main")
    result = export(st.repo, "plain", C, "triton", str(tmp_path / "t"))
    (warning,) = result.warnings
    assert "not a transformers model" in warning and "--python-model" in warning
    assert not (tmp_path / "t/plain/1/model.py").exists()
    config = triton_config(str(tmp_path / "t/plain"))
    assert not config.input and not config.output and "mvc.task" not in parameters(config)


# --- kserve ---------------------------------------------------------------------------------------


SCHEMAS = os.path.join(os.path.dirname(__file__), "..", "data", "schemas")


def crd_schema(file: str, kind: str) -> dict[str, Any]:
    """The vendored subset of a CRD's openAPIV3Schema (tests/data/schemas: source and licence
    inside), made strict: Kubernetes silently prunes a field its schema lacks, so here an
    unknown field is an error rather than a setting the server would drop."""
    with open(os.path.join(SCHEMAS, file), encoding="utf-8") as handle:
        schema = json.load(handle)[kind]

    def strict(node: Any) -> None:
        if isinstance(node, dict):
            props = node.get("properties")
            if isinstance(props, dict) and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                strict(value)
        elif isinstance(node, list):
            for value in node:
                strict(value)

    strict(schema["properties"]["spec"])
    return schema


def kserve_docs(dest: str) -> list[dict[str, Any]]:
    """inferenceservice.yaml, each document validated against KServe's CRD schema and the
    storage rules of its admission webhook (inference_service_validation.go)."""
    jsonschema = require("jsonschema")
    with open(os.path.join(dest, "inferenceservice.yaml"), encoding="utf-8") as handle:
        docs = list(yaml.safe_load_all(handle))
    for doc in docs:
        jsonschema.validate(doc, crd_schema("kserve-crd-subset.json", doc["kind"]))
        predictor = doc["spec"].get("predictor")
        if predictor and "storageUris" in predictor:
            # validateMultipleStorageURIs: never both; mount paths absolute, without '..',
            # below one common parent other than '/'
            assert "storageUri" not in predictor["model"]
            paths = [u.get("mountPath", "/mnt/models") for u in predictor["storageUris"]]
            assert all(p.startswith("/") and ".." not in p and p != "/" for p in paths)
            assert os.path.commonpath(paths) != "/"
    return docs


def test_kserve_canary_and_staged(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "serving")
    ops.set_channel(st.repo, M, C, "v1.4.0")
    export(st.repo, M, C, "kserve", dest)
    (service,) = kserve_docs(dest)
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService" and service["metadata"]["name"] == "bert-prod"
    predictor = service["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor
    stable_uri = predictor["model"]["storageUri"]
    assert stable_uri == os.path.join(dest, "versions", short(st.ids["bert@v1.4.0"]))
    assert predictor["model"]["modelFormat"] == {"name": "huggingface"}
    assert_version_files(st, st.ids["bert@v1.4.0"], stable_uri)

    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    export(st.repo, M, C, "kserve", dest)
    (service,) = kserve_docs(dest)
    predictor = service["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["storageUri"].endswith(short(st.ids["bert@v1.5.0"]))
    notes = service["metadata"]["annotations"]
    assert notes["mvc.dev/stable-storage-uri"] == stable_uri
    assert notes["mvc.dev/record"] == ops.require_current(st.repo, M, C).id
    assert_version_files(st, st.ids["bert@v1.5.0"], predictor["model"]["storageUri"])

    ops.rollback(st.repo, M, C)
    ops.deploy_blue_green(st.repo, M, C, "v1.6.0")
    export(st.repo, M, C, "kserve", dest)
    (service,) = kserve_docs(dest)
    assert service["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_kserve_ab_is_an_inference_graph_and_shadow_warns(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "serving")
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_ab(st.repo, M, C, [("v1.5.0", 40), ("v1.6.0", 60)])
    export(st.repo, M, C, "kserve", dest, ExportOptions(serve_root="pvc://models/bert"))
    docs = kserve_docs(dest)
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "InferenceService"}
    (graph,) = [d for d in docs if d["kind"] == "InferenceGraph"]
    root = graph["spec"]["nodes"]["root"]
    assert root["routerType"] == "Splitter"
    assert [(s["serviceName"], s["weight"]) for s in root["steps"]] == [
        ("bert-prod-a", 40),
        ("bert-prod-b", 60),
    ]
    uri = services["bert-prod-b"]["spec"]["predictor"]["model"]["storageUri"]
    assert uri == f"pvc://models/bert/versions/{short(st.ids['bert@v1.6.0'])}"

    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_shadow(st.repo, M, C, "v1.6.0")
    result = export(st.repo, M, C, "kserve", dest)
    assert any("mirror" in w for w in result.warnings)
    (service,) = kserve_docs(dest)
    assert service["metadata"]["annotations"]["mvc.dev/shadow-storage-uri"].endswith(
        short(st.ids["bert@v1.6.0"])
    )


def test_kserve_adapter_channel_serves_every_adapter_from_one_revision(st: Store, tmp_path) -> None:
    """Before: two identical base-only revisions split 80/20 and the adapters nowhere."""
    dest = str(tmp_path / "serving")
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    ops.deploy_canary(st.repo, M, C, "v1.4.0 + sql-lora@v2.0.0", 20)
    options = ExportOptions(serve_root="s3://models/bert", args=["--dtype=float32"])
    result = export(st.repo, M, C, "kserve", dest, options)
    (service,) = kserve_docs(dest)
    predictor = service["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor  # one revision; the router picks the adapter
    mounts = {u["mountPath"]: u["uri"] for u in predictor["storageUris"]}
    base = short(st.ids["bert@v1.4.0"])
    assert mounts["/mnt/models/base"] == f"s3://models/bert/versions/{base}"
    for label, tag in (("stable", "v1.3.0"), ("canary", "v2.0.0")):
        uri = mounts[f"/mnt/models/adapters/prod-{label}"]
        assert uri == f"s3://models/bert/adapters/sql-lora/{short(st.ids['sql-lora@' + tag])}"
        assert_version_files(
            st, st.ids[f"sql-lora@{tag}"], dest + uri.removeprefix("s3://models/bert")
        )
    args = predictor["model"]["args"]
    assert args[:2] == ["--model_name=bert-prod", "--dtype=float32"]
    # the huggingface runtime hands these to vLLM's own parser (its vllm backend)
    parsed, _rest = vllm()["parser"].parse_known_args(args)
    assert parsed.enable_lora and parsed.max_loras == 2 and parsed.max_lora_rank == 32
    modules = {m.name: m.path for m in parsed.lora_modules}
    assert modules == {
        "prod-stable": "/mnt/models/adapters/prod-stable",
        "prod-canary": "/mnt/models/adapters/prod-canary",
    }
    assert "--backend=vllm" in args and "--model_dir=/mnt/models/base" in args
    routing = json.loads(service["metadata"]["annotations"]["mvc.dev/routing"])
    assert {r["served_model"]: r["weight"] for r in routing} == {
        "prod-stable": 80,
        "prod-canary": 20,
    }
    assert any("`model` field" in w for w in result.warnings)
    assert not any("cannot read" in w for w in result.warnings)  # s3:// is readable from a pod

    ops.rollback(st.repo, M, C)
    ops.deploy_canary(st.repo, M, C, "v1.5.0 + sql-lora@v1.3.0", 10)  # another base
    with pytest.raises(UsageError, match="2 base versions") as caught:
        export(st.repo, M, C, "kserve", dest, options)
    assert caught.value.hint and "triton" in caught.value.hint
    with pytest.raises(UsageError, match="huggingface runtime"):
        export(st.repo, M, C, "kserve", dest, ExportOptions(backend="sklearn"))


def test_kserve_staged_green_gets_tag_routing_and_host_paths_warn(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "serving")
    ops.set_channel(st.repo, M, C, "v1.4.0")
    first = export(st.repo, M, C, "kserve", dest)
    assert any("cannot read" in w and "pvc://" in w for w in first.warnings)  # a host path
    (service,) = kserve_docs(dest)
    assert "serving.kserve.io/enable-tag-routing" not in service["metadata"]["annotations"]
    ops.deploy_blue_green(st.repo, M, C, "v1.5.0")
    options = ExportOptions(serve_root="pvc://models/bert", args=["--task=text_classification"])
    staged = export(st.repo, M, C, "kserve", dest, options)
    assert not any("cannot read" in w for w in staged.warnings)
    (service,) = kserve_docs(dest)
    notes = service["metadata"]["annotations"]
    assert notes["serving.kserve.io/enable-tag-routing"] == "true"  # KServe's latest- URL
    assert service["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert service["spec"]["predictor"]["model"]["args"] == [
        "--model_name=bert-prod",
        "--task=text_classification",
    ]


def test_kserve_says_how_to_retire_services_around_an_ab_test(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "serving")
    ops.set_channel(st.repo, M, C, "v1.4.0")
    export(st.repo, M, C, "kserve", dest)
    ops.deploy_ab(st.repo, M, C, [("v1.5.0", 50), ("v1.6.0", 50)])
    into = export(st.repo, M, C, "kserve", dest)
    assert any("kubectl delete inferenceservice bert-prod" in w for w in into.warnings)
    kserve_docs(dest)
    ops.promote(st.repo, M, C, arm="b")
    out = export(st.repo, M, C, "kserve", dest)
    (note,) = [w for w in out.warnings if "left its A/B test" in w]
    assert "kubectl delete inferencegraph bert-prod" in note
    assert "inferenceservice bert-prod-a bert-prod-b" in note


def test_kserve_to_an_fsspec_url(st: Store) -> None:
    import fsspec

    ops.set_channel(st.repo, M, C, "v1.4.0")
    url = "memory://serving-test/bert"
    export(st.repo, M, C, "kserve", url)
    fs = fsspec.filesystem("memory")
    (service,) = list(yaml.safe_load_all(fs.cat_file("/serving-test/bert/inferenceservice.yaml")))
    uri = service["spec"]["predictor"]["model"]["storageUri"]
    assert uri == f"{url}/versions/{short(st.ids['bert@v1.4.0'])}"
    tree = st.repo.objects.get_tree(st.repo.objects.get_version(st.ids["bert@v1.4.0"]).tree)
    data = fs.cat_file(f"/serving-test/bert/versions/{short(st.ids['bert@v1.4.0'])}/config.json")
    hasher = new_hasher()
    hasher.update(data)
    assert hasher.hexdigest() == tree.files["config.json"].b3


@pytest.mark.s3
def test_kserve_to_s3(st: Store, s3_url) -> None:
    import boto3

    ops.set_channel(st.repo, M, C, "v1.4.0")
    dest = f"s3://{s3_url.bucket}/serving/bert"
    export(st.repo, M, C, "kserve", dest, ExportOptions(storage_options=dict(s3_url.options)))
    client = boto3.client("s3", endpoint_url=s3_url.options["endpoint_url"])
    body = client.get_object(Bucket=s3_url.bucket, Key="serving/bert/inferenceservice.yaml")
    (service,) = list(yaml.safe_load_all(body["Body"].read()))
    uri = service["spec"]["predictor"]["model"]["storageUri"]
    assert uri == f"{dest}/versions/{short(st.ids['bert@v1.4.0'])}"
    key = uri.removeprefix(f"s3://{s3_url.bucket}/") + "/model.safetensors"
    assert client.head_object(Bucket=s3_url.bucket, Key=key)["ContentLength"] > 0


@pytest.mark.s3
def test_cli_export_to_s3_takes_storage_options_like_remote_add(
    st: Store, s3_url, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3

    monkeypatch.chdir(st.root)
    ops.set_channel(st.repo, M, C, "v1.4.0")
    endpoint = s3_url.options["endpoint_url"]
    client = boto3.client("s3", endpoint_url=endpoint)
    dest = f"s3://{s3_url.bucket}/serving/bert"
    out = cli(
        "export",
        "bert",
        "prod",
        "--format",
        "kserve",
        "--to",
        dest,
        "-o",
        f"endpoint_url={endpoint}",
    )
    assert out.stdout.splitlines() == ["inferenceservice.yaml"]
    body = client.get_object(Bucket=s3_url.bucket, Key="serving/bert/inferenceservice.yaml")
    (service,) = list(yaml.safe_load_all(body["Body"].read()))
    assert service["spec"]["predictor"]["model"]["storageUri"].startswith(dest + "/versions/")
    assert "cannot read" not in out.stderr  # s3:// is what KServe's initializer reads
    # credentials are refused as `remote add -o` refuses them
    bad = cli(
        "export", "bert", "prod", "--format", "dir", "--to", dest + "-x", "-o", "secret=x", expect=2
    )
    assert "credential" in bad.stderr
    # a remote whose URL holds the destination lends its options (its endpoint)
    # (a bucket of its own: `remote add` refuses a bucket that holds files but no store)
    registry = f"{s3_url.bucket}-registry"
    client.create_bucket(Bucket=registry)
    cli("remote", "add", "minio", f"s3://{registry}", "-o", f"endpoint_url={endpoint}")
    cli("export", "bert", "prod", "--format", "dir", "--to", f"s3://{registry}/plain")
    listed = client.list_objects_v2(Bucket=registry, Prefix="plain/")
    assert any(o["Key"] == "plain/routing.json" for o in listed.get("Contents", []))


# --- vllm -----------------------------------------------------------------------------------------


def test_vllm_base_with_adapter_arms(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "vllm")
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    ops.deploy_canary(st.repo, M, C, "v1.4.0 + sql-lora@v1.4.0", 10)
    export(st.repo, M, C, "vllm", dest)
    words = shlex.split((tmp_path / "vllm/vllm-args.txt").read_text())
    assert words[:2] == ["vllm", "serve"]
    args = vllm_serve_args(words[2:])
    assert args.served_model_name == ["bert"] and args.enable_lora
    assert args.max_loras >= len(args.lora_modules) == 2
    modules = {m.name: m.path for m in args.lora_modules}
    assert {m.base_model_name for m in args.lora_modules} == {"bert"}
    assert set(modules) == {"prod-stable", "prod-canary"}
    assert_version_files(st, st.ids["bert@v1.4.0"], args.model_tag)
    assert_version_files(st, st.ids["sql-lora@v1.3.0"], modules["prod-stable"])
    assert_version_files(st, st.ids["sql-lora@v1.4.0"], modules["prod-canary"])
    document = json.loads((tmp_path / "vllm/vllm.json").read_text())
    assert document["args"] == words[2:]
    assert {m["name"]: m["base_model_name"] for m in document["lora_modules"]} == {
        "prod-stable": "bert",
        "prod-canary": "bert",
    }
    assert {r["served_model"]: r["weight"] for r in document["routing"]} == {
        "prod-stable": 90,
        "prod-canary": 10,
    }


def test_vllm_max_lora_rank_is_one_vllm_accepts(st: Store, tmp_path) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v2.0.0")  # rank 20
    export(st.repo, M, C, "vllm", str(tmp_path / "vllm"))
    words = shlex.split((tmp_path / "vllm/vllm-args.txt").read_text())
    args = vllm_serve_args(words[2:])
    assert args.max_lora_rank == 32 and args.lora_modules[0].name == "prod-stable"


def test_vllm_max_lora_rank_counts_rank_pattern(st: Store, tmp_path) -> None:
    """r=2 with rank_pattern {"value": 40}: vLLM must be able to hold rank 40 (peft's max)."""
    from safetensors.numpy import save_file

    from mvc.ops.commit import commit

    folder = tmp_path / "patterned"
    folder.mkdir()
    rng = np.random.default_rng(0)
    tensors = {}
    for layer in (0, 1):
        for name, rank in (("query", 2), ("value", 40)):
            key = f"base_model.model.encoder.layer.{layer}.attention.{name}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(0, 1, (rank, 8)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.normal(0, 1, (8, rank)).astype(np.float32)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": 2,
                "lora_alpha": 4,
                "target_modules": ["query", "value"],  # vLLM's PEFTHelper requires it
                "rank_pattern": {"value": 40},
            }
        )
    )
    commit(st.repo, str(folder), message="patterned", model="wide-lora")
    ops.set_channel(st.repo, M, C, "v1.4.0 + wide-lora@main")
    export(st.repo, M, C, "vllm", str(tmp_path / "vllm"))
    words = shlex.split((tmp_path / "vllm/vllm-args.txt").read_text())
    args = vllm_serve_args(words[2:])
    assert args.max_lora_rank == 64
    # vLLM's own check agrees: rank 40 fits 64, and would not fit its default 16
    real = vllm()
    helper = real["PEFTHelper"].from_local_dir(args.lora_modules[0].path, None)
    helper.validate_legal(real["LoRAConfig"](max_lora_rank=64))
    with pytest.raises(ValueError, match="greater than max_lora_rank"):
        helper.validate_legal(real["LoRAConfig"](max_lora_rank=16))


def _adapter_version(st: Store, name: str, extra: dict[str, Any], tmp_path) -> None:
    """An adapter like sql-lora@v1.3.0 with ``extra`` in its adapter_config.json."""
    from deployfix import write_adapter

    from mvc.ops.commit import commit

    folder = os.path.join(st.root, "work", name)
    write_adapter(folder, seed=3)
    path = os.path.join(folder, "adapter_config.json")
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({**config, **extra}, handle)
    commit(st.repo, folder, message=name, model=name)


VLLM_CASES = [
    ({}, None),
    ({"modules_to_save": ["classifier", "score"]}, None),
    ({"init_lora_weights": "gaussian"}, None),
    ({"use_rslora": True}, None),
    ({"use_dora": True}, "DoRA"),
    ({"lora_bias": True}, "LoRA bias"),
    ({"bias": "all"}, "bias"),
    ({"modules_to_save": ["pooler"]}, "modules_to_save"),
    ({"init_lora_weights": "pissa"}, "init_lora_weights"),
    ({"layer_replication": [[0, 1]]}, "layer_replication"),
    ({"use_qalora": True}, "QA-LoRA"),
]


@pytest.mark.parametrize(("extra", "refused"), VLLM_CASES)
def test_vllm_refuses_what_peft_helper_refuses(st: Store, tmp_path, extra, refused) -> None:
    """mvc's verdict on each adapter_config.json equals vLLM's own PEFTHelper's; an adapter
    mvc can deploy but vLLM cannot serve is refused by the vllm exports, with vLLM's reason
    (DoRA, biases, QA-LoRA… are refused earlier still, by the deploy: mvc.peft)."""
    from mvc.exports.vllm_engine import adapter_problems
    from mvc.peft import UnsupportedAdapter

    _adapter_version(st, "odd-lora", extra, tmp_path)
    folder = os.path.join(st.root, "work", "odd-lora")
    with open(os.path.join(folder, "adapter_config.json"), encoding="utf-8") as handle:
        raw = json.load(handle)
    helper_cls, lora_config = vllm()["PEFTHelper"], vllm()["LoRAConfig"](max_lora_rank=8)
    problems = adapter_problems(raw)
    if refused is None:
        helper_cls.from_local_dir(folder, None).validate_legal(lora_config)
        assert problems == []
    else:
        with pytest.raises(ValueError):
            helper_cls.from_local_dir(folder, None).validate_legal(lora_config)
        assert any(refused in p for p in problems), problems
    try:
        ops.set_channel(st.repo, M, C, "v1.4.0 + odd-lora@main")
    except UnsupportedAdapter:
        assert refused is not None  # mvc itself refuses more than vLLM; never less
        return
    if refused is None:
        export(st.repo, M, C, "vllm", str(tmp_path / "vllm"))
        export(st.repo, M, C, "triton", str(tmp_path / "t"), ExportOptions(backend="vllm"))
        return
    with pytest.raises(UnsupportedAdapter, match=refused) as caught:
        export(st.repo, M, C, "vllm", str(tmp_path / "vllm"))
    assert "vLLM cannot serve adapter odd-lora@" in caught.value.message
    assert caught.value.hint and "merge-adapter" in caught.value.hint
    with pytest.raises(UnsupportedAdapter, match=refused):
        export(st.repo, M, C, "triton", str(tmp_path / "t"), ExportOptions(backend="vllm"))


def test_vllm_requires_the_fields_peft_helper_requires() -> None:
    from mvc.exports.vllm_engine import adapter_problems

    raw = {"peft_type": "LORA", "r": 4, "lora_alpha": 8}
    with pytest.raises(ValueError, match="target_modules"):
        vllm()["PEFTHelper"].from_dict(raw)
    assert adapter_problems(raw) == ["a required field is missing: target_modules"]


def test_vllm_lora_modules_json_form_survives_a_comma(st: Store, tmp_path) -> None:
    """name=path breaks on a comma in the path (vLLM then reads the item as JSON); the JSON
    form carries any path."""
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    root = "/srv/models,eu/bert"
    export(st.repo, M, C, "vllm", str(tmp_path / "vllm"), ExportOptions(serve_root=root))
    words = shlex.split((tmp_path / "vllm/vllm-args.txt").read_text())
    (module,) = vllm_serve_args(words[2:]).lora_modules
    assert module.path == f"{root}/adapters/sql-lora/{short(st.ids['sql-lora@v1.3.0'])}"
    assert module.name == "prod-stable" and module.base_model_name == "bert"
    with pytest.raises(SystemExit):  # what the old name=path form did with that path
        vllm_serve_args(["/m", "--lora-modules", f"x={module.path}"])


def test_vllm_refuses_two_base_versions(st: Store, tmp_path) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    with pytest.raises(UsageError, match="one base model") as caught:
        export(st.repo, M, C, "vllm", str(tmp_path / "vllm"))
    assert caught.value.hint and "triton" in caught.value.hint


# --- istio ---------------------------------------------------------------------------------------


def istio_docs(dest: str) -> dict[str, dict[str, Any]]:
    """istio.yaml by kind, each validated against Istio's CRD schema (networking.istio.io/v1)."""
    jsonschema = require("jsonschema")
    with open(os.path.join(dest, "istio.yaml"), encoding="utf-8") as handle:
        docs = list(yaml.safe_load_all(handle))
    with open(os.path.join(SCHEMAS, "istio-crd-subset.json"), encoding="utf-8") as handle:
        assert json.load(handle)["apiVersion"] == "networking.istio.io/v1"
    for doc in docs:
        assert doc["apiVersion"] == "networking.istio.io/v1"
        jsonschema.validate(doc, crd_schema("istio-crd-subset.json", doc["kind"]))
    return {d["kind"]: d for d in docs}


def test_istio_weighted_routes_pins_and_mirror(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "mesh")
    host = "bert.ml.svc.cluster.local"
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    result = export(st.repo, M, C, "istio", dest, ExportOptions(name=host))
    docs = istio_docs(dest)
    subsets = {s["name"]: s["labels"] for s in docs["DestinationRule"]["spec"]["subsets"]}
    stable, canary = (f"v-{short(st.ids[f'bert@{t}'])}" for t in ("v1.4.0", "v1.5.0"))
    assert subsets == {
        canary: {"mvc.dev/version": short(st.ids["bert@v1.5.0"])},
        stable: {"mvc.dev/version": short(st.ids["bert@v1.4.0"])},
    }
    assert docs["DestinationRule"]["spec"]["host"] == host
    service = docs["VirtualService"]["spec"]
    assert service["hosts"] == [host]
    *pins, default = service["http"]
    assert [(r["destination"]["subset"], r["weight"]) for r in default["route"]] == [
        (canary, 10),
        (stable, 90),
    ]
    assert "mirror" not in default
    by_subset = {p["route"][0]["destination"]["subset"]: p for p in pins}
    values = [m["headers"]["x-model-version"]["exact"] for m in by_subset[canary]["match"]]
    assert values[:2] == ["v1.5.0", "1.5.0"] and st.ids["bert@v1.5.0"] in values
    assert short(st.ids["bert@v1.5.0"]) in values
    assert any("mvc.dev/version=" in w for w in result.warnings)
    assert result.configs == ["istio.yaml"]
    for subset, tag in ((stable, "v1.4.0"), (canary, "v1.5.0")):  # the files each subset loads
        assert_version_files(
            st, st.ids[f"bert@{tag}"], result.details["subsets"][subset]["weights"]
        )

    ops.rollback(st.repo, M, C)
    ops.deploy_shadow(st.repo, M, C, "v1.6.0")
    export(st.repo, M, C, "istio", dest, ExportOptions(name=host))
    *pins, default = istio_docs(dest)["VirtualService"]["spec"]["http"]
    shadow = f"v-{short(st.ids['bert@v1.6.0'])}"
    assert [r["destination"]["subset"] for r in default["route"]] == [stable]
    assert default["route"][0]["weight"] == 100
    assert default["mirror"] == {"host": host, "subset": shadow}
    assert default["mirrorPercentage"] == {"value": 100.0}
    assert shadow in {p["route"][0]["destination"]["subset"] for p in pins}  # pinnable too


def test_istio_adapter_arms_get_their_own_subsets_and_a_bad_document_fails(
    st: Store, tmp_path
) -> None:
    dest = str(tmp_path / "mesh")
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    ops.deploy_ab(
        st.repo, M, C, [("v1.4.0 + sql-lora@v1.3.0", 50), ("v1.4.0 + sql-lora@v1.4.0", 50)]
    )
    export(st.repo, M, C, "istio", dest)
    docs = istio_docs(dest)
    labels = [s["labels"] for s in docs["DestinationRule"]["spec"]["subsets"]]
    assert {lab["mvc.dev/adapter"] for lab in labels} == {
        short(st.ids["sql-lora@v1.3.0"]),
        short(st.ids["sql-lora@v1.4.0"]),
    }
    *pins, default = docs["VirtualService"]["spec"]["http"]
    assert [r["weight"] for r in default["route"]] == [50, 50]
    assert len(pins) == 1  # one base version: its tags pin the first arm's target only
    # the schema check is real: a field Istio does not have is refused
    jsonschema = require("jsonschema")
    broken = json.loads(json.dumps(docs["VirtualService"]))
    broken["spec"]["http"][-1]["route"][0]["percent"] = 50
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schema("istio-crd-subset.json", "VirtualService"))
    broken = json.loads(json.dumps(docs["VirtualService"]))
    broken["spec"]["http"][-1]["route"][0]["weight"] = "half"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, crd_schema("istio-crd-subset.json", "VirtualService"))


# --- dir ------------------------------------------------------------------------------------------


def test_dir_folders_per_arm_routing_and_pruning(st: Store, tmp_path) -> None:
    from mvc.router import Router

    dest = tmp_path / "plain"
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0 + sql-lora@v1.3.0", 30)
    first = export(st.repo, M, C, "dir", str(dest))
    routing = json.loads((dest / "routing.json").read_text())
    assert routing["record"] == first.record and routing["state"] == "canary"
    arms = {a["label"]: a for a in routing["arms"]}
    assert {k: a["weight"] for k, a in arms.items()} == {"stable": 70, "canary": 30}
    assert_version_files(st, st.ids["bert@v1.4.0"], str(dest / arms["stable"]["path"]))
    assert_version_files(st, st.ids["sql-lora@v1.3.0"], str(dest / "canary-adapter"))
    assert routing["order"] == ["canary", "stable"]

    # routing.json is enough to reproduce mvc's routing decisions
    import blake3

    router = Router(st.repo, M, C)
    for key in ("user-1", "user-2", "user-3", "user-42"):
        digest = blake3.blake3(f"bert\0prod\0{key}".encode()).digest(length=8)
        bucket, total = int.from_bytes(digest, "big") * 100 / 2**64, 0
        for label in routing["order"]:
            total += arms[label]["weight"]
            if bucket < total:
                break
        assert label == router.route(key).label

    unchanged = export(st.repo, M, C, "dir", str(dest))
    assert unchanged.written == [] and unchanged.removed == []
    ops.promote(st.repo, M, C)
    after = export(st.repo, M, C, "dir", str(dest))
    assert sorted(os.listdir(dest / "stable")) == ["config.json", "model.safetensors"]
    assert_version_files(st, st.ids["bert@v1.5.0"], str(dest / "stable"))
    assert not (dest / "canary" / "model.safetensors").exists()
    assert any(k.startswith("canary-adapter/") for k in after.removed)
    assert [a["label"] for a in json.loads((dest / "routing.json").read_text())["arms"]] == [
        "stable"
    ]


def test_export_errors(st: Store, tmp_path) -> None:
    with pytest.raises(NotFound):
        export(st.repo, M, "nowhere", "dir", str(tmp_path / "x"))
    ops.set_channel(st.repo, M, C, "v1.4.0")
    with pytest.raises(UsageError, match="unknown export format"):
        export(st.repo, M, C, "onnx", str(tmp_path / "x"))


def test_cli_export(st: Store, cli, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(st.root)
    ops.set_channel(st.repo, M, C, "v1.4.0")
    out = cli("export", "bert", "prod", "--format", "kserve", "--to", str(tmp_path / "k"))
    assert out.stdout.splitlines() == ["inferenceservice.yaml"]
    assert "exported bert prod" in out.stderr
    data = cli(
        "export", "bert", "prod", "--format", "triton", "--to", str(tmp_path / "t"), "--json"
    ).json()
    assert data["configs"] == ["bert/config.pbtxt"] and data["details"]["version_policy"] == [1]
    assert any("model.py" in w for w in data["warnings"])
    bad = cli("export", "bert", "prod", "--format", "onnx", "--to", str(tmp_path / "o"), expect=2)
    assert "unknown export format" in bad.stderr


def test_export_never_overwrites_files_it_did_not_write(tmp_path) -> None:
    from mvc.errors import UsageError
    from mvc.exports.sink import Sink

    dest = tmp_path / "ex"
    dest.mkdir()
    (dest / "routing.json").write_text("my notes")
    with pytest.raises(UsageError, match="no mvc export wrote"):
        Sink.open(str(dest))
    assert (dest / "routing.json").read_text() == "my notes"
    notdir = tmp_path / "notdir"
    notdir.write_text("hi")
    with pytest.raises(UsageError, match="not a folder"):
        Sink.open(str(notdir))


def test_an_export_stopped_by_a_foreign_file_can_be_rerun(store, cli, make_model, tmp_path):
    make_model("models/bert", seed=1)
    cli("commit", "models/bert", "-m", "one")
    cli("tag", "bert", "v1.0.0")
    cli("channel", "set", "bert", "prod", "v1.0.0", "-m", "first")
    dest = tmp_path / "dir-export"
    cli("export", "bert", "prod", "--format", "dir", "--to", dest)
    make_model("models/bert", seed=2)
    cli("commit", "models/bert", "-m", "two")
    cli("tag", "bert", "v1.1.0")
    cli("deploy", "bert", "prod", "v1.1.0", "--canary", "10")
    # Somebody's file where the new arm's folder will be written.
    planned = cli("export", "bert", "prod", "--format", "dir", "--to", tmp_path / "probe")
    canary_files = [line for line in planned.stderr.splitlines() if "written" in line]
    assert canary_files
    import os

    arms = sorted(os.listdir(tmp_path / "probe"))
    new_arm = next(a for a in arms if not (dest / a).exists() and (tmp_path / "probe" / a).is_dir())
    (dest / new_arm).mkdir()
    (dest / new_arm / "tokenizer.json").write_text("mine")
    cli("export", "bert", "prod", "--format", "dir", "--to", dest, expect=2)
    assert (dest / new_arm / "tokenizer.json").read_text() == "mine"
    import json

    partial = json.loads((dest / "mvc-export.json").read_text())
    assert partial["complete"] is False
    assert f"{new_arm}/config.json" in partial["files"]  # written before the refusal
    (dest / new_arm / "tokenizer.json").unlink()
    cli("export", "bert", "prod", "--format", "dir", "--to", dest)  # its own files are recognised
    probe, done = tmp_path / "probe", dest
    for base, _dirs, names in os.walk(probe):
        for name in names:
            rel = os.path.relpath(os.path.join(base, name), probe)
            if rel != "mvc-export.json":
                assert (done / rel).read_bytes() == (probe / rel).read_bytes(), rel
