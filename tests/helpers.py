"""Test helpers shared by the end-to-end tests: a seller's folder driven through the CLI."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from click.testing import CliRunner, Result
from sqlalchemy import Table, create_engine, inspect, select

from syncer.cli.main import cli
from syncer.config.settings import BUNDLED_MAPPINGS, load_settings
from syncer.emulator.config import EmulatorConfig
from syncer.emulator.server import EmulatorServer
from syncer.planning.mapping import compile_mapping, load_profile
from syncer.planning.validation import Validator
from tests.conftest import TOKEN, write_catalog, write_config
from tests.contract import check_exchange


class Shop:
    """A seller's folder: catalog, config, state; runs the CLI in-process."""

    def __init__(self, folder: Path, server: EmulatorServer, state_url: str,
                 **config: str) -> None:
        self.folder = folder
        self.server = server
        self.state_url = state_url
        self.config = write_config(folder, state_url=state_url, environment=server.base_url,
                                   **config)  # type: ignore[arg-type]

    def catalog(self, rows: list[str], name: str = "catalog.csv") -> Path:
        return write_catalog(self.folder / name, rows)

    def run(self, *args: str, code: int | None = 0) -> Result:
        result = CliRunner().invoke(cli, ["--config", str(self.config), "--log-format", "json",
                                          *args])
        if code is not None:
            assert result.exit_code == code, (result.output, result.stderr, result.exception)
        # Guarantee 8, on every command of the suite: the token is never printed.
        assert TOKEN not in result.output + result.stderr, f"the token leaks from {args}"
        return result

    def plan_json(self, *args: str) -> dict:  # type: ignore[type-arg]
        result = self.run("plan", "--format", "json", *args, code=None)
        assert result.exit_code in (0, 2), result.stderr
        return json.loads(result.stdout)  # type: ignore[no-any-return]

    def live(self, sku: str, locale: str) -> dict | None:  # type: ignore[type-arg]
        return self.server.emulator.listing(TOKEN, sku, locale)


def assert_emulator_matches_catalog(shop: Shop, catalog: Path) -> int:
    """Every valid offer of the catalog is live on the emulator with the catalog's values."""
    settings = load_settings(shop.config)
    profile = load_profile(BUNDLED_MAPPINGS / "default.toml")
    header = catalog.read_text(encoding="utf-8").splitlines()[0].split(";")
    validator = Validator(compile_mapping(profile, header, settings.stores))
    locales = {s.name: s.locale for s in settings.stores}
    checked = 0
    for number, line in enumerate(catalog.read_text(encoding="utf-8").splitlines()[1:], 2):
        for offer in validator.validate(number, line.split(";")).offers:
            listing = shop.live(offer.sku, locales[offer.store])
            assert listing is not None, f"{offer.sku} missing in {offer.store}"
            assert listing["quantity"] == offer.quantity, offer.sku
            assert Decimal(listing["price"]) == offer.price, (offer.sku, offer.store)
            assert listing["currency"] == offer.currency
            assert listing["warranty_delay"] == offer.warranty_delay
            assert (listing["comment"] or None) == offer.comment
            assert listing["grade"] == offer.grade
            checked += 1
    return checked


def state_tables() -> list[Table]:
    """Every table of the state schema, as the package declares them (a new one included)."""
    from syncer.state.schema import METADATA

    return list(METADATA.sorted_tables)


def state_fingerprint(url: str) -> str:
    """Every row of every table of the state schema, hashed: any write shows."""
    engine = create_engine(url)
    digest = hashlib.sha256()
    with engine.connect() as conn:
        present = set(inspect(conn).get_table_names())
        for table in state_tables():
            assert table.name in present, f"state table {table.name} missing from {url}"
            digest.update(table.name.encode())
            for row in conn.execute(select(table).order_by(*table.columns)):
                digest.update(repr(tuple(row)).encode())
    engine.dispose()
    if url.startswith("sqlite:///"):
        digest.update(Path(url[len("sqlite:///"):]).read_bytes())
    return digest.hexdigest()


@contextmanager
def checked_emulator(**config: Any) -> Iterator[EmulatorServer]:
    """The emulator on a loopback port; when done, every request the client sent and every
    answer are checked against Back Market's published spec. Strict on fields: a field our
    client sends that the spec lacks is refused, where the real API would ignore it."""
    config.setdefault("strict_fields", True)
    with EmulatorServer(EmulatorConfig(tokens=(TOKEN,), **config)) as server:
        yield server
        for exchange in server.emulator.exchanges:
            check_exchange(exchange)


class FakeClock:
    """One simulated time, driven by the test, for the emulator (monotonic seconds: task
    delays, rate windows, hourly budget, product review) and the engine (UTC datetimes:
    schedules, budget ledger)."""

    def __init__(self) -> None:
        self.seconds = 1000.0
        self.start = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.seconds

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.seconds - 1000.0)

    def advance(self, seconds: float = 0.0, *, minutes: float = 0.0,
                hours: float = 0.0) -> None:
        self.seconds += seconds + 60 * minutes + 3600 * hours


# --- a test's own HTTP server, when the emulator is not the point ---------------------------

class LoopbackServer(ThreadingHTTPServer):
    """A stand-in for Back Market that is not the emulator (recorded answers replayed, hostile
    bytes), on a free loopback port: see ``serving``."""

    daemon_threads = True
    base_url: str


class LoopbackHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_body(self, body: bytes, status: int = 200) -> None:
        """A JSON answer of these bytes (the client may hang up first: not the test's error)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


Served = TypeVar("Served", bound=LoopbackServer)


@contextmanager
def serving(server: Served) -> Iterator[Served]:
    """The server answering on its own thread, its ``base_url`` set, closed after."""
    server.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
