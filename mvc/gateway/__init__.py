"""``mvc serve``: a version-aware HTTP gateway in front of real inference servers.

- ``config``: the gateway's YAML file, parsed once with ``file:line`` errors;
- ``protocols``: how a request for one upstream protocol (Triton's KServe-v2 HTTP API,
  OpenAI-style completions, a plain URL per version) is re-addressed to the chosen version,
  and what "the same answer" means when a shadow is compared with the arm that answered;
- ``telemetry``: per-request outcomes into Prometheus metrics, the metric store and the
  decision log;
- ``app``: the ASGI application (starlette) that routes with ``mvc.router.Router``.

Starlette, httpx and prometheus_client are the optional extra ``serve``; only ``app`` and
``telemetry`` import them, inside functions or at their own import (nothing else imports them).
"""
