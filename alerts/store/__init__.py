"""Alert stores: SQLite (embedded) and PostgreSQL (production) behind one interface."""

from alerts.store.base import AlertQuery, AlertStore, SqlAlertStore, open_store

__all__ = ["AlertQuery", "AlertStore", "SqlAlertStore", "open_store"]
