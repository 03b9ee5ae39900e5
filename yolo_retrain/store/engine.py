"""Connecting to the store's database, and what a write does when another connection holds the lock.

On SQLite: WAL, a busy timeout (30 s; ``?timeout=SECONDS`` in the URL) and write transactions that take the write
lock up front (``BEGIN IMMEDIATE``), so no read-then-upgrade deadlocks. A write still locked out after the busy
timeout raises :class:`CorrectionStoreBusy`, with nothing written.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from yolo_retrain.errors import InvalidInput, TransientError

DEFAULT_BUSY_TIMEOUT_S = 30.0


class CorrectionStoreBusy(TransientError):
    """Another connection held the database's write lock past the busy timeout; nothing was written.

    Transient, so Prefect's task retries try again; the API answers 503.
    """


class Database:
    """The store's engines: ``reader`` for plain reads, ``writer`` for write transactions (IMMEDIATE on SQLite)."""

    def __init__(self, url: str) -> None:
        self.reader, self.busy_timeout_s = make_engine(url)
        self.writer = self.reader.execution_options(sqlite_immediate=True)

    @property
    def name(self) -> str:
        """The database as messages name it (a SQLite path, or the URL without its password)."""
        return self.reader.url.database or self.reader.url.render_as_string(hide_password=True)

    @contextmanager
    def busy(self, action: str) -> Iterator[None]:
        """Turn SQLite's "database is locked" (after the busy timeout) into a CorrectionStoreBusy naming the database."""
        try:
            yield
        except OperationalError as exc:
            message = str(exc.orig).lower()
            if "locked" not in message and "busy" not in message:
                raise
            database = self.reader.url.database or str(self.reader.url)
            raise CorrectionStoreBusy(
                f"correction database {database} is locked by another connection (waited {self.busy_timeout_s:g} s): "
                f"could not {action}; nothing was written, try again"
            ) from exc

    def dispose(self) -> None:
        self.reader.dispose()


def make_engine(url: str) -> tuple[Engine, float]:
    """An engine for ``url`` and its busy timeout; on SQLite: WAL, the busy timeout, IMMEDIATE write transactions.

    The busy timeout (how long a write waits for another connection's lock) is ``?timeout=SECONDS`` in a SQLite
    URL, default 30 s.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url), DEFAULT_BUSY_TIMEOUT_S
    try:
        busy_s = float(parsed.query.get("timeout", DEFAULT_BUSY_TIMEOUT_S))
    except (TypeError, ValueError):
        raise InvalidInput(f"{url}: 'timeout' must be a number of seconds") from None
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_immediate") else "BEGIN")

    return engine, busy_s
