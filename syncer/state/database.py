"""One state database: its engine, read and write transactions, and what they may raise.

Every store of ``syncer.state`` shares one ``Database``: reads on a connection, writes in a
transaction, SQLAlchemy's errors turned into a ``StateError`` that says what to do. A
read-only database (``plan``, ``status``) refuses every write.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import structlog
from sqlalchemy import Engine, Table, create_engine, event, inspect
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from syncer.errors import StateError

log = structlog.get_logger("syncer.state.database")

BULK: Final = 2000  # keys per IN (...) and rows per statement
# Rows written into one table before its planner statistics are refreshed when the state is
# closed (see ``Database.wrote``).
ANALYZE_AFTER: Final = 20_000


class Database:
    """The engine of a state database (None: a read-only state not created yet, where
    nothing was published and every read finds nothing)."""

    def __init__(self, engine: Engine | None, url: str, readonly: bool) -> None:
        self.engine = engine
        self.url = url
        self.readonly = readonly
        self.empty = engine is None  # no state yet: nothing was ever published
        self._tables_seen: dict[str, bool] = {}  # table name -> present (see has_table)
        self._written: dict[str, int] = {}  # table name -> rows written by this process

    def wrote(self, table: Table, rows: int) -> None:
        """Rows written in bulk. PostgreSQL plans from statistics that its autovacuum
        refreshes only a while later: right after a first publication of a million offers
        it still takes the snapshot for a small table, and reads a whole store for each
        batch of SKU keys the next plan looks up (a second per million offers). A table
        written this much is analyzed when the state is closed (a sample: a fraction of a
        second)."""
        self._written[table.name] = self._written.get(table.name, 0) + rows

    def close(self) -> None:
        if self.engine is None:
            return
        stale = [name for name, rows in self._written.items() if rows >= ANALYZE_AFTER]
        self._written.clear()
        if stale and self.engine.dialect.name == "postgresql":
            try:
                with self.engine.begin() as conn:
                    for name in stale:
                        conn.exec_driver_sql(f'ANALYZE "{name}"')
            except SQLAlchemyError as exc:  # statistics only: the writes are committed
                log.warning(
                    "could not refresh the planner statistics", tables=stale,
                    error=str(state_error(self.url, exc)))
        self.engine.dispose()

    @contextmanager
    def read(self) -> Iterator[Any]:
        assert self.engine is not None
        try:
            with self.engine.connect() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise state_error(self.url, exc) from None

    @contextmanager
    def write(self) -> Iterator[Any]:
        if self.readonly or self.engine is None:
            raise StateError("internal error: write attempted on a read-only state")
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise state_error(self.url, exc) from None

    def has_table(self, table: Table) -> bool:
        """False on a database made before the table existed and opened read-only (plan,
        market): nothing was written into it yet."""
        if self.empty:
            return False
        if table.name not in self._tables_seen:
            with self.read() as conn:
                self._tables_seen[table.name] = inspect(conn).has_table(table.name)
        return self._tables_seen[table.name]

    def saw_table(self, table: Table) -> None:
        """The table exists now (this process wrote into it)."""
        self._tables_seen[table.name] = True


def sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return Path(url[len("sqlite:///"):].split("?")[0])


def make_engine(url: str, *, readonly: bool) -> Engine:
    from urllib.parse import parse_qs

    path = sqlite_path(url)
    try:
        if path is not None:
            target = f"sqlite:///file:{path}?mode=ro&uri=true" if readonly else url
            # How long to wait for another process's write lock before failing with
            # "locked": 30 s, or the URL's ?timeout=SECONDS.
            timeout = float(parse_qs(url.partition("?")[2]).get("timeout", ["30"])[0])
            engine = create_engine(target, poolclass=NullPool,
                                   connect_args={"timeout": timeout})
            if not readonly:
                event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        options: dict[str, Any] = {"pool_pre_ping": True}
        if readonly and url.startswith("postgresql"):
            options["execution_options"] = {"postgresql_readonly": True}
        return create_engine(url, **options)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StateError(f"cannot use state database {safe_url(url)}: {exc}") from None


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # 64 MB of page cache instead of 2: a million-row snapshot's index stays in memory
    # while acknowledgements are written (twice the write rate at that size).
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.close()


def upsert(conn: Any, table: Any, rows: list[dict[str, Any]], keys: Sequence[str],
           update: Iterable[str]) -> None:
    dialect = conn.dialect.name
    stmt: Any
    # Each dialect is imported where it is used: the engine has loaded it already, and a
    # command on SQLite does not pay for PostgreSQL's (issue 12, item 16).
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql
        stmt = postgresql.insert(table)
    elif dialect == "sqlite":
        from sqlalchemy.dialects import sqlite
        stmt = sqlite.insert(table)
    else:
        raise StateError(f"state databases on {dialect} are not supported; use SQLite or "
                         "PostgreSQL")
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys), set_={c: stmt.excluded[c] for c in update})
    conn.execute(stmt, rows)


def safe_url(url: str) -> str:
    """The URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url


def state_error(url: str, exc: SQLAlchemyError) -> StateError:
    detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc)
    where = safe_url(url)
    if isinstance(exc, OperationalError) and "locked" in str(detail):
        return StateError(f"the state database {where} is locked by another "
                          f"process: {detail}")
    if "readonly database" in str(detail) or "read-only" in str(detail):
        return StateError(f"the state database {where} is read-only: {detail}; this command "
                          "records what it sends, so it needs to write the database (check "
                          "the permissions of the file and of its folder)")
    if "unable to open database file" in str(detail):
        return StateError(f"cannot open the state database {where}: {detail} (check that its "
                          "folder exists and is readable and writable: SQLite keeps -wal and "
                          "-shm files beside the database)")
    if "not a database" in str(detail) or "malformed" in str(detail):
        return StateError(f"the state database {where} is corrupt: {detail}; restore it from "
                          "a backup, or move it away and run `syncer reconcile` to rebuild "
                          "the snapshot from Back Market")
    return StateError(f"state database {where}: {detail}")
