"""``mvc sign`` / ``mvc verify`` with the real model-signing package and a key pair the test makes
(no network). The signature is checked by model-signing's own verifier too, on a checkout."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mvc.errors import EXIT_CORRUPT


def _need_model_signing() -> None:
    try:
        import model_signing  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() in ("true", "1"):
            raise  # CI installs it (the test extra): missing is a failure
        pytest.skip("model-signing is not installed (pip install -e '.[test]' installs it)")


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    _need_model_signing()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    found = {}
    for name in ("alice", "mallory"):
        key = ec.generate_private_key(ec.SECP256R1())
        found[name] = tmp_path / f"{name}.pem"
        found[name].write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        found[f"{name}.pub"] = tmp_path / f"{name}.pub"
        found[f"{name}.pub"].write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return found


@pytest.fixture
def versions(store, cli, make_model) -> dict[str, str]:
    make_model("models/bert")
    v1 = cli(
        "commit", "models/bert", "-m", "v1", "--dataset", "squad=s3://corp/squad"
    ).stdout.strip()
    cli("tag", "bert", "v1.0.0")
    make_model("models/bert", seed=1)
    v2 = cli("commit", "models/bert", "-m", "v2").stdout.strip()
    return {"v1": v1, "v2": v2}


def test_sign_then_verify_and_model_signing_agrees(store, cli, keys, versions, tmp_path):
    sig = tmp_path / "bert.sig"
    signed = cli("sign", "bert@v1.0.0", "--key", keys["alice"], "--output", sig, "--json").json()
    assert signed["version"] == versions["v1"] and signed["files"] == 3
    verified = cli(
        "verify", "bert@v1.0.0", "--key", keys["alice.pub"], "--signature", sig, "--json"
    ).json()
    assert verified["version"] == versions["v1"] and verified["key"] == signed["key"]
    # the signature is also stored with the version: verify needs no file
    stored = cli("verify", "bert@v1.0.0", "--key", keys["alice.pub"], "--json").json()
    assert stored["signature"] == "stored"
    assert cli("show", "bert@v1.0.0", "--json").json()["annotations"][0]["signed"] is True
    # the predicate names the version and carries its lineage
    payload = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    ours = payload["predicate"]["mvc"]
    assert ours["version"] == versions["v1"] and ours["lineage"]["datasets"][0]["name"] == "squad"
    # OpenSSF's own verifier accepts it over a checked-out folder
    cli("checkout", "bert@v1.0.0", "--to", tmp_path / "bert")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "verify",
            "key",
            str(tmp_path / "bert"),
            "--signature",
            str(sig),
            "--public_key",
            str(keys["alice.pub"]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_another_key_another_version_or_changed_files_fail(store, cli, keys, versions, tmp_path):
    sig = tmp_path / "bert.sig"
    cli("sign", "bert@v1.0.0", "--key", keys["alice"], "--output", sig)
    wrong_key = cli(
        "verify",
        "bert@v1.0.0",
        "--key",
        keys["mallory.pub"],
        "--signature",
        sig,
        expect=EXIT_CORRUPT,
    )
    assert "no signature of bert@" in wrong_key.stderr and "verifies with" in wrong_key.stderr
    other = cli(
        "verify", "bert@main", "--key", keys["alice.pub"], "--signature", sig, expect=EXIT_CORRUPT
    )
    assert "verifies with" in other.stderr
    # same files, other metadata: a version that re-commits v1's files with another message
    cli("checkout", "bert@v1.0.0", "--to", tmp_path / "again")
    twin = cli(
        "commit", tmp_path / "again", "--model", "bert", "--branch", "twin", "-m", "same files"
    ).stdout.strip()
    assert twin != versions["v1"]
    renamed = cli(
        "verify",
        f"bert@{twin}",
        "--key",
        keys["alice.pub"],
        "--signature",
        sig,
        expect=EXIT_CORRUPT,
    )
    assert f"made for version {versions['v1'][:12]}" in renamed.stderr


def test_a_key_that_is_not_a_key_is_a_clear_error(store, cli, keys, versions, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    refused = cli("sign", "bert", "--key", bad, "--output", tmp_path / "x.sig", expect=1)
    assert "cannot use" in refused.stderr and "Traceback" not in refused.stderr


def test_a_version_without_a_signature_says_so(store, cli, keys, versions):
    refused = cli("verify", "bert@main", "--key", keys["alice.pub"], expect=EXIT_CORRUPT)
    assert "carries no signature" in refused.stderr and "mvc sign" in refused.stderr


def test_the_policy_requires_a_signature_to_deploy_install_and_pull(
    store, cli, keys, versions, tmp_path
):
    root = Path(store.root)
    (root / "keys").mkdir()
    (root / "keys" / "release.pub").write_bytes(keys["alice.pub"].read_bytes())
    (root / "mvc.yaml").write_text(
        "signing:\n  keys: [keys/release.pub]\n  require: [deploy, install, pull]\n"
        "requires:\n  bert: v1.0.0\n"
    )
    refused = cli("channel", "set", "bert", "prod", "v1.0.0", expect=EXIT_CORRUPT)
    assert "requires a valid signature to deploy" in refused.stderr
    cli("lock")
    assert "to install" in cli("install", "--locked", expect=EXIT_CORRUPT).stderr
    cli("sign", "bert@v1.0.0", "--key", keys["mallory"])  # a key the policy does not list
    assert (
        "no signature"
        in cli("channel", "set", "bert", "prod", "v1.0.0", expect=EXIT_CORRUPT).stderr
    )
    cli("sign", "bert@v1.0.0", "--key", keys["alice"])
    cli("channel", "set", "bert", "prod", "v1.0.0")
    cli("install", "--locked")
    # a clone with the same policy pulls the signed tag (its signature comes along), not main
    cli("remote", "add", "origin", tmp_path / "remote")
    cli("push", "origin", "bert")
    clone = tmp_path / "clone"
    cli("-C", str(tmp_path), "init", str(clone))
    for rel in ("mvc.yaml", "keys/release.pub"):
        (clone / rel).parent.mkdir(parents=True, exist_ok=True)
        (clone / rel).write_bytes((root / rel).read_bytes())
    cli("-C", clone, "remote", "add", "origin", tmp_path / "remote")
    cli("-C", clone, "pull", "origin", "bert@v1.0.0")
    unsigned = cli("-C", clone, "pull", "origin", "bert@main", expect=EXIT_CORRUPT)
    assert "to pull" in unsigned.stderr
    assert cli("-C", clone, "log", "bert@main", expect=None).exit_code != 0  # main did not move


def test_deploying_a_new_adapter_on_a_served_base_needs_its_signature(st, keys):
    """The adapter is what is new when only it changes: its signature is required (a base that
    is signed does not vouch for an unsigned adapter put on it)."""
    from mvc.errors import SignatureInvalid
    from mvc.ops import deploy
    from mvc.ops.signing import sign

    root = Path(st.root)
    (root / "keys").mkdir()
    (root / "keys" / "release.pub").write_bytes(keys["alice.pub"].read_bytes())
    (root / "mvc.yaml").write_text("signing:\n  keys: [keys/release.pub]\n  require: [deploy]\n")
    sign(st.repo, "bert@v1.4.0", private_key=str(keys["alice"]))
    deploy.set_channel(st.repo, "bert", "prod", "v1.4.0")
    with pytest.raises(SignatureInvalid, match="to deploy sql-lora@"):
        deploy.set_channel(st.repo, "bert", "prod", "v1.4.0 + sql-lora@v1.3.0")
    sign(st.repo, "sql-lora@v1.3.0", private_key=str(keys["alice"]))
    deploy.set_channel(st.repo, "bert", "prod", "v1.4.0 + sql-lora@v1.3.0")


def test_pulling_a_channel_checks_its_adapter_under_the_adapter_model(st, keys, tmp_path):
    """A channel arm's adapter is a version of the adapter's model: its signature is read from
    that model's annotations (under the base model's name none is ever found)."""
    from mvc.deployment.records import AdapterRef
    from mvc.ops import deploy, remotes
    from mvc.ops.channels import current
    from mvc.ops.signing import sign
    from mvc.repo import Repo

    for name in ("bert@v1.4.0", "sql-lora@v1.3.0"):
        sign(st.repo, name, private_key=str(keys["alice"]))
    deploy.set_channel(st.repo, "bert", "prod", "v1.4.0 + sql-lora@v1.3.0")
    remotes.add_remote(st.repo, "origin", str(tmp_path / "remote"))
    remotes.push(st.repo, "origin", "sql-lora")
    remotes.push(st.repo, "origin", "bert")
    clone = tmp_path / "clone"
    Repo.init(str(clone))
    (clone / "keys").mkdir()
    (clone / "keys" / "release.pub").write_bytes(keys["alice.pub"].read_bytes())
    (clone / "mvc.yaml").write_text("signing:\n  keys: [keys/release.pub]\n  require: [pull]\n")
    repo = Repo(str(clone), env={"MVC_USER_NAME": "Ada", "MVC_CORE_FSYNC": "false"})
    remotes.add_remote(repo, "origin", str(tmp_path / "remote"))
    remotes.pull(repo, "origin", "sql-lora@v1.3.0")
    remotes.pull(repo, "origin", "bert@v1.4.0")
    remotes.pull(repo, "origin", "bert@prod")
    record = current(repo, "bert", "prod")
    assert record is not None
    assert record.arms[0].adapter == AdapterRef("sql-lora", st.ids["sql-lora@v1.3.0"])


def test_pulling_a_channel_alone_brings_the_signatures_of_what_it_serves(st, keys, tmp_path):
    """`pull origin bert@prod` into an empty store: the annotations of every version prod's
    arms serve (the base under bert, the adapter under sql-lora) travel with the channel, so a
    `signing.require: [pull]` policy is satisfied without pulling the tags first."""
    from mvc.ops import deploy, remotes
    from mvc.ops.annotate import chain
    from mvc.ops.channels import current
    from mvc.ops.signing import sign
    from mvc.repo import Repo

    for name in ("bert@v1.4.0", "sql-lora@v1.3.0"):
        sign(st.repo, name, private_key=str(keys["alice"]))
    deploy.set_channel(st.repo, "bert", "prod", "v1.4.0 + sql-lora@v1.3.0")
    remotes.add_remote(st.repo, "origin", str(tmp_path / "remote"))
    remotes.push(st.repo, "origin", "bert@prod")  # the channel alone carries its notes too
    clone = tmp_path / "clone"
    Repo.init(str(clone))
    (clone / "keys").mkdir()
    (clone / "keys" / "release.pub").write_bytes(keys["alice.pub"].read_bytes())
    (clone / "mvc.yaml").write_text("signing:\n  keys: [keys/release.pub]\n  require: [pull]\n")
    repo = Repo(str(clone), env={"MVC_USER_NAME": "Ada", "MVC_CORE_FSYNC": "false"})
    remotes.add_remote(repo, "origin", str(tmp_path / "remote"))
    remotes.pull(repo, "origin", "bert@prod")
    record = current(repo, "bert", "prod")
    assert record is not None and record.arms[0].version == st.ids["bert@v1.4.0"]
    for model, name in (("sql-lora", "sql-lora@v1.3.0"), ("bert", "bert@v1.4.0")):
        assert any(note.signature for note in chain(repo, model, st.ids[name])), name
