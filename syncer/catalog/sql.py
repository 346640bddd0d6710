"""Database catalogs: a table, a view or a query of any SQLAlchemy database, streamed.

``SqlCatalog`` opens like ``CsvCatalog`` (see ``syncer.catalog.files``): a ``CatalogStream`` whose
header is the result's column names and whose rows are lists of text, written the way a CSV
export would write them, so that the mapping profile and validation work on a database as on
a file. Rows come through a server-side cursor, ``batch_size`` at a time: PostgreSQL (psycopg)
declares a named cursor and fetches from it, MariaDB/MySQL (PyMySQL) uses an unbuffered
``SSCursor``, SQLite steps its statement as rows are read. The catalog is never loaded whole.

Row numbers: "row N" of a database catalog is the (N-1)th record of the result, in its
``ORDER BY``, as if row 1 were a header line. A configured query should therefore have an
``ORDER BY`` (by SKU, or by the primary key) for row numbers to mean something from one run
to the next; a table or view is read in primary-key order when it has one, else in whatever
order the database returns.

A catalog that cannot be read (server unreachable, bad credentials, unknown table, a failing
query, no columns, a column of the wrong type) raises ``CatalogError``: never an empty
catalog. A table or query that exists and returns no rows is a real empty catalog (logged as
a warning; the zero safety stop protects the seller's live offers). Messages name the source
by its URL with the password masked. The transaction is only ever rolled back, and made
read-only where the database allows it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, NamedTuple

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import URL, Connection, CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from syncer.catalog.files import CatalogStream
from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.errors import CatalogError, ConfigError
from syncer.planning.mapping import Profile, load_profile

log = structlog.get_logger("syncer.catalog.sql")

DEFAULT_BATCH_SIZE: Final = 2000
CONNECT_TIMEOUT_SECONDS: Final = 10
# Mapped fields whose text must parse as a number; True marks money, where a float column
# loses cents (0.1 + 0.2) and NUMERIC/DECIMAL is the right type.
NUMERIC_FIELDS: Final = {
    "offer": {"stock": False, "safety_quantity": False, "max_quantity": False, "deee": True},
    "store": {"price": True, "min_price": True, "max_price": True, "warranty": False},
    "shipping": {"price": True, "delay": False},
    "product": {"price_new": True, "weight": False},
}
_SCHEMES: Final = {
    "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg",
    "mysql": "mysql+pymysql", "mariadb": "mysql+pymysql",
}


class NumericColumn(NamedTuple):
    """A catalog column that feeds a numeric field of the mapping."""

    column: str
    field: str
    money: bool


class ColumnType(NamedTuple):
    """A result column's SQL type as the database reports it: its name and what it can hold:
    "number", "float", "text", "unknown", or "other" (dates, booleans, binary, JSON...)."""

    name: str
    kind: str


# --- URLs -----------------------------------------------------------------------------------

def mask_password(url: str | URL) -> str:
    """The URL as text with its password replaced by ``***`` (safe for logs and errors)."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except (ArgumentError, ValueError):
        return "<unparsable database URL>"
    return parsed.render_as_string(hide_password=True)


def database_url(url: str, base_dir: Path | None = None) -> URL:
    """The SQLAlchemy URL with the drivers this project ships (psycopg, PyMySQL) filled in,
    and a relative SQLite path made relative to ``base_dir`` (the configuration's folder)."""
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError):
        raise ConfigError("catalog.url is not a database URL such as "
                          "postgresql://user:password@host/database") from None
    if parsed.drivername in _SCHEMES:
        parsed = parsed.set(drivername=_SCHEMES[parsed.drivername])
    if parsed.get_backend_name() == "sqlite" and parsed.database \
            and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
        path = Path(parsed.database).expanduser()
        if not path.is_absolute() and base_dir is not None:
            parsed = parsed.set(database=str(base_dir / path))
    return parsed


# --- the source -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SqlCatalog:
    """A table or view (``table``, optionally ``schema.table``) or a ``query`` read from the
    database at ``url``. ``numeric_columns``: columns to refuse when their SQL type cannot
    hold a number (see ``numeric_columns``); checked before the first row is read."""

    url: str | URL = field(repr=False)  # may hold a password: never in a repr
    table: str | None = None
    query: str | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    numeric_columns: tuple[NumericColumn, ...] = ()

    def __post_init__(self) -> None:
        if (self.table is None) == (self.query is None):
            raise ConfigError("a database catalog needs a table or a query (exactly one)")
        if self.batch_size < 1:
            raise ConfigError("catalog.batch_size must be at least 1")

    @property
    def safe_url(self) -> str:
        return mask_password(self.url)

    @property
    def what(self) -> str:
        return f"table {self.table}" if self.table is not None else "the catalog query"

    @contextmanager
    def open(self) -> Iterator[CatalogStream]:
        url = database_url(self.url) if isinstance(self.url, str) else self.url
        with connected(url, self.safe_url) as conn:
            # Declared types are read before the rows: an unbuffered MySQL cursor allows no
            # other statement on its connection until it is exhausted.
            statement, types = self._statement(conn)
            try:
                result = conn.execution_options(
                    stream_results=True, yield_per=self.batch_size).execute(statement)
            except SQLAlchemyError as exc:
                raise CatalogError(f"{self.what} failed on {self.safe_url}: "
                                   f"{error_detail(exc, url)}") from None
            try:
                header = self._header(conn, result, types)
                rows = self._rows(result, header, url)
                try:
                    yield CatalogStream(header=header, rows=rows,
                                        description=f"{self.safe_url} {self.what}")
                finally:
                    rows.close()
            finally:
                result.close()  # an unbuffered MySQL result is drained before the rollback

    def _header(self, conn: Connection, result: CursorResult[Any],
                types: dict[str, ColumnType] | None) -> tuple[str, ...]:
        """The result's column names, once it is known to be a usable catalog."""
        if not result.returns_rows:
            raise CatalogError(f"{self.what} on {self.safe_url} returns no result set "
                               "(a catalog query must be a SELECT)")
        header = tuple(map(str, result.keys()))
        if not header:
            raise CatalogError(f"{self.what} on {self.safe_url} has no columns")
        if types is None:
            types = _result_types(conn.dialect.name, result, header)
        check_column_types(types, self.numeric_columns, self.safe_url)
        return header

    def _statement(self, conn: Connection
                   ) -> tuple[sa.Executable, dict[str, ColumnType] | None]:
        """The statement to stream, and the table's declared column types (None for a
        query: its types come from the driver once it runs)."""
        if self.query is not None:
            return sa.text(self.query), None
        assert self.table is not None
        schema, _, name = self.table.rpartition(".")
        inspector = _inspect(conn, self.safe_url)
        try:
            found = inspector.has_table(name, schema=schema or None)
            if found:
                keys = inspector.get_pk_constraint(name, schema=schema or None)
                columns = inspector.get_columns(name, schema=schema or None)
        except SQLAlchemyError as exc:
            raise CatalogError(f"cannot read table {self.table} on {self.safe_url}: "
                               f"{error_detail(exc, conn.engine.url)}") from None
        if not found:
            raise CatalogError(f"no table or view {self.table!r} on {self.safe_url}"
                               + _known_tables(inspector, schema or None))
        types = {str(c["name"]).casefold(): _sql_type(c["type"]) for c in columns}
        statement = sa.select(sa.text("*")).select_from(sa.table(name, schema=schema or None))
        order = keys.get("constrained_columns") or []
        # Primary-key order keeps row numbers stable from one run to the next.
        return statement.order_by(*(sa.column(c) for c in order)), types

    def _rows(self, result: CursorResult[Any], header: tuple[str, ...], url: URL
              ) -> Generator[tuple[int, list[str]], None, None]:
        number = 1  # the first record is row 2, as under a CSV header line
        floats = _FloatWarning(header)
        text = cell_text
        try:
            # fetchmany, not partitions(): the latter may buffer the whole result first.
            while partition := result.fetchmany(self.batch_size):
                for record in partition:
                    number += 1
                    cells = [v if v.__class__ is str else text(v) for v in record]
                    if floats.pending:
                        floats.check(record)
                    yield number, cells
        except SQLAlchemyError as exc:
            read = f" after {number - 1} rows" if number > 1 else ""
            raise CatalogError(f"{self.what} failed on {self.safe_url}{read}: "
                               f"{error_detail(exc, url)}") from None
        finally:
            result.close()
        if number == 1:
            log.warning("catalog is empty", source=f"{self.safe_url} {self.what}",
                        hint="every live offer would be zeroed; the safety stop applies")


@contextmanager
def connected(url: URL, safe_url: str) -> Iterator[Connection]:
    """A read-only connection (where the database allows it), rolled back and closed after."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:") \
            and not str(url.database).startswith("file:") \
            and not Path(str(url.database)).is_file():
        # sqlite3 would create an empty database here, and the catalog would read as missing.
        raise CatalogError(f"cannot open the catalog database {safe_url}: no such file")
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() in ("postgresql", "mysql", "mariadb"):
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_SECONDS
    try:
        engine: Engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect_args)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        raise CatalogError(f"cannot use the catalog database {safe_url}: {exc}") from None
    try:
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise CatalogError(f"cannot connect to the catalog database {safe_url}: "
                               f"{error_detail(exc, url)}") from None
        with conn:
            try:
                if url.get_backend_name() == "postgresql":
                    conn = conn.execution_options(postgresql_readonly=True)
                elif url.get_backend_name() in ("mysql", "mariadb"):
                    conn.exec_driver_sql("SET SESSION TRANSACTION READ ONLY")
                elif url.get_backend_name() == "sqlite":
                    conn.exec_driver_sql("PRAGMA query_only = ON")
            except SQLAlchemyError as exc:
                raise CatalogError(f"cannot use the catalog database {safe_url}: "
                                   f"{error_detail(exc, url)}") from None
            yield conn
    finally:
        engine.dispose()


def _result_types(dialect: str, result: CursorResult[Any], header: tuple[str, ...]
                  ) -> dict[str, ColumnType]:
    """Column name (case-folded) -> SQL type, from the driver's type codes (PostgreSQL and
    MySQL; SQLite has none: unknown)."""
    codes = {"postgresql": _PG_TYPES, "mysql": _MYSQL_TYPES}.get(dialect, {})
    description = getattr(result.cursor, "description", None) or ()
    return {name.casefold(): codes.get(column[1], ColumnType(str(column[1]), "unknown"))
            for name, column in zip(header, description, strict=False)}


def _inspect(conn: Connection, safe_url: str) -> sa.Inspector:
    try:
        return sa.inspect(conn)
    except SQLAlchemyError as exc:
        raise CatalogError(f"cannot read the catalog database {safe_url}: "
                           f"{error_detail(exc, conn.engine.url)}") from None


def _known_tables(inspector: sa.Inspector, schema: str | None) -> str:
    try:
        names = sorted(inspector.get_table_names(schema) + inspector.get_view_names(schema))
    except SQLAlchemyError:
        return ""
    if not names:
        return " (it has no tables or views there)"
    shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
    return f"; tables and views there: {shown}"


def error_detail(exc: SQLAlchemyError, url: URL) -> str:
    """The database's own message, first line, without the password should it appear."""
    original = getattr(exc, "orig", None) or exc
    args = original.args
    if len(args) == 2 and isinstance(args[0], int) and isinstance(args[1], str):
        message = f"{args[1]} (error {args[0]})"  # PyMySQL: (code, message)
    else:
        message = str(original)
    lines = message.strip().splitlines()
    text = lines[0] if lines else type(original).__name__
    if url.password:
        text = text.replace(str(url.password), "***")
    return text


# --- values as a CSV export writes them ---------------------------------------------------

def _decimal(value: Decimal) -> str:
    return format(value, "f")  # 1E+2 -> "100": never an exponent


def _float(value: float) -> str:
    if value != value or value in (float("inf"), float("-inf")):
        return str(value)  # nan, inf: validation rejects them with the row and field
    # 15 significant digits, as spreadsheets export: 0.1 + 0.2 -> "0.3", 1e20 -> plain digits.
    return format(Decimal(f"{value:.15g}"), "f")


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return bytes(value).decode("utf-8", "replace")


_CONVERTERS: Final[dict[type, Callable[[Any], str]]] = {
    int: str,
    bool: lambda v: "1" if v else "0",
    Decimal: _decimal,
    float: _float,
    dt.date: dt.date.isoformat,
    dt.datetime: dt.datetime.isoformat,
    dt.time: dt.time.isoformat,
    bytes: _bytes,
    bytearray: _bytes,
    memoryview: _bytes,
    uuid.UUID: str,
}


def cell_text(value: object) -> str:
    """One database value as catalog text: None -> "", Decimal without exponent, ISO dates."""
    if value is None:
        return ""
    convert = _CONVERTERS.get(type(value))
    if convert is None:
        convert = next((c for t, c in _CONVERTERS.items() if isinstance(value, t)), str)
    return convert(value)


class _FloatWarning:
    """Warns once per stream, naming the columns, when floating-point values show up."""

    def __init__(self, header: tuple[str, ...]) -> None:
        self.header = header
        self.pending = True
        self.rows = 0

    def check(self, record: Sequence[object]) -> None:
        floats = [name for name, v in zip(self.header, record, strict=False)
                  if isinstance(v, float)]
        if floats:
            self.pending = False
            log.warning("catalog has floating-point columns", columns=floats,
                        hint="money and quantities should be NUMERIC/DECIMAL columns; floats "
                        "are read with 15 significant digits")
        self.rows += 1
        if self.rows >= 1000:  # floats would have shown by now: stop looking
            self.pending = False


# --- column types ---------------------------------------------------------------------------

# psycopg type OIDs (pg_type) and PyMySQL FIELD_TYPE codes of the types that matter here.
_PG_TYPES: Final = {
    20: ColumnType("BIGINT", "number"), 21: ColumnType("SMALLINT", "number"),
    23: ColumnType("INTEGER", "number"), 1700: ColumnType("NUMERIC", "number"),
    700: ColumnType("REAL", "float"), 701: ColumnType("DOUBLE PRECISION", "float"),
    25: ColumnType("TEXT", "text"), 1043: ColumnType("VARCHAR", "text"),
    1042: ColumnType("CHAR", "text"), 19: ColumnType("NAME", "text"),
    16: ColumnType("BOOLEAN", "other"), 17: ColumnType("BYTEA", "other"),
    1082: ColumnType("DATE", "other"), 1083: ColumnType("TIME", "other"),
    1266: ColumnType("TIME WITH TIME ZONE", "other"),
    1114: ColumnType("TIMESTAMP", "other"), 1184: ColumnType("TIMESTAMP WITH TIME ZONE", "other"),
    1186: ColumnType("INTERVAL", "other"), 114: ColumnType("JSON", "other"),
    3802: ColumnType("JSONB", "other"), 2950: ColumnType("UUID", "other"),
    142: ColumnType("XML", "other"),
}
_MYSQL_TYPES: Final = {
    0: ColumnType("DECIMAL", "number"), 246: ColumnType("DECIMAL", "number"),
    1: ColumnType("TINYINT", "number"), 2: ColumnType("SMALLINT", "number"),
    3: ColumnType("INT", "number"), 8: ColumnType("BIGINT", "number"),
    9: ColumnType("MEDIUMINT", "number"),
    4: ColumnType("FLOAT", "float"), 5: ColumnType("DOUBLE", "float"),
    15: ColumnType("VARCHAR", "text"), 253: ColumnType("VARCHAR", "text"),
    254: ColumnType("CHAR", "text"),
    # BLOB codes (249-252) also carry TEXT columns: left unknown.
    7: ColumnType("TIMESTAMP", "other"), 10: ColumnType("DATE", "other"),
    11: ColumnType("TIME", "other"), 12: ColumnType("DATETIME", "other"),
    13: ColumnType("YEAR", "other"), 14: ColumnType("DATE", "other"),
    16: ColumnType("BIT", "other"), 245: ColumnType("JSON", "other"),
    255: ColumnType("GEOMETRY", "other"),
}


def _sql_type(sql_type: Any) -> ColumnType:
    """A declared column type (from the database's catalog) and what it can hold."""
    try:
        name = str(sql_type)
    except Exception:  # some dialect types cannot compile without their dialect
        name = type(sql_type).__name__.upper()
    if isinstance(sql_type, sa.Boolean | sa.Date | sa.DateTime | sa.Time | sa.Interval
                  | sa.LargeBinary | sa.JSON | sa.ARRAY | sa.Uuid):
        return ColumnType(name, "other")
    if isinstance(sql_type, sa.Float):  # before Numeric: Float is a Numeric
        return ColumnType(name, "float")
    if isinstance(sql_type, sa.Numeric | sa.Integer):
        return ColumnType(name, "number")
    if isinstance(sql_type, sa.String):
        return ColumnType(name, "text")
    return ColumnType(name, "unknown")


def check_column_types(types: Mapping[str, ColumnType], columns: Sequence[NumericColumn],
                       source: str) -> None:
    """Refuse a catalog whose numeric fields come from columns that cannot hold a number
    (a DATE or BOOLEAN price): ``CatalogError`` naming each column, field and type. Money
    read from a floating-point column is allowed, with a warning."""
    problems: list[str] = []
    floats: set[str] = set()
    for column, field_name, money in columns:
        found = types.get(column.casefold())
        if found is None:
            continue  # missing columns are the mapping's to report
        if found.kind == "other":
            problems.append(f"column {column!r} is {found.name} but feeds {field_name}, "
                            "which must be a number")
        elif found.kind == "float" and money:
            floats.add(column)
    if problems:
        raise CatalogError(f"catalog {source}: " + "; ".join(problems)
                           + " (use a numeric or text column, or cast it in the query)")
    if floats:
        log.warning("money read from floating-point columns", columns=sorted(floats),
                    hint="use NUMERIC/DECIMAL columns for prices: floats lose cents")


def numeric_columns(profile: Profile, stores: Sequence[StoreSettings]
                    ) -> tuple[NumericColumn, ...]:
    """The catalog columns feeding numeric fields, with store templates resolved as
    ``compile_mapping`` resolves them (constants read no column)."""
    found: dict[tuple[str, str], NumericColumn] = {}

    def add(source_column: str | None, field_name: str, money: bool) -> None:
        if source_column is not None:
            found.setdefault((source_column.casefold(), field_name),
                             NumericColumn(source_column.strip(), field_name, money))

    for name, source in profile.offer.items():
        if name in NUMERIC_FIELDS["offer"]:
            add(source.column, name, NUMERIC_FIELDS["offer"][name])
    for store in stores:
        sources = dict(profile.per_store)
        sources.update(profile.store_overrides.get(store.name, {}))
        for name, source in sources.items():
            if name in NUMERIC_FIELDS["store"]:
                add(source.for_store(store).column, f"{name} ({store.name})",
                    NUMERIC_FIELDS["store"][name])
        for number, option in enumerate(profile.shipping, start=1):
            for name, source in option.items():
                if name in NUMERIC_FIELDS["shipping"]:
                    add(source.for_store(store).column,
                        f"shipping {name} {number} ({store.name})",
                        NUMERIC_FIELDS["shipping"][name])
        for name, source in profile.product.items():
            if name in NUMERIC_FIELDS["product"]:
                add(source.for_store(store).column, f"product {name} ({store.name})",
                    NUMERIC_FIELDS["product"][name])
    return tuple(found.values())


def sql_catalog(settings: Settings) -> SqlCatalog:
    """The configured database catalog (``[catalog] url`` with ``table`` or ``query``)."""
    config = settings.catalog
    if config.url is None:
        raise ConfigError("no database catalog configured: set catalog.url")
    profile = load_profile(settings.mapping_path())
    return SqlCatalog(
        url=database_url(config.url.get_secret_value(), settings.base_dir),
        table=config.table, query=config.query, batch_size=config.batch_size,
        numeric_columns=numeric_columns(profile, settings.stores),
    )
