"""Beyond one machine: stores run as separate processes against one PostgreSQL state.

Two stores publish at once, each in its own ``python -m syncer`` process, while a second run
of one of them is started: it exits at once with a clear message (exit code 1), the other
store goes on, and both stores end published. The emulator answers slowly so that the first
run of a store holds its lock while the second one starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from syncer.emulator.config import EmulatorConfig
from syncer.emulator.server import EmulatorServer
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config
from tests.contract import check_exchange

ROOT = Path(__file__).resolve().parents[1]
# Per Back Market request. A run of a store sends two (the batch, its task), so it holds its
# lock for 5 s: long enough for a second process to start and meet it.
SLOW_SECONDS = 2.5

pytestmark = pytest.mark.postgres


@pytest.fixture
def slow_emulator() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(tokens=(TOKEN,), task_delay=0.01, sku_lines_per_hour=0)
    with EmulatorServer(config) as server:
        server.emulator.faults.share_slow = 1.0
        server.emulator.faults.slow_seconds = SLOW_SECONDS
        yield server
        for exchange in server.emulator.exchanges:
            check_exchange(exchange)


def syncer(config: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNCER_TEST_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "syncer", "--config", str(config),
                             "--log-format", "json", *args],
                            cwd=config.parent, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for_locks(url: str, stores: set[str], timeout: float = 10.0) -> None:
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                held = {row[0] for row in conn.execute(text("SELECT store FROM store_lock"))}
            if stores <= held:
                return
            time.sleep(0.05)
    finally:
        engine.dispose()
    pytest.fail(f"the runs of {sorted(stores)} never held their locks together")


def test_stores_run_in_parallel_and_a_second_run_of_one_exits_clearly(
        tmp_path: Path, slow_emulator: EmulatorServer, pg_url: str) -> None:
    write_catalog(tmp_path / "catalog.csv", [catalog_row("A-1"), catalog_row("B-2")])
    config = write_config(tmp_path, state_url=pg_url, environment=slow_emulator.base_url)
    StateStore.open(pg_url).close()  # the schema, as a deployment's first run leaves it

    fr = syncer(config, "apply", "--store", "fr")
    de = syncer(config, "apply", "--store", "de")
    try:
        wait_for_locks(pg_url, {"fr", "de"})  # both stores' runs are under way at once
        again = syncer(config, "apply", "--store", "fr")
        out, err = again.communicate(timeout=30)
        assert again.returncode == 1, (out, err)
        assert "error: store 'fr' is locked by another run" in err
        assert fr.poll() is None, "the first fr run had already ended: nothing overlapped"

        results = {name: proc.communicate(timeout=60) for name, proc in (("fr", fr), ("de", de))}
    finally:
        for proc in (fr, de):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert fr.returncode == 0, results["fr"]
    assert de.returncode == 0, results["de"]
    assert "Store fr: 2 created" in results["fr"][0]
    assert "Store de: 2 created" in results["de"][0]
    for sku in ("A-1", "B-2"):
        for locale in ("fr-fr", "de-de"):
            assert slow_emulator.emulator.listing(TOKEN, sku, locale) is not None, (sku, locale)
