"""The daemon's stock watch (issue 17): a stock-out in the catalog, file or database, reaches
the emulator at the next look (`stock_watch_seconds`), not at the stock lane's next turn;
a cut, partial or damaged file zeroes nothing; a higher stock is not rushed; the watch
spends the stock lane's share of the hourly budget and no more. Every turn runs on a clock
the test drives, as `syncer daemon` runs it (``daemon_turn``); nothing sleeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from syncer.config.settings import Settings, load_settings
from syncer.emulator.server import EmulatorServer
from syncer.pipeline.jobs import JobContext, paced
from syncer.pipeline.planner import siblings
from syncer.pipeline.watch import StockWatch, daemon_turn, daemon_wait
from syncer.state.store import StateStore
from tests.conftest import HEADER, TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import FakeClock, checked_emulator

SKUS = [f"W-{i:02d}" for i in range(20)]


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as running:
        yield running


def _settings(tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch,
              state_url: str | None = None, store_extra: str = "", extra: str = "",
              catalog: str | None = None) -> Settings:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=state_url or f"sqlite:///{tmp_path / 's.db'}",
                          environment=server.base_url, stores=(("fr", "fr-fr"),), extra=extra)
    text_ = config.read_text() + "reconcile = false\n" + store_extra
    if catalog is not None:
        text_ = text_.replace('path = "catalog.csv"', catalog)
    config.write_text(text_)
    write_catalog(tmp_path / "catalog.csv", [catalog_row(s) for s in SKUS])
    return load_settings(config)


def turn(settings: Settings, clock: FakeClock, watch: StockWatch | None) -> list[str]:
    """One turn of the daemon at the clock's time: the kinds of run it made."""
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        ctx = JobContext(settings, state, "test-daemon", limiter_for, now=clock.now)
        runs = daemon_turn(ctx, settings.stores, None, watch)
        return [kind for r in runs for kind in r.ran]


def quantities(server: EmulatorServer, skus: list[str] = SKUS) -> dict[str, int]:
    return {sku: server.emulator.listing(TOKEN, sku, "fr-fr")["quantity"]  # type: ignore[index]
            for sku in skus}


def runs_of(settings: Settings) -> list[str]:
    with StateStore.open_readonly(settings.state_database_url()) as state:
        return [r["kind"] for r in reversed(state.runs.latest(limit=100))]


def rows(**stock: str) -> list[str]:
    return [catalog_row(s, stock=stock.get(s.replace("-", "_"), "5")) for s in SKUS]


def test_a_stock_out_reaches_back_market_at_the_next_look_not_the_stock_lanes_turn(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch,
        state_url: str) -> None:
    settings = _settings(tmp_path, server, monkeypatch, state_url)
    clock = FakeClock()
    watch = StockWatch(settings)
    assert turn(settings, clock, watch) == ["offers"]  # the first look finds nothing lower
    assert set(quantities(server).values()) == {5}
    write_catalog(settings.catalog_path(), rows(W_03="0", W_07="2"))
    clock.advance(seconds=19)
    assert turn(settings, clock, watch) == []  # the look is not due yet
    assert quantities(server)["W-03"] == 5
    clock.advance(seconds=1)  # stock_watch_seconds (20) after the last look
    assert turn(settings, clock, watch) == ["watch"]
    live = quantities(server)
    assert live["W-03"] == 0 and live["W-07"] == 2  # a stock-out, and a lower stock
    assert {q for s, q in live.items() if s not in ("W-03", "W-07")} == {5}
    assert runs_of(settings) == ["offers", "watch"]  # in the run log, as its own kind
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == []  # the same file: nothing planned again


def test_without_the_watch_a_stock_out_waits_for_the_stock_lane(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The baseline the watch beats, and how to turn it off: stock_watch_seconds = 0."""
    settings = _settings(tmp_path, server, monkeypatch, store_extra="stock_watch_seconds = 0\n")
    clock = FakeClock()
    assert turn(settings, clock, None) == ["offers"]
    write_catalog(settings.catalog_path(), rows(W_03="0"))
    clock.advance(seconds=20)
    assert turn(settings, clock, None) == []
    assert quantities(server)["W-03"] == 5
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        ctx = JobContext(settings, state, "r", limiter_for, now=clock.now)
        watch = StockWatch(settings)
        assert watch.interval(settings.stores) is None  # nothing watched
        assert daemon_wait(ctx, settings.stores, watch, 60.0) == 60.0
    clock.advance(minutes=15)
    assert turn(settings, clock, None) == ["stock"]
    assert quantities(server)["W-03"] == 0


def test_a_cut_partial_or_damaged_file_written_mid_watch_zeroes_nothing(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, server, monkeypatch)
    clock = FakeClock()
    watch = StockWatch(settings)
    turn(settings, clock, watch)
    path = settings.catalog_path()
    whole = rows(W_00="0")
    # An export interrupted mid-row: refused whole, even its genuine-looking stock-out.
    path.write_text(HEADER + "\n" + "".join(r + "\n" for r in whole[:10]) + "W-10;;40063",
                    encoding="utf-8")
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == []
    assert set(quantities(server).values()) == {5}
    # Cut on a line break: it looks whole, lists 18 of 20 SKUs (under the 20% mass-zero
    # guard). Its stock-out goes; the two missing SKUs are not zeroed as gone.
    write_catalog(path, whole[:18])
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == ["watch"]
    live = quantities(server)
    assert live["W-00"] == 0
    assert live["W-18"] == 5 and live["W-19"] == 5
    # A damaged stock cell and a shifted row: rejected, never zeroed.
    damaged = rows()
    damaged[4] = catalog_row("W-04", stock="x")
    damaged[5] = "W-05;;4006381333931;EXCELLENT;0"
    write_catalog(path, damaged)
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == []
    live = quantities(server)
    assert live["W-04"] == 5 and live["W-05"] == 5
    assert runs_of(settings) == ["offers", "watch"]


def test_a_higher_stock_or_a_price_is_not_rushed_but_goes_with_the_stock_lane(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from decimal import Decimal

    settings = _settings(tmp_path, server, monkeypatch)
    clock = FakeClock()
    watch = StockWatch(settings)
    turn(settings, clock, watch)
    changed = rows(W_01="9")
    changed[2] = catalog_row("W-02", price_fr="150.00")
    write_catalog(settings.catalog_path(), changed)
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == []  # no decrease: not even planned
    assert quantities(server)["W-01"] == 5
    changed[6] = catalog_row("W-06", stock="2")  # a decrease: now it plans, and sends that
    write_catalog(settings.catalog_path(), changed)
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == ["watch"]
    live = quantities(server)
    assert live["W-06"] == 2 and live["W-01"] == 5
    clock.advance(minutes=15)
    assert turn(settings, clock, watch) == ["stock"]
    assert quantities(server)["W-01"] == 9
    assert Decimal(server.emulator.listing(TOKEN, "W-02", "fr-fr")["price"]) \
        == Decimal("199.90")  # type: ignore[index]


def test_the_watch_spends_the_stock_lanes_share_of_the_budget_and_queues_the_rest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()  # Back Market's sliding hour too: the emulator counts on this clock
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0, clock=clock.monotonic) as server:
        _budget_share(tmp_path, server, clock, monkeypatch)


def _budget_share(tmp_path: Path, server: EmulatorServer, clock: FakeClock,
                  monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, server, monkeypatch)
    turn(settings, clock, None)  # created with the default budget (2,000 lines an hour)
    server.emulator.config.sku_lines_per_hour = 10
    limited = tmp_path / "syncer.toml"
    limited.write_text(limited.read_text().replace(
        "[catalog]", "[limits]\nsku_lines_per_hour = 10\n\n[catalog]", 1))
    settings = load_settings(limited)
    clock.advance(hours=1, seconds=1)  # the creations' lines are out of the sliding hour
    watch = StockWatch(settings)
    assert turn(settings, clock, watch) == ["stock"]  # the stock lane's turn: nothing to send
    # Two stock-outs (under the 20% mass-zero guard) and six lower stocks, 8 lines for 5.
    lowered = {f"W_{i:02d}": "1" for i in range(6)} | {"W_18": "0", "W_19": "0"}
    write_catalog(settings.catalog_path(), rows(**lowered))
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == ["watch"]
    assert server.emulator.sku_lines_used(TOKEN) == 5
    live = quantities(server)
    assert live["W-18"] == 0 and live["W-19"] == 0  # stock-outs first
    assert sorted(s for s, q in live.items() if q == 1) == ["W-00", "W-01", "W-02"]
    # stock_budget_share 0.5 of 10 lines an hour: 5 sent, 3 queued for when lines free.
    with StateStore.open_readonly(settings.state_database_url()) as state:
        assert sorted(state.queue.queued("fr")) == ["w-03", "w-04", "w-05"]
        [watch_run] = [r for r in state.runs.latest("fr") if r["kind"] == "watch"]
        assert watch_run["counts"]["queued"] == 3 and watch_run["counts"]["planned"] == 8
    # The account's other half goes to the rest of the work: the queue job sends the three
    # from it at the next turn (issue 16), not the watch.
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == ["queue"]
    assert sum(q < 5 for q in quantities(server).values()) == 8
    assert server.emulator.sku_lines_used(TOKEN) == 8
    assert server.emulator.stats["budget_refused"] == 0  # never beyond Back Market's hour


# --- database catalogs --------------------------------------------------------------------------

def _table(url: str, updated: bool) -> None:
    engine = create_engine(url)
    columns = ", ".join(f"{c} TEXT" if c != "stock" else "stock INTEGER"
                        for c in HEADER.split(";"))
    with engine.begin() as conn:
        conn.execute(text(f"CREATE TABLE offers (id INTEGER PRIMARY KEY, {columns}"
                          + (", updated_at INTEGER" if updated else "") + ")"))
        for i, sku in enumerate(SKUS):
            cells = catalog_row(sku).split(";")
            names = ", ".join(HEADER.split(";"))
            marks = ", ".join(f":c{j}" for j in range(len(cells)))
            conn.execute(text(f"INSERT INTO offers (id, {names}) VALUES ({i}, {marks})"),
                         {f"c{j}": (int(c) if j == 4 else c) for j, c in enumerate(cells)})
        if updated:
            conn.execute(text("UPDATE offers SET updated_at = 1"))
    engine.dispose()


@pytest.mark.parametrize("engine", ["sqlite", "sqlite-changed-column",
                                    pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_stock_out_in_a_database_catalog_reaches_back_market_at_the_next_look(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch,
        engine: str, request: pytest.FixtureRequest) -> None:
    url = f"sqlite:///{tmp_path / 'erp.db'}" if engine != "postgres" \
        else str(request.getfixturevalue("pg_url"))
    updated = engine == "sqlite-changed-column"
    _table(url, updated)
    catalog = f'url = "{url}"\ntable = "offers"\n' \
        + ('changed_column = "updated_at"\n' if updated else "")
    settings = _settings(tmp_path, server, monkeypatch, catalog=catalog)
    clock = FakeClock()
    watch = StockWatch(settings)
    assert turn(settings, clock, watch) == ["offers"]
    db = create_engine(url)
    with db.begin() as conn:
        conn.execute(text("UPDATE offers SET stock = 0" + (", updated_at = 2" if updated else "")
                          + " WHERE sku = 'W-03'"))
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == ["watch"]
    assert quantities(server)["W-03"] == 0
    with db.begin() as conn:  # a higher stock elsewhere: looked at, planned, not rushed
        conn.execute(text("UPDATE offers SET stock = 9" + (", updated_at = 3" if updated else "")
                          + " WHERE sku = 'W-04'"))
    db.dispose()
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == []
    assert quantities(server)["W-04"] == 5


def test_a_store_another_run_holds_is_watched_again_at_the_next_look(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, server, monkeypatch)
    clock = FakeClock()
    watch = StockWatch(settings)
    turn(settings, clock, watch)
    write_catalog(settings.catalog_path(), rows(W_03="0"))
    clock.advance(seconds=20)
    with StateStore.open(settings.state_database_url()) as other, \
            other.locks.lock("fr", 900, "another-run"):
        assert turn(settings, clock, watch) == []  # the lock is kept: nothing sent
    assert quantities(server)["W-03"] == 5
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == ["watch"]  # the same change, once released
    assert quantities(server)["W-03"] == 0


def test_a_file_written_while_the_watch_reads_it_is_read_again(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    import syncer.pipeline.watch as watch_module

    settings = _settings(tmp_path, server, monkeypatch)
    clock = FakeClock()
    watch = StockWatch(settings)
    turn(settings, clock, watch)
    write_catalog(settings.catalog_path(), rows(W_03="0"))
    read = watch_module.StockCells.read

    def read_then_rewrite(*args: object) -> watch_module.StockCells:
        cells = read(*args)  # type: ignore[arg-type]
        write_catalog(settings.catalog_path(), rows(W_03="0", W_04="0"))  # the export goes on
        return cells

    monkeypatch.setattr(watch_module.StockCells, "read", read_then_rewrite)
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == []  # what it read is not trusted
    monkeypatch.setattr(watch_module.StockCells, "read", read)
    clock.advance(seconds=20)
    assert turn(settings, clock, watch) == ["watch"]
    live = quantities(server)
    assert live["W-03"] == 0 and live["W-04"] == 0


def test_a_real_daemon_sends_a_stock_out_at_its_next_look(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command wires the watch in: a `syncer daemon` process, stock lane 15 minutes away,
    sends a stock-out written while it runs (stock_watch_seconds = 1)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    settings = _settings(tmp_path, server, monkeypatch, store_extra="stock_watch_seconds = 1\n")
    env = {**os.environ, "SYNCER_TEST_TOKEN": TOKEN}
    daemon = subprocess.Popen([sys.executable, "-m", "syncer", "--config",
                               str(tmp_path / "syncer.toml"), "--log-format", "json", "daemon"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while "offers" not in runs_of(settings) or server.emulator.listing(
                TOKEN, "W-19", "fr-fr") is None:
            assert time.monotonic() < deadline and daemon.poll() is None, "no offer run"
            time.sleep(0.1)
        write_catalog(settings.catalog_path(), rows(W_03="0"))
        while quantities(server)["W-03"] != 0:
            assert time.monotonic() < deadline and daemon.poll() is None, "never sent"
            time.sleep(0.1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    assert daemon.returncode == 0, err
    assert "[stock watch] " in out
    assert runs_of(settings) == ["offers", "watch"]


def test_a_catalog_of_zeros_is_stopped_by_the_mass_zero_guard_and_alerted(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """An export whose stock column came out all 0 is the watch's worst case: every cell
    went down. The mass-zero guard stops it before anything is sent, and the store's turn is
    told to the alerts with why."""
    from syncer.alerts.events import StoreTurn
    from syncer.errors import SafetyStop

    settings = _settings(tmp_path, server, monkeypatch)
    clock = FakeClock()
    watch = StockWatch(settings)
    turn(settings, clock, watch)
    write_catalog(settings.catalog_path(), rows(**{s.replace("-", "_"): "0" for s in SKUS}))
    clock.advance(seconds=20)
    told: list[StoreTurn] = []
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        ctx = JobContext(settings, state, "test-daemon", limiter_for, now=clock.now,
                         finished=told.append)
        [outcome] = daemon_turn(ctx, settings.stores, None, watch)
    assert outcome.ran == [] and outcome.error is not None
    assert "would zero 20 of 20 live offers" in outcome.error
    [store_turn] = told
    assert isinstance(store_turn.error, SafetyStop)
    assert set(quantities(server).values()) == {5}
    assert runs_of(settings) == ["offers"]


def test_the_watched_stores_are_planned_in_one_read_and_a_busy_one_waits_for_the_next_look(
        tmp_path: Path, server: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 's.db'}",
                          environment=server.base_url)  # fr and de, one account
    config.write_text(config.read_text().replace(
        'token_env = "SYNCER_TEST_TOKEN"', 'token_env = "SYNCER_TEST_TOKEN"\nreconcile = false'))
    write_catalog(tmp_path / "catalog.csv", [catalog_row(s) for s in SKUS])
    settings = load_settings(config)
    clock = FakeClock()
    watch = StockWatch(settings)
    assert turn(settings, clock, watch) == ["offers", "offers"]
    assert watch.costs["plans"] == 1  # the first look: both stores, one plan
    write_catalog(settings.catalog_path(), rows(W_03="0"))
    clock.advance(seconds=20)
    with StateStore.open(settings.state_database_url()) as other, \
            other.locks.lock("de", 900, "another-run"):
        assert turn(settings, clock, watch) == ["watch"]  # fr's; de is busy
    assert watch.costs["plans"] == 2
    assert server.emulator.listing(TOKEN, "W-03", "fr-fr")["quantity"] == 0  # type: ignore[index]
    clock.advance(seconds=20)
    turn(settings, clock, watch)  # the file did not change, but de is planned again
    assert watch.costs["plans"] == 3
    assert server.emulator.listing(TOKEN, "W-03", "de-de")["quantity"] == 0  # type: ignore[index]
    clock.advance(seconds=20)
    turn(settings, clock, watch)
    assert watch.costs["plans"] == 3  # nothing pending any more
