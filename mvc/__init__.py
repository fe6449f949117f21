"""mvc — model version control.

The public Python API lives in :mod:`mvc.api`; names are re-exported here lazily so that
``import mvc`` stays cheap (the CLI's start-up time depends on it).
"""

from __future__ import annotations

from typing import Any

from mvc._api_names import API_NAMES as _API_NAMES

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in _API_NAMES:
        from mvc import api

        return getattr(api, name)
    raise AttributeError(f"module 'mvc' has no attribute {name!r}")
