"""Version-tagged metrics: points from production and evaluation, and the sources that hold them.

``model.py`` is the vocabulary (a ``Point``, a ``Query`` for one arm's series, its ``Summary``)
and the ``MetricSource`` protocol that SLO guards, comparisons and promotion gates read through,
whether the points sit in the store's SQLite database (``sqlite.py``) or in a Prometheus server.
``stats.py`` computes summaries; ``recorder.py`` records from serving code.

``mvc.metrics.record(decision, latency_ms=12.5, error=0)`` and ``mvc.metrics.Recorder`` are
re-exported here lazily (PEP 562), so ``import mvc.metrics.model`` does not load the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mvc.metrics.recorder import Recorder, record

__all__ = ["Recorder", "record"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from mvc.metrics import recorder

        return getattr(recorder, name)
    raise AttributeError(f"module 'mvc.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
