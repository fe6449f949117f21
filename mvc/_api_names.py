"""The public names of :mod:`mvc.api`, in one list: ``mvc/__init__.py`` re-exports exactly these
lazily and ``mvc.api.__all__`` is built from them. A module of its own so that neither of the two
has to import the other to read it.
"""

API_NAMES = {
    "Repo",
    "open_repo",
    "init_repo",
    "MvcError",
    "Router",
    "load",
    "commit",
    "resolve",
    "log",
    "show",
    "checkout",
    "read_file",
    "iter_file",
    # the types those functions return, so callers can name them (``mvc.CommitResult``)
    "CommitResult",
    "Resolved",
    "LogEntry",
    "VersionDetails",
    "CheckoutResult",
}
