"""The upstreams' own protocols: where a request for the chosen version goes, and what makes two
answers "the same" when a shadow is compared with the arm that answered. Pure.

- **triton**: KServe v2 / Triton HTTP, ``POST /v2/models/{name}[/versions/{n}]/infer``; the
  gateway sends ``/v2/models/{triton_model}/versions/{number}/infer`` with the chosen version's
  number (the export's numbering unless the file says otherwise). Top output: each output's
  ``name`` and ``data``.
- **openai**: ``POST /v1/completions`` and ``/v1/chat/completions``; the gateway sets the body's
  ``model`` to the chosen arm's served name (vLLM's LoRA name: per-request adapter switching).
  Top output: each choice's ``text`` or ``message.content`` (ids and timestamps differ per call).
- **http**: the rest of the path after ``/{route}/`` is appended to the version's URL. Top output:
  the JSON body, else the bytes.
"""

from __future__ import annotations

import json
from typing import Any

from mvc.gateway.config import OPENAI, TRITON

OPENAI_PATHS = ("/v1/completions", "/v1/chat/completions")


class BadRequest(ValueError):
    """A request the gateway cannot re-address (answered 400, with this message)."""


def triton_path(model: str, number: int) -> str:
    return f"/v2/models/{model}/versions/{number}/infer"


def json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the request body is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BadRequest("the request body is not a JSON object")
    return value


def with_model(body: dict[str, Any], name: str) -> bytes:
    """The OpenAI-style body with ``model`` set to the served name of the chosen arm."""
    return json.dumps({**body, "model": name}, separators=(",", ":")).encode()


def _loads(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _events(body: bytes) -> list[Any] | None:
    """The JSON events of a server-sent event stream (``data: {...}`` lines), or None."""
    if not body.startswith(b"data:"):
        return None
    events = []
    for line in body.splitlines():
        if line.startswith(b"data:") and line[5:].strip() != b"[DONE]":
            events.append(_loads(line[5:].strip()))
    return events


def _streamed_text(events: list[Any]) -> list[Any]:
    """Each choice's text, joined over a stream's chunks (``text`` or ``delta.content``)."""
    texts: dict[int, str] = {}
    for event in events:
        for choice in event.get("choices", []) if isinstance(event, dict) else []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta")
            piece = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            index = choice.get("index", 0)
            texts[index] = texts.get(index, "") + (piece if isinstance(piece, str) else "")
    return [texts[i] for i in sorted(texts)]


def top_output(protocol: str, body: bytes) -> Any:
    """What must match for two answers to agree (the bytes, when the body is not the JSON the
    protocol documents). An OpenAI-style event stream (``stream: true``) compares its joined
    choice texts, so a streamed answer agrees with the same answer in one piece."""
    if protocol == OPENAI:
        events = _events(body)
        if events is not None:
            return _streamed_text(events)
    value = _loads(body)
    if protocol == TRITON and isinstance(value, dict) and isinstance(value.get("outputs"), list):
        return [
            (o.get("name"), o.get("data")) if isinstance(o, dict) else o for o in value["outputs"]
        ]
    if protocol == OPENAI and isinstance(value, dict) and isinstance(value.get("choices"), list):
        answers = []
        for choice in value["choices"]:
            if not isinstance(choice, dict):
                answers.append(choice)
            elif isinstance(choice.get("message"), dict):
                answers.append(choice["message"].get("content"))
            else:
                answers.append(choice.get("text"))
        return answers
    return value if value is not None else body


def agree(protocol: str, status: int, body: bytes, other_status: int, other_body: bytes) -> bool:
    """Same status, and the same body or the same top output."""
    if status != other_status:
        return False
    return body == other_body or top_output(protocol, body) == top_output(protocol, other_body)
