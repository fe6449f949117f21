"""The ``channels:`` section of mvc.yaml: what each channel should serve (GitOps desired state).

::

    channels:
      bert:
        prod: v1.4.0                        # the stable arm, all traffic
        staging:
          version: ^1.5                     # the stable arm
          canary: {version: ^1.6, weight: 10}
        mirror:
          version: v1.4.0
          shadow: ^1.6                      # a shadow receiving a copy of the traffic

Versions are deployment targets as ``mvc channel set`` takes them: a tag, a range, a branch,
an id, or ``REV + ADAPTER@REV``. ``mvc apply`` makes the channels so; ``mvc channel show
--format yaml`` writes the current state in this form.
"""

from __future__ import annotations

from dataclasses import dataclass

from mvc.errors import MvcError
from mvc.policy.text import PolicyText, Section
from mvc.refnames import validate_channel, validate_model


@dataclass(frozen=True)
class Desired:
    model: str
    channel: str
    stable: str
    canary: str | None = None
    weight: int | None = None  # the canary's share, 1-99
    shadow: str | None = None


def _target(ctx: PolicyText, path: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        ctx.fail(path, "expected a version such as v1.4.0, ^1.5, main or 'v2 + lora@v1'")
    text = str(value).strip()
    if not text:
        ctx.fail(path, "empty version")
    return text


def _parse(value: object, ctx: PolicyText) -> tuple[Desired, ...]:
    found: list[Desired] = []
    for model, channels in ctx.mapping("channels", value).items():
        where = f"channels.{model}"
        try:
            validate_model(str(model))
        except MvcError as exc:
            ctx.fail(where, exc.message)
        for name, state in ctx.mapping(where, channels).items():
            path = f"{where}.{name}"
            try:
                validate_channel(str(name))
            except MvcError as exc:
                ctx.fail(path, exc.message)
            if not isinstance(state, dict):
                found.append(Desired(str(model), str(name), _target(ctx, path, state)))
                continue
            ctx.only_keys(path, state, ("version", "canary", "shadow"))
            if "version" not in state:
                ctx.fail(path, "needs version: (what the stable arm serves)")
            stable = _target(ctx, f"{path}.version", state["version"])
            canary = weight = shadow = None
            if "canary" in state:
                body = ctx.mapping(f"{path}.canary", state["canary"])
                ctx.only_keys(f"{path}.canary", body, ("version", "weight"))
                if "version" not in body or "weight" not in body:
                    ctx.fail(f"{path}.canary", "needs version: and weight: (1-99)")
                canary = _target(ctx, f"{path}.canary.version", body["version"])
                weight = ctx.integer(f"{path}.canary.weight", body["weight"], minimum=1)
                if weight > 99:
                    ctx.fail(f"{path}.canary.weight", f"must be 1-99, got {weight}")
            if "shadow" in state:
                shadow = _target(ctx, f"{path}.shadow", state["shadow"])
            if canary is not None and shadow is not None:
                ctx.fail(path, "a channel runs a canary or a shadow, not both")
            found.append(Desired(str(model), str(name), stable, canary, weight, shadow))
    return tuple(found)


CHANNELS: Section[tuple[Desired, ...]] = Section(
    "channels", _parse, "what each channel should serve; `mvc apply` makes it so"
)
