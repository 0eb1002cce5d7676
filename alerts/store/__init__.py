"""Alert stores: SQLite (embedded) and PostgreSQL (production) behind one interface.

Importing the package registers both backends with :func:`open_store` (``alerts.store.base`` itself
imports neither; PostgreSQL's driver is imported only when a store connects).
"""

from alerts.store import postgres as _postgres  # noqa: F401 - registers postgresql://, postgres://
from alerts.store import sqlite as _sqlite  # noqa: F401 - registers sqlite:// and bare paths
from alerts.store.base import (
    SORT_KEYS,
    AlertQuery,
    AlertStore,
    SqlAlertStore,
    backends,
    open_store,
    register_backend,
    sort_key,
)

__all__ = ["SORT_KEYS", "AlertQuery", "AlertStore", "SqlAlertStore", "backends", "open_store", "register_backend",
           "sort_key"]
