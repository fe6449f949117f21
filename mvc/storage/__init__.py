"""Storage: the only code that touches a store's files, locally or through fsspec.

A storage is a tiny byte-store over '/'-separated relative keys (see ``base.Storage``). The object
store, refs and config are built on it, so a local store and a remote are the same classes wired
to different storages.
"""

from mvc.storage.base import Storage, validate_key
from mvc.storage.local import LocalStorage

__all__ = ["LocalStorage", "Storage", "validate_key"]
