"""``mvc sign`` / ``mvc verify``: OpenSSF model-signing signatures over a version's files.

The signature is a Sigstore bundle as the ``model-signing`` package writes it (an in-toto
statement whose predicate lists every file's SHA-256, DSSE-signed with the user's elliptic-curve
key), so ``model_signing verify key MODEL_FOLDER --signature S --public_key K`` accepts what
``mvc checkout`` materialises. mvc adds its own field to the predicate (v1.0 verifiers ignore
fields they do not know): ``mvc``, naming the model, the version id and tree id (the version id
covers its lineage, parents and metadata) and the lineage itself, so a verified signature also
says which version, made from what.

Both commands materialise the version into a temporary folder through checkout's verified
reads, and hash that with model-signing's own hashing (never a hash of ours pretending to be
theirs). Keys are files the user supplies: no network, no Sigstore identity.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import tempfile
from dataclasses import dataclass
from typing import Any

from mvc.errors import InvalidInput, SignatureInvalid, UsageError
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped
from mvc.ops.worktrees import checkout
from mvc.repo import Repo
from mvc.specs import SpecLike, by_id, resolve

_PIP_HINT = "pip install 'mvc[signing]' (the model-signing package)"


@dataclass
class SignResult(JsonShaped):
    model: str
    version: ObjectId
    signature: str
    files: int


@dataclass
class VerifyResult(JsonShaped):
    model: str
    version: ObjectId
    signature: str
    files: int
    signed_version: ObjectId


def _libraries() -> tuple[Any, Any, Any, Any, Any, Any]:
    """model-signing and what its payloads are made of, typed Any (its API is only partly
    annotated): hashing, its Payload, the EC signer, the verifier, protobuf's json_format,
    in-toto's Statement."""
    import importlib

    try:
        return (
            importlib.import_module("model_signing.hashing"),
            importlib.import_module("model_signing._signing.signing"),
            importlib.import_module("model_signing._signing.sign_ec_key"),
            importlib.import_module("model_signing.verifying"),
            importlib.import_module("google.protobuf.json_format"),
            importlib.import_module("in_toto_attestation.v1.statement"),
        )
    except ImportError as exc:
        raise UsageError(
            f"signing needs model-signing ({exc.name} is not installed)", hint=_PIP_HINT
        ) from exc


def _materialised(repo: Repo, spec: SpecLike, scratch: str) -> tuple[str, ObjectId, str]:
    resolved = resolve(repo, spec)
    folder = os.path.join(scratch, resolved.model)
    checkout(repo, by_id(resolved.model, resolved.version), to=folder)
    return folder, resolved.version, resolved.model


def _predicate(repo: Repo, model: str, version: ObjectId) -> dict[str, Any]:
    value = repo.objects.get_version(version)
    return {"model": model, "version": version, "tree": value.tree, "lineage": value.lineage}


def sign(
    repo: Repo, spec: SpecLike, *, private_key: str, output: str, password: str | None = None
) -> SignResult:
    hashing, core, sign_ec_key, _verifying, json_format, statement = _libraries()

    with tempfile.TemporaryDirectory(prefix="mvc-sign-") as scratch:
        folder, version, model = _materialised(repo, spec, scratch)
        manifest = hashing.Config().hash(pathlib.Path(folder))
        payload = core.Payload(manifest)
        predicate = json_format.MessageToDict(payload.statement.pb.predicate)
        predicate["mvc"] = _predicate(repo, model, version)
        payload.statement = statement.Statement(
            subjects=list(payload.statement.pb.subject),
            predicate_type=payload.statement.pb.predicate_type,
            predicate=predicate,
        )
        try:
            signer = sign_ec_key.Signer(pathlib.Path(private_key), password)
        except (ValueError, TypeError, OSError) as exc:
            raise InvalidInput(
                f"cannot use {private_key} as a signing key: {exc}",
                hint="a PEM elliptic-curve private key (openssl ecparam -genkey -name prime256v1)",
            ) from exc
        signer.sign(payload).write(pathlib.Path(output))
        files = len(predicate.get("resources", []))
    return SignResult(model, version, output, files)


def verify(repo: Repo, spec: SpecLike, *, public_key: str, signature: str) -> VerifyResult:
    hashing, _core, _signer, verifying, _json, _statement = _libraries()

    if not os.path.isfile(signature):
        raise UsageError(
            f"no signature file {signature}", hint="mvc sign SPEC --key KEY -o FILE writes one"
        )
    with tempfile.TemporaryDirectory(prefix="mvc-verify-") as scratch:
        folder, version, model = _materialised(repo, spec, scratch)
        try:
            verifying.Config().use_elliptic_key_verifier(public_key=public_key).set_hashing_config(
                hashing.Config()
            ).verify(folder, signature)
        except (ValueError, TypeError) as exc:
            raise SignatureInvalid(
                f"the signature {signature} does not verify {model}@{short(version)}: "
                + " ".join(str(exc).split())[:300],
                hint="the files differ from what was signed, or the key is not the signer's",
            ) from exc
        files = sum(len(names) for _, _, names in os.walk(folder))
    signed = _signed_version(signature)
    if signed is not None and signed != version:
        raise SignatureInvalid(
            f"the signature {signature} is for version {short(signed)}, not {model}@{short(version)} "
            "(the files are the same, the version's metadata or lineage is not)",
            hint=f"verify {model}@id={short(signed)}, or sign this version",
        )
    return VerifyResult(model, version, signature, files, signed or version)


def _signed_version(path: str) -> ObjectId | None:
    """The version id mvc put in the predicate (read after the bundle verified)."""
    with open(path, encoding="utf-8") as handle:
        bundle = json.load(handle)
    payload = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    ours = payload.get("predicate", {}).get("mvc")
    return ObjectId(ours["version"]) if isinstance(ours, dict) and "version" in ours else None
