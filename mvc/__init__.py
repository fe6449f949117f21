"""mvc — model version control.

The public Python API lives in :mod:`mvc.api`; names are re-exported here lazily so that
``import mvc`` stays cheap (the CLI's start-up time depends on it). ``dir(mvc)`` and
``help(mvc)`` list them, and type checkers see their real signatures through the
``TYPE_CHECKING`` imports below. Those imports, ``__all__`` and ``mvc._api_names`` list the
same names (``tests/integration/test_api_facade.py`` keeps them equal).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mvc._api_names import API_NAMES as _API_NAMES

if TYPE_CHECKING:
    from mvc.api import (
        CheckoutResult,
        CommitResult,
        LogEntry,
        MvcError,
        Repo,
        Resolved,
        Router,
        VersionDetails,
        checkout,
        commit,
        init_repo,
        iter_file,
        load,
        log,
        open_repo,
        read_file,
        resolve,
        show,
    )

__version__ = "0.1.0"
__all__ = [  # the names of mvc._api_names; spelled out for type checkers and linters
    "CheckoutResult",
    "CommitResult",
    "LogEntry",
    "MvcError",
    "Repo",
    "Resolved",
    "Router",
    "VersionDetails",
    "checkout",
    "commit",
    "init_repo",
    "iter_file",
    "load",
    "log",
    "open_repo",
    "read_file",
    "resolve",
    "show",
]


def __getattr__(name: str) -> object:
    if name in _API_NAMES:
        from mvc import api

        return getattr(api, name)
    raise AttributeError(f"module 'mvc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API_NAMES})
