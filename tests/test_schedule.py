"""Cadence: `run` does what is due and nothing else, on a clock the tests drive (no sleeping);
the stock lane sends stock only; a killed run does not block the next; SIGTERM stops the
daemon cleanly after the request in flight."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from syncer.config.settings import Settings, load_settings
from syncer.emulator.config import EmulatorConfig, Faults
from syncer.emulator.server import EmulatorServer
from syncer.pipeline.jobs import JobContext, paced
from syncer.pipeline.planner import siblings
from syncer.pipeline.schedule import job_states, next_due_lines, run_due
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import FakeClock, Shop, checked_emulator


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: EmulatorServer, state_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    write_config(tmp_path, state_url=state_url, environment=server.base_url,
                 stores=(("fr", "fr-fr"),))
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"R-{i}") for i in range(6)])
    return load_settings(tmp_path / "syncer.toml")


def run(settings: Settings, clock: FakeClock) -> list[tuple[str, list[str]]]:
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        ctx = JobContext(settings, state, "test-run", limiter_for, now=clock.now)
        return [(r.store, r.ran) for r in run_due(ctx, settings.stores)]


def runs_of(settings: Settings) -> list[str]:
    with StateStore.open_readonly(settings.state_database_url()) as state:
        return [r["kind"] for r in reversed(state.runs.latest(limit=100))]


def test_run_does_only_what_is_due_and_a_disabled_kind_never_runs(settings: Settings) -> None:
    clock = FakeClock()
    assert run(settings, clock) == [("fr", ["reconcile", "offers"])]
    assert run(settings, clock) == []  # twice in a row: nothing the second time
    clock.advance(minutes=14)
    assert run(settings, clock) == []
    clock.advance(minutes=2)
    assert run(settings, clock) == [("fr", ["stock"])]
    clock.advance(minutes=110)  # 2 h 06 after the offer run
    assert run(settings, clock) == [("fr", ["offers"])]
    assert run(settings, clock) == []
    clock.advance(hours=22)
    assert run(settings, clock) == [("fr", ["reconcile", "offers"])]
    assert "products" not in runs_of(settings)  # publish_products is off by default


def test_run_skips_a_store_another_run_holds_and_sends_nothing(settings: Settings,
                                                                server: EmulatorServer) -> None:
    clock = FakeClock()
    with StateStore.open(settings.state_database_url()) as other, \
            other.locks.lock("fr", 900, "another-run"), \
            StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        ctx = JobContext(settings, state, "test-run", limiter_for, now=clock.now)
        [outcome] = run_due(ctx, settings.stores)
    assert outcome.ran == [] and outcome.skipped is not None
    assert "locked by another run" in outcome.skipped
    assert server.emulator.exchanges == []  # not one request while the other run holds it
    assert runs_of(settings) == []
    assert run(settings, clock) == [("fr", ["reconcile", "offers"])]  # released: it runs


def test_nothing_due_says_when_each_job_is_next_due(settings: Settings) -> None:
    clock = FakeClock()
    run(settings, clock)
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        ctx = JobContext(settings, state, "r", limiter_for, now=clock.now)
        (line,) = next_due_lines(ctx, settings.stores, clock.now())
        states = {j.kind: j for j in job_states(ctx, settings.stores[0], clock.now())}
    assert line.startswith("fr: reconcile 2026-11-24T06:00")
    assert "offers 2026-11-23T08:00+00:00 (in 2h00)" in line
    assert "stock 2026-11-23T06:15+00:00 (in 15 min)" in line
    assert "products disabled" in line
    assert not states["products"].enabled


def test_intervals_and_switches_are_per_store_and_per_kind(tmp_path: Path, server: EmulatorServer,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 's.db'}",
                          environment=server.base_url, stores=(("fr", "fr-fr"),))
    config.write_text(config.read_text() + "reconcile = false\noffers_every_minutes = 30\n"
                      "stock_lane = false\n")
    write_catalog(tmp_path / "catalog.csv", [catalog_row("A")])
    settings = load_settings(config)
    clock = FakeClock()
    assert run(settings, clock) == [("fr", ["offers"])]
    clock.advance(minutes=29)
    assert run(settings, clock) == []
    clock.advance(minutes=2)
    assert run(settings, clock) == [("fr", ["offers"])]
    assert set(runs_of(settings)) == {"offers"}


def test_stock_lane_sends_quantities_and_zeros_only(settings: Settings,
                                                    server: EmulatorServer) -> None:
    clock = FakeClock()
    run(settings, clock)
    rows = [catalog_row(f"R-{i}") for i in range(1, 6)]  # R-0 is gone: zero
    rows[0] = catalog_row("R-1", stock="1", price_fr="150.00")  # stock and price change
    rows[1] = catalog_row("R-2", price_fr="10.00")  # price only
    write_catalog(settings.catalog_path(), rows)
    clock.advance(minutes=16)
    assert run(settings, clock) == [("fr", ["stock"])]
    live = {sku: server.emulator.listing(TOKEN, sku, "fr-fr") for sku in ("R-0", "R-1", "R-2")}
    assert live["R-0"]["quantity"] == 0  # type: ignore[index]
    assert live["R-1"]["quantity"] == 1  # type: ignore[index]
    assert Decimal(live["R-1"]["price"]) == Decimal("199.90")  # type: ignore[index]
    assert Decimal(live["R-2"]["price"]) == Decimal("199.90")  # type: ignore[index]
    clock.advance(hours=2)
    assert run(settings, clock) == [("fr", ["offers"])]
    assert Decimal(server.emulator.listing(TOKEN, "R-1", "fr-fr")["price"]) == 150  # type: ignore[index]
    assert Decimal(server.emulator.listing(TOKEN, "R-2", "fr-fr")["price"]) == 10  # type: ignore[index]


def test_run_command_with_nothing_due_exits_0_and_prints_next_due(
        settings: Settings, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from syncer.cli.main import cli

    runner = CliRunner()
    first = runner.invoke(cli, ["--config", str(tmp_path / "syncer.toml"), "run"])
    assert first.exit_code == 0, first.output
    assert "Store fr: 6 created" in first.stdout
    second = runner.invoke(cli, ["--config", str(tmp_path / "syncer.toml"), "run"])
    assert second.exit_code == 0
    assert second.stdout.startswith("Nothing due. Next:\n  fr: reconcile ")


# --- processes: a killed run, a stopped daemon ---------------------------------------------------

def _spawn(args: list[str], config: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNCER_TEST_TOKEN": TOKEN}
    return subprocess.Popen([sys.executable, "-m", "syncer", "--config", str(config),
                             "--log-format", "json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_lock(settings: Settings, store: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with StateStore.open(settings.state_database_url()) as state:
            if any(r["outcome"] == "running" for r in state.runs.latest(store)):
                return
        time.sleep(0.05)
    pytest.fail("the run never started")


@pytest.fixture
def slow() -> Iterator[EmulatorServer]:
    faults = Faults(share_slow=1.0, slow_seconds=0.3)
    with EmulatorServer(EmulatorConfig(tokens=(TOKEN,), task_delay=0.0, sku_lines_per_hour=0,
                                       faults=faults)) as running:
        yield running


def _slow_shop(tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch
               ) -> Settings:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 'state.db'}",
                          environment=server.base_url, stores=(("fr", "fr-fr"),),
                          extra="[limits]\nlock_lease_seconds = 3600\n")
    # Offers only, due again at once after the first publication.
    config.write_text(config.read_text() + "reconcile = false\noffers_every_minutes = 0.01\n")
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"K-{i}") for i in range(20)])
    settings = load_settings(config)
    server.emulator.faults.share_slow = 0.0
    done = _spawn(["apply"], config)
    assert done.wait(60) == 0, done.communicate()
    done.communicate()
    server.emulator.faults.share_slow = 1.0
    write_catalog(tmp_path / "catalog.csv",
                  [catalog_row(f"K-{i}", price_fr="150.00") for i in range(20)])
    return settings


def test_killed_run_does_not_block_the_next(tmp_path: Path, slow: EmulatorServer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _slow_shop(tmp_path, slow, monkeypatch)
    victim = _spawn(["apply"], tmp_path / "syncer.toml")
    _wait_for_lock(settings, "fr")
    time.sleep(0.5)  # a few updates in flight
    victim.kill()  # SIGKILL: no cleanup, the lock row stays (lease of an hour)
    victim.communicate()
    slow.emulator.faults.share_slow = 0.0
    after = _spawn(["apply"], tmp_path / "syncer.toml")
    out, err = after.communicate(timeout=60)
    assert after.returncode == 0, err
    assert "Store fr:" in out
    with StateStore.open_readonly(settings.state_database_url()) as state:
        assert all(Decimal(str(e.published[4])) == 150 for e in state.offers.snapshot("fr").values()
                   if e.published)


def test_daemon_stops_cleanly_on_sigterm_after_the_request_in_flight(
        tmp_path: Path, slow: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _slow_shop(tmp_path, slow, monkeypatch)
    daemon = _spawn(["daemon"], tmp_path / "syncer.toml")
    _wait_for_lock(settings, "fr")
    time.sleep(0.8)
    daemon.send_signal(signal.SIGTERM)
    out, err = daemon.communicate(timeout=20)
    assert daemon.returncode == 0, err
    assert "syncer daemon: stopped" in err
    with StateStore.open_readonly(settings.state_database_url()) as state:
        last = state.runs.latest("fr", limit=1)[0]
        confirmed = sum(1 for e in state.offers.snapshot("fr").values()
                        if e.published and Decimal(str(e.published[4])) == 150)
    assert last["outcome"] == "interrupted"
    assert 0 < confirmed < 20  # some sent and recorded, the rest left for the next run
    sent = sum(1 for e in slow.emulator.exchanges if e.method == "POST" and e.status == 200
               and e.request == {"price": "150.00", "currency": "EUR"})
    assert sent == confirmed  # every update Back Market applied was recorded
    slow.emulator.faults.share_slow = 0.0
    rest = _spawn(["apply"], tmp_path / "syncer.toml")
    out, err = rest.communicate(timeout=60)
    assert rest.returncode == 0, err
    assert f"{20 - confirmed} updated" in out


def test_one_stores_safety_stop_does_not_stop_the_others(tmp_path: Path, server: EmulatorServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 's.db'}",
                          environment=server.base_url)
    config.write_text(config.read_text()  # de
                      + "max_zero_share = 0.0\nzero_allowance = 0\nreconcile = false\n")
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"R-{i}") for i in range(6)])
    settings = load_settings(config)
    clock = FakeClock()
    run(settings, clock)
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"R-{i}") for i in range(5)])
    clock.advance(hours=3)
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        ctx = JobContext(settings, state, "r", limiter_for, now=clock.now)
        fr, de = run_due(ctx, settings.stores)
    assert fr.error is None and [kind for kind, _ in fr.publications] == ["offers"]
    assert de.error is not None and "would zero 1 of 6 live offers" in de.error
    assert server.emulator.listing(TOKEN, "R-5", "fr-fr")["quantity"] == 0  # type: ignore[index]


def test_a_store_stopped_by_syncer_run_is_named_once_in_its_error(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 's.db'}")
    shop.config.write_text(shop.config.read_text().replace(
        'locale = "fr-fr"', 'locale = "fr-fr"\nmax_zero_share = 0.0\nzero_allowance = 0'))
    shop.catalog([catalog_row(f"R-{i}") for i in range(6)])
    shop.run("apply")
    shop.catalog([catalog_row(f"R-{i}") for i in range(5)])
    engine = create_engine(shop.state_url)
    with engine.begin() as conn:  # as if no job had run yet: the offers job is due
        conn.execute(text("DELETE FROM run_log"))
    engine.dispose()
    result = shop.run("run", code=1)
    [line] = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: store fr: the plan would zero 1 of 6 live offers"), line
