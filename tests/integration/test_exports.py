"""Exports, checked the way each server reads them: config.pbtxt parsed as protobuf text,
KServe YAML parsed with pyyaml, vLLM arguments parsed as its command line, files by blake3."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
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


# --- a protobuf text-format reader (google.protobuf is not installed here) -----------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)|(?P<id>[A-Za-z_][\w.]*)|(?P<p>[{}\[\]:,]))'
)


def tokens(text: str) -> list[tuple[str, Any]]:
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    found, pos = [], 0
    while pos < len(text.rstrip()):
        match = _TOKEN.match(text, pos)
        assert match, f"bad pbtxt at {text[pos : pos + 30]!r}"
        kind = match.lastgroup
        raw = match.group(kind or "")
        found.append(
            (kind, json.loads(raw) if kind == "str" else int(raw) if kind == "num" else raw)
        )
        pos = match.end()
    return found


def parse_pbtxt(text: str) -> dict[str, list[Any]]:
    """Fields -> list of values (every field may repeat), like protobuf's text format."""
    items = tokens(text)
    value, end = _message(items, 0, None)
    assert end == len(items)
    return value


def _message(items: list, pos: int, close: str | None) -> tuple[dict[str, list[Any]], int]:
    fields: dict[str, list[Any]] = {}
    while pos < len(items) and items[pos] != ("p", close):
        kind, name = items[pos]
        assert kind == "id", items[pos]
        pos += 1
        if items[pos] == ("p", ":"):
            pos += 1
        if items[pos] == ("p", "["):
            pos += 1
            while items[pos] != ("p", "]"):
                value, pos = _value(items, pos)
                fields.setdefault(name, []).append(value)
                if items[pos] == ("p", ","):
                    pos += 1
            pos += 1
        else:
            value, pos = _value(items, pos)
            fields.setdefault(name, []).append(value)
        if pos < len(items) and items[pos] == ("p", ","):
            pos += 1
    return fields, pos + (1 if close else 0)


def _value(items: list, pos: int) -> tuple[Any, int]:
    if items[pos] == ("p", "{"):
        return _message(items, pos + 1, "}")
    return items[pos][1], pos + 1


def test_pbtxt_reader_reads_protobuf_text() -> None:
    text = 'name: "a"\nv { s { versions: [1, 2] } }\np { key: "k" value { string_value: "x\\"y" } }\np { key: "j" }'
    parsed = parse_pbtxt(text)
    assert parsed["name"] == ["a"]
    assert parsed["v"][0]["s"][0]["versions"] == [1, 2]
    assert [p["key"][0] for p in parsed["p"]] == ["k", "j"]
    assert parsed["p"][0]["value"][0]["string_value"] == ['x"y']


def triton_config(folder: str) -> dict[str, list[Any]]:
    with open(os.path.join(folder, "config.pbtxt"), encoding="utf-8") as handle:
        return parse_pbtxt(handle.read())


def parameters(config: dict[str, list[Any]]) -> dict[str, str]:
    return {p["key"][0]: p["value"][0]["string_value"][0] for p in config.get("parameters", [])}


def policy(config: dict[str, list[Any]]) -> list[int]:
    return config["version_policy"][0]["specific"][0]["versions"]


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
    assert config["name"] == ["bert"] and config["backend"] == ["python"]
    assert config["max_batch_size"] == [0]
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
    assert config["backend"] == ["vllm"]
    assert config["instance_group"][0]["kind"] == ["KIND_MODEL"]
    assert policy(config) == [1, 2]  # the shadow is loaded too: it receives mirrored traffic
    engine = json.loads((tmp_path / "repo/bert-sql/1/model.json").read_text())
    assert engine["model"] == os.path.join(dest, "bert-sql/1/weights") and engine["enable_lora"]
    loras = json.loads((tmp_path / "repo/bert-sql/1/multi_lora.json").read_text())
    assert_version_files(st, st.ids["sql-lora@v1.3.0"], loras["bert-sql"])
    assert "enable_lora" not in json.loads((tmp_path / "repo/bert-sql/2/model.json").read_text())
    assert result.warnings == []


# --- kserve ---------------------------------------------------------------------------------------


def kserve_docs(dest: str) -> list[dict[str, Any]]:
    with open(os.path.join(dest, "inferenceservice.yaml"), encoding="utf-8") as handle:
        return list(yaml.safe_load_all(handle))


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


# --- vllm -----------------------------------------------------------------------------------------


def vllm_parser() -> argparse.ArgumentParser:
    """The part of `vllm serve`'s command line the export uses."""
    parser = argparse.ArgumentParser(prog="vllm serve")
    parser.add_argument("model")
    parser.add_argument("--served-model-name", nargs="+")
    parser.add_argument("--enable-lora", action="store_true")
    parser.add_argument("--lora-modules", nargs="+", default=[])
    parser.add_argument(
        "--max-lora-rank", type=int, default=16, choices=(1, 8, 16, 32, 64, 128, 256, 320, 512)
    )
    parser.add_argument("--max-loras", type=int, default=1)
    return parser


def test_vllm_base_with_adapter_arms(st: Store, tmp_path) -> None:
    dest = str(tmp_path / "vllm")
    ops.set_channel(st.repo, M, C, "v1.4.0 + sql-lora@v1.3.0")
    ops.deploy_canary(st.repo, M, C, "v1.4.0 + sql-lora@v1.4.0", 10)
    export(st.repo, M, C, "vllm", dest)
    words = shlex.split((tmp_path / "vllm/vllm-args.txt").read_text())
    assert words[:2] == ["vllm", "serve"]
    args = vllm_parser().parse_args(words[2:])
    assert args.served_model_name == ["bert"] and args.enable_lora
    assert args.max_loras >= len(args.lora_modules) == 2
    modules = dict(item.split("=", 1) for item in args.lora_modules)
    assert set(modules) == {"prod-stable", "prod-canary"}
    assert_version_files(st, st.ids["bert@v1.4.0"], args.model)
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
    args = vllm_parser().parse_args(words[2:])
    assert args.max_lora_rank == 32 and args.lora_modules[0].startswith("prod-stable=")


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
        json.dumps({"peft_type": "LORA", "r": 2, "lora_alpha": 4, "rank_pattern": {"value": 40}})
    )
    commit(st.repo, str(folder), message="patterned", model="wide-lora")
    ops.set_channel(st.repo, M, C, "v1.4.0 + wide-lora@main")
    export(st.repo, M, C, "vllm", str(tmp_path / "vllm"))
    words = shlex.split((tmp_path / "vllm/vllm-args.txt").read_text())
    assert vllm_parser().parse_args(words[2:]).max_lora_rank == 64


def test_vllm_refuses_two_base_versions(st: Store, tmp_path) -> None:
    ops.set_channel(st.repo, M, C, "v1.4.0")
    ops.deploy_canary(st.repo, M, C, "v1.5.0", 10)
    with pytest.raises(UsageError, match="one base model") as caught:
        export(st.repo, M, C, "vllm", str(tmp_path / "vllm"))
    assert caught.value.hint and "triton" in caught.value.hint


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
