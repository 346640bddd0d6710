"""Database catalogs against the real servers of this machine: PostgreSQL, MariaDB, SQLite.

PostgreSQL tests run in a fresh schema (``pg_url``), MariaDB tests in a fresh database with
its own password-protected user (``mariadb_url``). Without MariaDB they skip on a laptop and
fail in CI (``SYNCER_REQUIRE_MARIADB=1``, set by ``.ci/run``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import (
    Column,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    create_engine,
    text,
)
from sqlalchemy.engine import make_url
from structlog.testing import capture_logs

from syncer.catalog.files import CsvCatalog
from syncer.catalog.sql import SqlCatalog, cell_text, database_url, mask_password, numeric_columns
from syncer.config.settings import BUNDLED_MAPPINGS, load_settings
from syncer.emulator.config import EmulatorConfig
from syncer.emulator.server import EmulatorServer
from syncer.errors import CatalogError, ConfigError
from syncer.pipeline.planner import catalog_source
from syncer.planning.mapping import load_profile
from tests.conftest import (
    HEADER,
    TOKEN,
    catalog_row,
    require_server,
    write_catalog,
    write_config,
)
from tests.contract import check_exchange
from tests.helpers import Shop, assert_emulator_matches_catalog, state_fingerprint

MARIADB_URL = os.environ.get("SYNCER_TEST_MARIADB_URL",
                             "mysql+pymysql://root@127.0.0.1:3306/test")
PASSWORD = "cat-pw-7Hq2-SECRET"  # a test password, checked never to leak
COLUMNS = HEADER.split(";")
ROOT = Path(__file__).resolve().parents[1]


# --- servers --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def mariadb_server() -> str:
    return require_server("MariaDB", MARIADB_URL, "SYNCER_REQUIRE_MARIADB")


@pytest.fixture
def mariadb_url(mariadb_server: str) -> Iterator[str]:
    """A fresh database, reached as a fresh user with a password (dropped afterwards)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(mariadb_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE `{name}`"))
        conn.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY '{PASSWORD}'"))
        conn.execute(text(f"GRANT ALL ON `{name}`.* TO '{name}'@'%'"))
    url = make_url(mariadb_server).set(username=name, password=PASSWORD, database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f"DROP USER '{name}'@'%'"))
        conn.execute(text(f"DROP DATABASE `{name}`"))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres),
                        "mariadb"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind; PostgreSQL's URL carries a (trusted) password too."""
    if request.param == "sqlite":
        path = tmp_path / "catalog.db"
        create_engine(f"sqlite:///{path}").dispose()
        path.touch()
        return f"sqlite:///{path}"
    if request.param == "postgres":
        url = make_url(request.getfixturevalue("pg_url")).set(password=PASSWORD)
        return url.render_as_string(hide_password=False)
    return str(request.getfixturevalue("mariadb_url"))


def execute(url: str, *statements: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))
    engine.dispose()


def load_catalog(url: str, rows: list[str], table: str = "catalog") -> None:
    """The rows of a CSV catalog as a typed table with an ``id`` primary key, in order."""
    metadata = MetaData()
    # SQLite has no decimal type (NUMERIC keeps 100.00 as the integer 100): text, as a
    # SQLite catalog would hold prices.
    money = String(12) if url.startswith("sqlite") else Numeric(10, 2)
    types = {"stock": Integer, "safety_stock": Integer, "max_quantity": Integer,
             "price_fr": money, "price_de": money,
             "warranty_fr": Integer, "warranty_de": Integer,
             "comment_fr": Text, "comment_de": Text}
    catalog = Table(table, metadata, Column("id", Integer, primary_key=True,
                                            autoincrement=False),
                    *(Column(name, types.get(name, String(64))) for name in COLUMNS))
    engine = create_engine(url)
    metadata.create_all(engine)
    records = []
    for number, row in enumerate(rows, start=1):
        record: dict[str, object] = {"id": number}
        for name, cell in zip(COLUMNS, row.split(";"), strict=True):
            kind = types.get(name)
            record[name] = (None if cell == "" else int(cell) if kind is Integer
                            else Decimal(cell) if isinstance(kind, Numeric) else cell)
        records.append(record)
    if records:
        with engine.begin() as conn:
            conn.execute(catalog.insert(), records)
    engine.dispose()


def read(source: SqlCatalog | CsvCatalog) -> tuple[tuple[str, ...], list[tuple[int, list[str]]]]:
    with source.open() as stream:
        return stream.header, list(stream.rows)


ROWS = [
    catalog_row("A-1", price_fr="100.00", price_de="110.50", comment_fr="Très bon état"),
    catalog_row("B-2", stock="0", grade="Gold", price_de="", max_quantity="3"),
    catalog_row("C-3", ean="", product_id="5b1f5e0e-34a4-4a63-9a6a-2b1c0c6a0a11",
                warranty_de="24", stock="9", safety="2"),
]


# --- reading ------------------------------------------------------------------------------

def test_table_view_and_query_read_the_rows_a_csv_export_holds(db_url: str,
                                                                tmp_path: Path) -> None:
    load_catalog(db_url, ROWS)
    execute(db_url, "CREATE VIEW catalog_view AS SELECT * FROM catalog")
    header, csv_rows = read(CsvCatalog(write_catalog(tmp_path / "catalog.csv", ROWS)))
    expected = [(row, [str(row - 1), *cells]) for row, cells in csv_rows]

    table = read(SqlCatalog(db_url, table="catalog"))
    view = read(SqlCatalog(db_url, table="catalog_view"))
    query = read(SqlCatalog(db_url, query="SELECT * FROM catalog ORDER BY id"))

    assert table == query == (("id", *header), expected)
    assert view[0] == ("id", *header)
    assert sorted(view[1]) == expected  # a view has no primary key: its order is the server's


def test_database_values_become_text_as_a_csv_export_writes_them(db_url: str) -> None:
    query = ("SELECT CAST(199.9 AS DECIMAL(10,2)) AS price, CAST(NULL AS CHAR(5)) AS missing, "
             "42 AS stock, CAST(0.1 AS DOUBLE PRECISION) + CAST(0.2 AS DOUBLE PRECISION) AS f, "
             "TRUE AS flag, DATE '2024-03-01' AS day")
    if db_url.startswith("mysql"):
        query = query.replace("DOUBLE PRECISION", "DOUBLE")
    if db_url.startswith("sqlite"):  # no date type: dates are text already
        query = query.replace("DATE '2024-03-01'", "'2024-03-01'")
    with capture_logs() as logs:
        header, rows = read(SqlCatalog(db_url, query=query))
    assert header == ("price", "missing", "stock", "f", "flag", "day")
    # SQLite has no decimal type: its NUMERIC holds a float.
    price = "199.9" if db_url.startswith("sqlite") else "199.90"
    assert rows == [(2, [price, "", "42", "0.3", "1", "2024-03-01"])]
    warning = next(e for e in logs if e["event"] == "catalog has floating-point columns")
    assert "f" in warning["columns"]


def test_each_python_value_is_written_without_exponent_or_repr() -> None:
    assert cell_text(None) == ""
    assert cell_text(Decimal("1E+2")) == "100"
    assert cell_text(Decimal("-0.50")) == "-0.50"
    assert cell_text(1e20) == "100000000000000000000"
    assert cell_text(0.1 + 0.2) == "0.3"
    assert cell_text(12.0) == "12"
    assert cell_text(True) == "1" and cell_text(False) == "0"
    assert cell_text(7) == "7"
    assert cell_text(dt.date(2024, 3, 1)) == "2024-03-01"
    assert cell_text(dt.datetime(2024, 3, 1, 12, 30)) == "2024-03-01T12:30:00"
    assert cell_text(b"caf\xc3\xa9") == "café"
    assert cell_text(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


def test_empty_table_is_an_empty_catalog_with_a_warning(db_url: str) -> None:
    load_catalog(db_url, [])
    with capture_logs() as logs:
        header, rows = read(SqlCatalog(db_url, table="catalog"))
    assert header[:2] == ("id", "sku") and rows == []
    assert any(e["event"] == "catalog is empty" and e["log_level"] == "warning" for e in logs)


# --- streaming ----------------------------------------------------------------------------

BIG = 200_000
_GENERATE = {
    "postgresql": "INSERT INTO big SELECT g, 'SKU-' || g, repeat('x', 300) "
                  "FROM generate_series(1, 200000) g",
    "mysql": "INSERT INTO big SELECT seq, CONCAT('SKU-', seq), REPEAT('x', 300) "
             "FROM seq_1_to_200000",
    "sqlite": "INSERT INTO big WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g "
              "WHERE n < 200000) SELECT n, 'SKU-' || n, printf('%.300c', 'x') FROM g",
}


def make_big_table(url: str) -> None:
    execute(url, "CREATE TABLE big (id INTEGER PRIMARY KEY, sku VARCHAR(20), comment TEXT)",
            _GENERATE[make_url(url).get_backend_name()])


def test_a_200k_row_catalog_is_read_in_bounded_memory(db_url: str) -> None:
    make_big_table(db_url)  # about 60 MB of cells; loaded whole it would take well over that
    script = textwrap.dedent("""
        import resource, sys
        from syncer.catalog.sql import SqlCatalog
        source = SqlCatalog(sys.argv[1], query="SELECT * FROM big ORDER BY id", batch_size=1000)
        with source.open() as stream:  # connected, types loaded: measure from here
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            count = sum(1 for _ in stream.rows)
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        print(count, grown // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script, db_url], capture_output=True,
                          text=True, cwd=ROOT, timeout=120, check=True)
    count, grown_mb = map(int, done.stdout.split())
    assert count == BIG
    assert grown_mb < 40, f"reading {BIG} rows grew the process by {grown_mb} MB"


def test_postgres_catalog_is_fetched_from_a_server_side_cursor(pg_url: str) -> None:
    make_big_table(pg_url)
    name = f"stream-{uuid.uuid4().hex[:8]}"
    source = SqlCatalog(f"{pg_url}&application_name={name}", table="big", batch_size=500)
    observer = create_engine(pg_url)
    with source.open() as stream, observer.connect() as conn:
        assert next(stream.rows) == (2, ["1", "SKU-1", "x" * 300])
        last = conn.execute(text("SELECT query FROM pg_stat_activity "
                                 "WHERE application_name = :name"), {"name": name}).scalar()
    observer.dispose()
    assert str(last).startswith("FETCH FORWARD")  # a named cursor, read a batch at a time


def test_mariadb_catalog_is_read_unbuffered_while_the_server_still_sends(
        mariadb_url: str) -> None:
    make_big_table(mariadb_url)
    marker = uuid.uuid4().hex
    source = SqlCatalog(mariadb_url, query=f"SELECT /* {marker} */ * FROM big ORDER BY id",
                        batch_size=500)
    observer = create_engine(mariadb_url)
    with source.open() as stream, observer.connect() as conn:
        next(stream.rows)
        command = conn.execute(text("SELECT command FROM information_schema.processlist "
                                    "WHERE info LIKE :marker AND id <> connection_id()"),
                               {"marker": f"%{marker}%"}).scalar()
    observer.dispose()
    assert command == "Query"  # a buffered cursor would have read it all: "Sleep"


# --- failures: each a CatalogError, never an empty catalog, never a password ---------------

def catalog_error(source: SqlCatalog) -> str:
    with pytest.raises(CatalogError) as caught:
        read(source)
    message = str(caught.value)
    assert PASSWORD not in message and PASSWORD not in repr(source)
    return message


def test_failing_query_shows_the_databases_message(db_url: str) -> None:
    message = catalog_error(SqlCatalog(db_url, query="SELECT sku FROM no_such_table"))
    assert message.startswith("the catalog query failed on ")
    assert "no_such_table" in message
    assert mask_password(db_url) in message


def test_query_failing_midway_is_an_error_not_a_short_catalog(pg_url: str) -> None:
    source = SqlCatalog(pg_url, query="SELECT 10 / (g - 3000) AS x FROM "
                                      "generate_series(1, 5000) g", batch_size=100)
    with pytest.raises(CatalogError, match=r"failed on .* after 2900 rows: division by zero"), \
            source.open() as stream:
        for _ in stream.rows:
            pass


def test_missing_table_is_named_with_the_tables_there(db_url: str) -> None:
    load_catalog(db_url, ROWS)
    message = catalog_error(SqlCatalog(db_url, table="catalogue"))
    assert "no table or view 'catalogue' on " in message
    assert "tables and views there: catalog" in message


@pytest.mark.parametrize("server", [
    pytest.param("postgresql+psycopg://postgres:{pw}@127.0.0.1:1/test", id="postgres"),
    pytest.param("mysql+pymysql://root:{pw}@127.0.0.1:1/test", id="mariadb"),
])
def test_unreachable_server_is_a_connection_error(server: str) -> None:
    message = catalog_error(SqlCatalog(server.format(pw=PASSWORD), table="catalog"))
    assert message.startswith("cannot connect to the catalog database ")
    assert ":***@127.0.0.1:1/test" in message


def test_wrong_password_is_a_connection_error(mariadb_url: str) -> None:
    wrong = mariadb_url.replace(PASSWORD, "not-the-password")
    message = catalog_error(SqlCatalog(wrong, table="catalog"))
    assert "cannot connect to the catalog database" in message and "Access denied" in message
    assert "not-the-password" not in message


def test_unknown_postgres_role_is_a_connection_error(pg_url: str) -> None:
    url = make_url(pg_url).set(username="nobody_here", password=PASSWORD)
    message = catalog_error(SqlCatalog(url.render_as_string(hide_password=False), table="t"))
    assert "cannot connect" in message and "nobody_here" in message


def test_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nope.db"
    message = catalog_error(SqlCatalog(f"sqlite:///{path}", table="catalog"))
    assert "no such file" in message
    assert not path.exists()


def test_result_without_columns_is_an_error(pg_url: str) -> None:
    execute(pg_url, "CREATE TABLE nothing ()", "INSERT INTO nothing DEFAULT VALUES")
    assert "has no columns" in catalog_error(SqlCatalog(pg_url, table="nothing"))
    assert "has no columns" in catalog_error(SqlCatalog(pg_url, query="SELECT FROM nothing"))


def test_a_query_that_writes_is_refused_and_writes_nothing(db_url: str) -> None:
    load_catalog(db_url, ROWS)
    catalog_error(SqlCatalog(db_url, query="DELETE FROM catalog"))
    assert len(read(SqlCatalog(db_url, table="catalog"))[1]) == len(ROWS)


def typed_columns(tmp_path: Path) -> SqlCatalog:
    settings = load_settings(write_config(tmp_path, state_url="sqlite:///s.db"))
    return SqlCatalog("sqlite://", table="x", numeric_columns=numeric_columns(
        load_profile(BUNDLED_MAPPINGS / "default.toml"), settings.stores))


def test_numeric_fields_from_date_or_boolean_columns_are_refused(db_url: str,
                                                                  tmp_path: Path) -> None:
    checked = typed_columns(tmp_path).numeric_columns
    boolean = "TINYINT(1)" if db_url.startswith("mysql") else "BOOLEAN"
    execute(db_url, f"CREATE TABLE typed (sku VARCHAR(20), stock {boolean}, price_fr DATE, "
                    "price_de NUMERIC(10,2))")
    table = catalog_error(SqlCatalog(db_url, table="typed", numeric_columns=checked))
    assert "column 'price_fr' is DATE but feeds price (fr), which must be a number" in table
    assert "price_de" not in table
    if not db_url.startswith("mysql"):  # MySQL's BOOLEAN is a TINYINT: a number
        assert "column 'stock' is BOOLEAN but feeds stock" in table
    if not db_url.startswith("sqlite"):  # SQLite reports no types for a query's columns
        query = catalog_error(SqlCatalog(
            db_url, query="SELECT sku, CURRENT_DATE AS price_de FROM typed",
            numeric_columns=checked))
        assert "column 'price_de' is DATE but feeds price (de)" in query


def test_money_from_a_float_column_is_read_with_a_warning(pg_url: str, tmp_path: Path) -> None:
    execute(pg_url, "CREATE TABLE typed (sku TEXT, price_fr DOUBLE PRECISION)",
            "INSERT INTO typed VALUES ('A-1', 199.9)")
    source = SqlCatalog(pg_url, table="typed",
                        numeric_columns=typed_columns(tmp_path).numeric_columns)
    with capture_logs() as logs:
        assert read(source)[1] == [(2, ["A-1", "199.9"])]
    warning = next(e for e in logs if e["event"] == "money read from floating-point columns")
    assert warning["columns"] == ["price_fr"]


# --- configuration ------------------------------------------------------------------------

def configure(tmp_path: Path, catalog: str) -> Path:
    config = write_config(tmp_path, state_url="sqlite:///state.db")
    config.write_text(config.read_text().replace('path = "catalog.csv"', catalog))
    return config


@pytest.mark.parametrize(("catalog", "expected"), [
    ('path = "c.csv"\nurl = "sqlite:///c.db"\ntable = "c"', "either path"),
    ('table = "c"', "set url too"),
    ('url = "sqlite:///c.db"', "exactly one of table"),
    ('url = "sqlite:///c.db"\ntable = "c"\nquery = "SELECT 1"', "exactly one of table"),
    (f'url = "not a url {PASSWORD}"\ntable = "c"', "url is not a database URL"),
])
def test_catalog_is_a_file_or_a_database_table_or_query(tmp_path: Path, catalog: str,
                                                        expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as caught:
        load_settings(configure(tmp_path, catalog))
    assert PASSWORD not in str(caught.value)


def test_catalog_url_from_the_environment_stays_secret(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    config = configure(tmp_path, 'table = "products"')
    monkeypatch.setenv("SYNCER_CATALOG__URL", f"postgresql://shop:{PASSWORD}@db/shop")
    settings = load_settings(config)
    assert PASSWORD not in repr(settings) and PASSWORD not in str(settings.model_dump())
    source = catalog_source(settings)
    assert isinstance(source, SqlCatalog) and source.table == "products"
    assert PASSWORD not in repr(source)
    assert source.safe_url == "postgresql+psycopg://shop:***@db/shop"


def test_catalog_option_on_the_command_line_still_means_a_csv_file(tmp_path: Path) -> None:
    settings = load_settings(configure(tmp_path, 'url = "sqlite:///c.db"\nquery = "SELECT 1"'))
    assert isinstance(catalog_source(settings), SqlCatalog)
    override = catalog_source(settings, tmp_path / "other.csv")
    assert isinstance(override, CsvCatalog) and override.path == tmp_path / "other.csv"


def test_database_urls_get_the_shipped_drivers_and_relative_sqlite_paths(tmp_path: Path
                                                                         ) -> None:
    assert database_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert database_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert database_url("mysql://u@h/db").drivername == "mysql+pymysql"
    assert database_url("mariadb://u@h/db").drivername == "mysql+pymysql"
    assert database_url("postgresql+psycopg2://u@h/db").drivername == "postgresql+psycopg2"
    assert database_url("sqlite:///shop.db", tmp_path).database == str(tmp_path / "shop.db")
    assert database_url("sqlite:////abs/shop.db", tmp_path).database == "/abs/shop.db"


# --- end to end: the CLI from a PostgreSQL catalog to the emulator ------------------------

@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(tokens=(TOKEN,), task_delay=0.01, sku_lines_per_hour=0)
    with EmulatorServer(config) as server:
        yield server
        for exchange in server.emulator.exchanges:
            check_exchange(exchange)


class DbShop(Shop):
    """A shop whose catalog is a database: ``use_database`` rewrites its ``[catalog]``."""

    catalog_url = ""

    def use_database(self, what: str) -> None:
        config = self.config.read_text()
        start, end = config.index("[catalog]"), config.index("[api]")
        self.config.write_text(config[:start] + f'[catalog]\nurl = "{self.catalog_url}"\n'
                               + what + "\n\n" + config[end:])


@pytest.fixture
def db_shop(tmp_path: Path, emulator: EmulatorServer, pg_url: str,
            monkeypatch: pytest.MonkeyPatch) -> DbShop:
    """State and catalog (the table ``catalog``) in one PostgreSQL schema. The catalog URL
    holds a password (trust authentication ignores it): it must never show."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = DbShop(tmp_path, emulator, pg_url)
    shop.catalog_url = make_url(pg_url).set(password=PASSWORD).render_as_string(
        hide_password=False)
    shop.use_database('table = "catalog"')
    return shop


E2E_ROWS = [
    catalog_row("A-1", price_fr="100.00", price_de="110.00", comment_fr="Très bon"),
    catalog_row("B-2", stock="0", grade="Gold", price_de=""),
    catalog_row("C-3", ean="", product_id="5b1f5e0e-34a4-4a63-9a6a-2b1c0c6a0a11",
                warranty_de="24", stock="9", safety="2", max_quantity="5"),
    catalog_row("BAD", ean="4006381333932"),
]


def comparable(plan: dict) -> dict:  # type: ignore[type-arg]
    return {k: v for k, v in plan.items() if k not in ("created_at", "catalog")}


def test_plan_and_apply_from_postgres_equal_those_of_the_same_csv(db_shop: DbShop,
                                                                  pg_url: str) -> None:
    load_catalog(pg_url, E2E_ROWS)
    csv = db_shop.catalog(E2E_ROWS, name="same.csv")
    # The CSV's columns in its order: rows, row numbers and row hashes alike.
    db_shop.use_database(f'query = "SELECT {", ".join(COLUMNS)} FROM catalog ORDER BY id"')

    plan = db_shop.run("plan", "--format", "json", code=2)
    from_db = json.loads(plan.stdout)
    from_csv = db_shop.plan_json("--catalog", str(csv))
    assert comparable(from_db) == comparable(from_csv)
    assert from_db["summary"]["create"] == 5 and from_db["summary"]["rejected"] == 2
    assert from_db["catalog"].endswith(" the catalog query") and ":***@" in from_db["catalog"]

    applied = db_shop.run("apply")
    assert "Store fr: 3 created" in applied.stdout and "Store de: 2 created" in applied.stdout
    assert assert_emulator_matches_catalog(db_shop, csv) == 5
    assert db_shop.plan_json()["changes"] == []
    for result in (plan, applied):
        assert PASSWORD not in result.stdout + result.stderr


@pytest.mark.parametrize(("catalog", "expected"), [
    pytest.param('query = "SELECT * FROM catalogue ORDER BY id"',
                 'the catalog query failed on .*relation "catalogue" does not exist',
                 id="query-fails"),
    pytest.param('query = "SELECT id, sku, ean, grade, stock, price_de FROM catalog"',
                 "catalog has no column 'safety_stock' for field safety_quantity",
                 id="column-missing"),
    pytest.param("query = '''SELECT sku, ean, grade, stock, CURRENT_DATE AS price_fr, "
                 "price_de FROM catalog'''",
                 "column 'price_fr' is DATE but feeds price \\(fr\\)", id="wrong-type"),
    pytest.param('table = "catalog"', "cannot connect to the catalog database",
                 id="server-unreachable"),
])
def test_broken_database_catalog_sends_nothing_and_changes_no_state(
        db_shop: DbShop, pg_url: str, catalog: str, expected: str) -> None:
    load_catalog(pg_url, E2E_ROWS)
    db_shop.run("apply")
    before = state_fingerprint(db_shop.state_url)
    sent = len(db_shop.server.emulator.exchanges)
    if "connect" in expected:
        db_shop.catalog_url = make_url(db_shop.catalog_url).set(port=1).render_as_string(
            hide_password=False)
    db_shop.use_database(catalog)

    for command in ("plan", "apply"):
        result = db_shop.run(command, code=1)
        assert result.stderr.startswith("error: ")
        assert PASSWORD not in result.stdout + result.stderr
        assert re.search(expected, result.stderr), result.stderr
    assert len(db_shop.server.emulator.exchanges) == sent
    assert state_fingerprint(db_shop.state_url) == before
    assert db_shop.live("A-1", "fr-fr")["quantity"] == 5  # type: ignore[index]
