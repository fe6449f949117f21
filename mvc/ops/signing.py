"""``mvc sign`` / ``mvc verify``: OpenSSF model-signing signatures over a version's files.

The signature is a Sigstore bundle as the ``model-signing`` package writes it (an in-toto
statement whose predicate lists every file's SHA-256, DSSE-signed with the user's elliptic-curve
key), so ``model_signing verify key MODEL_FOLDER --signature S --public_key K`` accepts what
``mvc checkout`` materialises. mvc adds its own field to the predicate (v1.0 verifiers ignore
fields they do not know): ``mvc``, naming the model, the version id and tree id (the version id
covers its lineage, parents and metadata) and the lineage itself, so a verified signature also
says which version, made from what.

``sign`` stores the bundle with the version, as an annotation (``mvc/annotations.py``), so it
travels with push and pull; ``-o`` also writes it to a file. ``verify`` checks a given file, or
every signature stored with the version. With a ``signing:`` section in mvc.yaml,
``require_signed`` refuses to deploy, install or pull a version no listed key signed.

Signing and verifying materialise the version into a temporary folder through checkout's
verified reads, and hash that with model-signing's own hashing (never a hash of ours pretending
to be theirs). Keys are files the user supplies: no network, no Sigstore identity.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from mvc.errors import InvalidInput, NotFound, SignatureInvalid, UsageError
from mvc.ids import ObjectId, short
from mvc.jsonshape import JsonShaped
from mvc.ops.annotate import append, chain, walk_chain
from mvc.ops.worktrees import checkout
from mvc.policy.file import read_policy
from mvc.policy.signing import SIGNING
from mvc.repo import Repo
from mvc.specs import Resolved, SpecLike, by_id, resolve

_PIP_HINT = "pip install 'mvc[signing]' (the model-signing package)"


@dataclass
class SignResult(JsonShaped):
    model: str
    version: ObjectId
    files: int
    key: str  # sha256 of the public key (DER), as `verify` reports it
    annotation: ObjectId | None  # where the signature is stored with the version
    signature: str | None = None  # the file it was also written to


@dataclass
class VerifyResult(JsonShaped):
    model: str
    version: ObjectId
    files: int
    key: str
    signature: str  # the file, or "stored" for a signature kept with the version
    tried: int = 1  # signatures tried until one verified
    problems: list[str] = field(default_factory=list)  # why the others did not


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


@contextmanager
def _materialised(repo: Repo, resolved: Resolved) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="mvc-sign-") as scratch:
        folder = os.path.join(scratch, resolved.model)
        checkout(repo, by_id(resolved.model, resolved.version), to=folder)
        yield folder


def key_id(path: str) -> str:
    """``sha256:<hex>`` of a PEM key's public part (DER), private or public key file."""
    from cryptography.hazmat.primitives import serialization

    try:
        data = pathlib.Path(path).read_bytes()
    except OSError as exc:
        missing = isinstance(exc, FileNotFoundError)  # a missing file is 1, as everywhere
        raise (NotFound if missing else InvalidInput)(
            f"cannot read key {path}: {exc.strerror or exc}"
        ) from exc
    try:
        try:
            public = serialization.load_pem_public_key(data)
        except ValueError:
            public = serialization.load_pem_private_key(data, password=None).public_key()
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"cannot use {path} as a key: not a PEM key ({exc})",
            hint="a PEM elliptic-curve key (openssl ecparam -genkey -name prime256v1)",
        ) from exc
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "sha256:" + hashlib.sha256(der).hexdigest()


def sign(
    repo: Repo,
    spec: SpecLike,
    *,
    private_key: str,
    output: str | None = None,
    password: str | None = None,
) -> SignResult:
    hashing, core, sign_ec_key, _verifying, json_format, statement = _libraries()
    resolved = resolve(repo, spec)
    key = key_id(private_key)
    with _materialised(repo, resolved) as folder:
        manifest = hashing.Config().hash(pathlib.Path(folder))
    payload = core.Payload(manifest)
    predicate = json_format.MessageToDict(payload.statement.pb.predicate)
    version = repo.objects.get_version(resolved.version)
    predicate["mvc"] = {
        "model": resolved.model,
        "version": resolved.version,
        "tree": version.tree,
        "lineage": version.lineage,
    }
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
    with tempfile.TemporaryDirectory(prefix="mvc-sig-") as scratch:
        path = pathlib.Path(scratch, "model.sig")
        signer.sign(payload).write(path)
        bundle = path.read_text(encoding="utf-8")
    if output is not None:
        pathlib.Path(output).write_text(bundle, encoding="utf-8")
    stored = append(repo, resolved, {}, f"signed by {key}", None, signature=bundle)
    return SignResult(
        resolved.model,
        resolved.version,
        len(predicate.get("resources", [])),
        key,
        stored.id,
        output,
    )


def verify(
    repo: Repo, spec: SpecLike, *, public_key: str, signature: str | None = None
) -> VerifyResult:
    """Check ``signature`` (a file), or else the signatures stored with the version."""
    resolved = resolve(repo, spec)
    return _verify(repo, resolved, [public_key], signature)


def _verify(
    repo: Repo,
    resolved: Resolved,
    keys: list[str],
    signature: str | None,
    notes_head: ObjectId | None = None,
) -> VerifyResult:
    if signature is not None:
        if not os.path.isfile(signature):
            raise UsageError(
                f"no signature file {signature}",
                hint="mvc sign SPEC --key KEY --output FILE writes one",
            )
        bundles = [(signature, pathlib.Path(signature).read_text(encoding="utf-8"))]
    else:
        notes = (
            list(walk_chain(repo, notes_head))
            if notes_head is not None
            else chain(repo, resolved.model, resolved.version)
        )
        bundles = [("stored", n.signature) for n in notes if n.signature is not None]
    label = f"{resolved.model}@{short(resolved.version)}"
    if not bundles:
        raise SignatureInvalid(
            f"{label} carries no signature",
            hint=f"mvc sign {label} --key KEY (or pass --signature FILE)",
        )
    hashing, _core, _signer, verifying, _json, _statement = _libraries()
    problems: list[str] = []
    with _materialised(repo, resolved) as folder, tempfile.TemporaryDirectory() as scratch:
        files = sum(len(names) for _, _, names in os.walk(folder))
        for tried, (where, bundle) in enumerate(bundles, 1):
            path = pathlib.Path(scratch, f"{tried}.sig")
            path.write_text(bundle, encoding="utf-8")
            signed = _signed_version(bundle)
            if signed is not None and signed != resolved.version:
                problems.append(f"{where}: made for version {short(signed)}")
                continue
            for key in keys:
                try:
                    verifying.Config().use_elliptic_key_verifier(public_key=key).set_hashing_config(
                        hashing.Config()
                    ).verify(folder, path)
                except (ValueError, TypeError) as exc:
                    problems.append(f"{where} with {key}: " + " ".join(str(exc).split())[:200])
                    continue
                return VerifyResult(
                    resolved.model, resolved.version, files, key_id(key), where, tried, problems
                )
    raise SignatureInvalid(
        f"no signature of {label} verifies with {', '.join(keys)}: " + "; ".join(problems)[:600],
        hint="the files differ from what was signed, the key is not the signer's, or the "
        "signature names another version (the same files committed again)",
    )


def require_signed(
    repo: Repo, purpose: str, model: str, version: ObjectId, *, notes_head: ObjectId | None = None
) -> None:
    """Refuse (exit 12) when mvc.yaml's ``signing.require`` lists ``purpose`` and no key of
    ``signing.keys`` verifies a signature stored with the version. ``notes_head``: the
    version's annotations as a pull is about to record them (its notes ref has not moved yet)."""
    policy = read_policy(repo.root).get(SIGNING)
    if policy is None or purpose not in policy.require:
        return
    keys = [os.path.join(repo.root, *key.split("/")) for key in policy.keys]
    try:
        _verify(repo, by_id(model, version), keys, None, notes_head)
    except SignatureInvalid as exc:
        raise SignatureInvalid(
            f"mvc.yaml requires a valid signature to {purpose} {model}@{short(version)}: "
            + exc.message,
            hint=f"sign it with a key of signing.keys: mvc sign {model}@id={version[:12]} --key KEY",
        ) from exc


def _signed_version(bundle: str) -> ObjectId | None:
    """The version id mvc put in a bundle's predicate (None: not one of mvc's)."""
    try:
        payload = json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))
    except (ValueError, KeyError, TypeError):
        return None
    ours = payload.get("predicate", {}).get("mvc") if isinstance(payload, dict) else None
    return ObjectId(ours["version"]) if isinstance(ours, dict) and "version" in ours else None
