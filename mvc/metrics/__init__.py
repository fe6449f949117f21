"""Version-tagged metrics: points from production and evaluation, and the sources that hold them.

``model.py`` is the vocabulary (a ``Point``, a ``Query`` for one arm's series, its ``Summary``)
and the ``MetricSource`` protocol that SLO guards, comparisons and promotion gates read through,
whether the points sit in the store's SQLite database or in a Prometheus server.
"""
