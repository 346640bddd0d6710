"""Shared fixtures: real state databases (SQLite file, PostgreSQL schema), catalogs, configs.

PostgreSQL tests use the server on 127.0.0.1:5432 (trust auth, database ``test``) or
``$SYNCER_TEST_POSTGRES_URL``, each test in a fresh schema. Without a server they skip on a
laptop and fail in CI (``SYNCER_REQUIRE_POSTGRES=1``, set by ``.ci/run``).
"""

from __future__ import annotations

import os
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog
from sqlalchemy import create_engine, text

from syncer.config.settings import Settings, load_settings

if TYPE_CHECKING:
    from syncer.emulator.server import EmulatorServer
    from tests.helpers import FakeClock

PG_URL = os.environ.get("SYNCER_TEST_POSTGRES_URL",
                        "postgresql+psycopg://postgres@127.0.0.1:5432/test")
TOKEN = "tok-9f8e7d6c5b4a-SECRET"

HEADER = ("sku;product_id;ean;grade;stock;safety_stock;max_quantity;price_fr;price_de;"
          "warranty_fr;warranty_de;comment_fr;comment_de")


@pytest.fixture(autouse=True)
def _no_token_left_in_files(tmp_path: Path) -> Iterator[None]:
    """Guarantee 8, on every test of the suite: no file a test leaves behind (state
    databases, exports, reports, saved plans, logs) holds the token, except the `.env` files
    where sellers put it."""
    yield
    needle = TOKEN.encode()
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != ".env" and path.stat().st_size < 64 * 2**20:
            assert needle not in path.read_bytes(), f"the token is left in {path}"


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    structlog.configure(
        processors=[structlog.processors.JSONRenderer()],
        logger_factory=structlog.ReturnLoggerFactory(),
    )
    yield
    structlog.reset_defaults()


def require_server(name: str, url: str, required_by: str) -> str:
    """The server's URL when it answers. Otherwise the test is skipped on a laptop, and
    fails in CI, which sets ``required_by`` (see .ci/run)."""
    try:
        engine = create_engine(url)
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure means "not available"
        problem = str(exc).splitlines()[0]
        if os.environ.get(required_by) == "1":
            pytest.fail(f"{name} is required in CI but unreachable at {url}: {problem}")
        pytest.skip(f"{name} not available: {problem}")
    return url


@pytest.fixture
def clock() -> FakeClock:
    """One simulated time the test drives, for the emulator and the engine alike."""
    from tests.helpers import FakeClock

    return FakeClock()


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    """The loopback emulator most tests publish to: no hourly budget, tasks done at once, and
    every exchange checked against Back Market's spec when the test ends (a test module that
    needs another emulator defines its own ``emulator``)."""
    from tests.helpers import checked_emulator

    with checked_emulator(task_delay=0.01, sku_lines_per_hour=0) as server:
        yield server


@pytest.fixture(scope="session")
def pg_server() -> str:
    return require_server("PostgreSQL", PG_URL, "SYNCER_REQUIRE_POSTGRES")


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A URL whose connections see only a fresh, empty schema."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(pg_server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in pg_server else "?"
    yield f"{pg_server}{sep}options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'syncer.db'}"
    return str(request.getfixturevalue("pg_url"))


def catalog_row(sku: str, *, ean: str = "4006381333931", product_id: str = "",
                grade: str = "EXCELLENT", stock: str = "5", safety: str = "0",
                max_quantity: str = "", price_fr: str = "199.90", price_de: str = "209.90",
                warranty_fr: str = "12", warranty_de: str = "12", comment_fr: str = "",
                comment_de: str = "") -> str:
    cells = [sku, product_id, ean, grade, stock, safety, max_quantity, price_fr, price_de,
             warranty_fr, warranty_de, comment_fr, comment_de]
    return ";".join(f'"{c}"' if ";" in c else c for c in cells)


def write_catalog(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows), encoding="utf-8")
    return path


def write_config(folder: Path, *, state_url: str, environment: str = "production",
                 catalog: str = "catalog.csv", extra: str = "", api_extra: str = "",
                 stores: tuple[tuple[str, str], ...] = (("fr", "fr-fr"), ("de", "de-de")),
                 ) -> Path:
    store_tables = "\n".join(
        textwrap.dedent(f"""
        [[stores]]
        name = "{name}"
        locale = "{locale}"
        environment = "{environment}"
        token_env = "SYNCER_TEST_TOKEN"
        """) for name, locale in stores)
    config = folder / "syncer.toml"
    config.write_text(textwrap.dedent(f"""
        mapping = "default"
        state_url = "{state_url}"
        {extra}
        [catalog]
        path = "{catalog}"

        [api]
        company = "Tests"
        integration = "suite"
        contact_email = "tests@example.com"
        task_poll_seconds = 0.02
        """) + api_extra + "\n" + store_tables, encoding="utf-8")
    return config


@pytest.fixture
def settings_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Build Settings for a catalog in tmp_path: settings_for(rows, state_url=..., ...)."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)

    def build(rows: list[str], *, state_url: str | None = None, **kwargs: object) -> Settings:
        write_catalog(tmp_path / "catalog.csv", rows)
        url = state_url or f"sqlite:///{tmp_path / 'state.db'}"
        write_config(tmp_path, state_url=url, **kwargs)  # type: ignore[arg-type]
        return load_settings(tmp_path / "syncer.toml")

    return build
