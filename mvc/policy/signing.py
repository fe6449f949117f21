"""The ``signing:`` section of mvc.yaml: whose signatures count, and where one is required.

::

    signing:
      keys: [keys/release.pub]          # PEM public keys, relative to the project root
      require: [deploy, install]        # deploy (a channel move), install (mvc install), pull

A version must then carry a signature (``mvc sign``, stored with the version) that verifies
with one of the keys before it is deployed, installed or pulled.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from mvc.policy.text import PolicyText, Section

PURPOSES = ("deploy", "install", "pull")


@dataclass(frozen=True)
class SigningPolicy:
    keys: tuple[str, ...]  # POSIX paths relative to the project root
    require: tuple[str, ...]


def _parse(value: object, ctx: PolicyText) -> SigningPolicy:
    body = ctx.mapping("signing", value)
    ctx.only_keys("signing", body, ("keys", "require"))
    keys = body.get("keys")
    if not isinstance(keys, list) or not keys:
        ctx.fail("signing.keys", "a list of public key files (PEM), e.g. [keys/release.pub]")
    paths = []
    for index, key in enumerate(keys):
        text = ctx.string(f"signing.keys[{index}]", key)
        if text.startswith("/") or posixpath.normpath(text).startswith(".."):
            ctx.fail(f"signing.keys[{index}]", f"{text!r} must be a file inside the project")
        paths.append(text)
    require = body.get("require", [])
    if not isinstance(require, list):
        ctx.fail("signing.require", f"a list of: {', '.join(PURPOSES)}")
    for index, item in enumerate(require):
        if item not in PURPOSES:
            ctx.fail(f"signing.require[{index}]", f"{item!r} is not one of {', '.join(PURPOSES)}")
    return SigningPolicy(tuple(paths), tuple(str(item) for item in require))


SIGNING: Section[SigningPolicy] = Section(
    "signing", _parse, "whose signatures count and where a valid one is required"
)
