"""The project's policy file (``mvc.yaml``): SLOs, promotion gates, deprecations, archiving.

``file.py`` reads it and hands each top-level section to that section's parser; ``text.py`` is
what a parser gets (the value, and where each key is, for ``file:line`` errors);
``conditions.py`` is the one grammar of thresholds (``">= 0.90"``, ``"no worse than stable +
10%"``) that SLOs and gates share.
"""
