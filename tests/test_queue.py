"""The queue behind the hourly budget, per store: lines waiting by priority and the time to
drain them, in `syncer status` and `syncer plan` (issue 16), over the loopback emulator."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli.main import cli
from syncer.config.settings import Settings, load_settings
from syncer.emulator.server import EmulatorServer
from syncer.pipeline.jobs import JobContext, paced
from syncer.pipeline.planner import siblings
from syncer.pipeline.schedule import next_due_lines, run_due
from syncer.planning.queue import drain_time, duration
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import FakeClock, Shop, checked_emulator

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_lines_within_what_the_budget_has_left_go_now() -> None:
    spent = [(NOW - timedelta(minutes=30), 6)]
    assert drain_time(4, 10, spent, NOW) == timedelta(0)
    assert drain_time(0, 10, spent, NOW) is None
    assert drain_time(5000, 0, spent, NOW) == timedelta(0)  # no budget: no wait


def test_lines_beyond_it_wait_for_each_spending_to_free_an_hour_later() -> None:
    spent = [(NOW - timedelta(minutes=50), 4), (NOW - timedelta(minutes=20), 6)]
    assert drain_time(4, 10, spent, NOW) == timedelta(minutes=10)  # the 4 free at 10:10
    assert drain_time(5, 10, spent, NOW) == timedelta(minutes=40)  # then the 6 at 10:40
    assert drain_time(10, 10, spent, NOW) == timedelta(minutes=40)
    # 18,000 lines at 2,000 an hour, the hour's budget used a minute ago: 9 hours.
    assert drain_time(18_000, 2000, [(NOW - timedelta(minutes=1), 2000)], NOW) == \
        timedelta(hours=8, minutes=59)
    # A refund gives lines back now, and takes them again when it expires.
    refunded = [(NOW - timedelta(minutes=50), 10), (NOW - timedelta(minutes=5), -3)]
    assert drain_time(3, 10, refunded, NOW) == timedelta(0)
    assert drain_time(4, 10, refunded, NOW) == timedelta(minutes=10)


def test_durations_read_as_people_say_them() -> None:
    assert duration(timedelta(0)) == "now"
    assert duration(timedelta(seconds=61)) == "2 min"
    assert duration(timedelta(hours=9, minutes=36)) == "9 h 36 min"
    assert duration(timedelta(hours=2)) == "2 h"


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=10) as running:
        yield running


@pytest.fixture
def shop(tmp_path: Path, server: EmulatorServer, state_url: str,
         monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    return Shop(tmp_path, server, state_url, stores=(("fr", "fr-fr"),),
                extra="[limits]\nsku_lines_per_hour = 10\n")


def first_spending(shop: Shop) -> datetime:
    settings = load_settings(shop.config)
    with StateStore.open_readonly(settings.state_database_url()) as state:
        return state.budget.spent(settings.store("fr").budget_key)[0][0]


def iso(at: datetime) -> str:
    return at.isoformat(timespec="minutes").replace("+00:00", "Z")


def test_status_shows_the_queue_by_priority_and_when_the_budget_drains_it(
        shop: Shop, server: EmulatorServer) -> None:
    skus = [f"S-{i:02d}" for i in range(12)]
    shop.catalog([catalog_row(s) for s in skus])
    plan = shop.run("plan", code=2).stdout
    assert "Queue fr: 12 SKU lines to send, 2 of them beyond this hour's budget (2 create); " \
        "budget 10/h, 0 used in the last hour; drained in about 1 h (" in plan
    assert shop.run("apply").exit_code == 0
    assert len(server.emulator.listings(TOKEN)) == 10  # what the emulator holds: 10 of 12

    # The same hour: S-00 gone (a zero), S-01's stock and S-02's price changed.
    rows = [catalog_row(s) for s in skus[1:]]
    rows[0] = catalog_row("S-01", stock="1")
    rows[1] = catalog_row("S-02", price_fr="150.00")
    shop.catalog(rows)
    shop.run("apply")
    spent = first_spending(shop)

    [entry] = json.loads(shop.run("status", "--format", "json").stdout)
    queue = entry["queue"]
    assert queue["waiting"] == 5
    assert queue["by_priority"] == {"zero": 1, "stock": 1, "update": 1, "create": 2}
    assert queue["budget"] == {"lines_per_hour": 10, "used_last_hour": 10, "shared_with": [],
                               "account_waiting": 5}
    # Every line waits for the 10 spent by the first apply, free an hour after it.
    assert queue["drained_at"] == iso(spent + timedelta(hours=1))
    text = shop.run("status").stdout
    assert "  queue: 5 SKU lines waiting (1 zero, 1 stock, 1 update, 2 create); budget 10/h, " \
        "10 used in the last hour; drained in about " in text
    assert f"({iso(spent + timedelta(hours=1))})" in text

    plan_json = shop.plan_json()
    assert plan_json["queue"][0]["by_priority"] == {"zero": 1, "stock": 1, "update": 1,
                                                   "create": 2}
    markdown = shop.run("plan", "--format", "markdown", code=2).stdout
    assert "### Queue (hourly budget)" in markdown
    assert "| fr | 5 | 5 | 1 | 1 | 1 | 2 |" in markdown


def test_the_plan_after_a_budget_limited_apply_dates_its_oldest_queued_line(
        shop: Shop, server: EmulatorServer) -> None:
    shop.catalog([catalog_row(f"S-{i:02d}") for i in range(12)])
    assert shop.plan_json()["queue"][0]["oldest_queued_at"] is None  # nothing queued yet
    assert shop.run("apply").exit_code == 0  # 10 go, 2 are queued behind the budget
    settings = load_settings(shop.config)
    with StateStore.open_readonly(settings.state_database_url()) as state:
        queued = state.queue.counts("fr")
    assert sum(n for n, _ in queued.values()) == 2
    oldest = iso(min(at for _, at in queued.values()))
    [planned] = shop.plan_json()["queue"]
    assert (planned["to_send"], planned["oldest_queued_at"]) == (2, oldest)
    [entry] = json.loads(shop.run("status", "--format", "json").stdout)
    assert entry["queue"]["oldest_queued_at"] == oldest


def test_stores_of_one_account_share_the_estimate(tmp_path: Path, server: EmulatorServer,
                                                 state_url: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, server, state_url, extra="[limits]\nsku_lines_per_hour = 10\n")
    shop.catalog([catalog_row(f"A-{i}") for i in range(8)])  # 8 lines in fr, 8 in de
    shop.run("apply")
    spent = first_spending(shop)
    fr, de = json.loads(shop.run("status", "--format", "json").stdout)
    assert fr["queue"]["waiting"] + de["queue"]["waiting"] == 6
    assert fr["queue"]["budget"]["shared_with"] == ["de"]
    assert fr["queue"]["budget"]["account_waiting"] == 6
    assert fr["queue"]["drained_at"] == de["queue"]["drained_at"] == \
        iso(spent + timedelta(hours=1))


def test_an_empty_queue_says_nothing_waits(shop: Shop) -> None:
    shop.catalog([catalog_row("ONE")])
    shop.run("apply")
    [entry] = json.loads(shop.run("status", "--format", "json").stdout)
    assert entry["queue"]["waiting"] == 0 and entry["queue"]["drained_at"] is None
    assert "  queue: 0 SKU lines waiting; budget 10/h, 1 used in the last hour" in \
        shop.run("status").stdout


# --- `syncer run` drains the queue as soon as the budget frees ----------------------------------

@pytest.fixture
def timed_server(clock: FakeClock) -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=10,
                          clock=clock.monotonic) as running:
        yield running


def run_jobs(settings: Settings, clock: FakeClock) -> list[tuple[str, list[str]]]:
    """`syncer run` on the test's clock: the jobs each store ran."""
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        ctx = JobContext(settings, state, "test-run", limiter_for, now=clock.now)
        return [(r.store, r.ran) for r in run_due(ctx, settings.stores)]


def next_due(settings: Settings, clock: FakeClock) -> str:
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        ctx = JobContext(settings, state, "r", limiter_for, now=clock.now)
        (line,) = next_due_lines(ctx, settings.stores, clock.now())
    return line


def test_run_drains_the_queue_when_the_budget_frees_not_on_the_offers_cadence(
        tmp_path: Path, timed_server: EmulatorServer, clock: FakeClock, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=state_url, environment=timed_server.base_url,
                          stores=(("fr", "fr-fr"),),
                          extra="[limits]\nsku_lines_per_hour = 10\n")
    config.write_text(config.read_text() + "reconcile = false\nstock_lane = false\n")
    skus = [f"D-{i:02d}" for i in range(13)]
    write_catalog(tmp_path / "catalog.csv", [catalog_row(s) for s in skus[:12]])
    settings = load_settings(config)
    emulator = timed_server.emulator

    assert run_jobs(settings, clock) == [("fr", ["offers"])]
    assert len(emulator.listings(TOKEN)) == 10  # 2 queued behind the hour's budget
    assert "queue 2026-11-23T07:00+00:00 (in 1h00)" in next_due(settings, clock)

    clock.advance(minutes=30)
    assert run_jobs(settings, clock) == []  # the budget is still used up: nothing is due
    # A new row arrives meanwhile: it waits for the offer run, the queue does not.
    write_catalog(tmp_path / "catalog.csv", [catalog_row(s) for s in skus])
    clock.advance(minutes=31)  # the hour's lines free: the queue is due, 59 min early
    assert run_jobs(settings, clock) == [("fr", ["queue"])]
    held = {listing["sku"] for listing in emulator.listings(TOKEN)}
    assert held == set(skus[:12])  # the 2 queued went; the new D-12 did not
    with StateStore.open_readonly(settings.state_database_url()) as state:
        assert state.queue.queued("fr") == {}
        assert [r["kind"] for r in state.runs.latest("fr")] == ["queue", "offers"]
    assert "queue empty" in next_due(settings, clock)
    assert run_jobs(settings, clock) == []

    clock.advance(minutes=60)  # 2 h 01 after the first offer run
    assert run_jobs(settings, clock) == [("fr", ["offers"])]
    assert {listing["sku"] for listing in emulator.listings(TOKEN)} == set(skus)
    assert emulator.stats["budget_refused"] == 0  # never sent beyond Back Market's budget


def test_the_offer_run_sends_the_queue_itself_when_both_are_due(
        tmp_path: Path, timed_server: EmulatorServer, clock: FakeClock, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=state_url, environment=timed_server.base_url,
                          stores=(("fr", "fr-fr"),),
                          extra="[limits]\nsku_lines_per_hour = 10\n")
    config.write_text(config.read_text() + "reconcile = false\nstock_lane = false\n"
                      "offers_every_minutes = 60\n")
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"B-{i:02d}") for i in range(12)])
    settings = load_settings(config)
    assert run_jobs(settings, clock) == [("fr", ["offers"])]
    clock.advance(minutes=61)
    assert run_jobs(settings, clock) == [("fr", ["offers"])]  # no second, queue-only run
    assert len(timed_server.emulator.listings(TOKEN)) == 12


def test_the_queue_job_pauses_after_its_run_even_with_budget_left(
        tmp_path: Path, timed_server: EmulatorServer, clock: FakeClock, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Work Back Market refused before processing is queued again with its lines given back:
    the queue job must not send it again in a loop."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=state_url, environment=timed_server.base_url,
                          stores=(("fr", "fr-fr"),),
                          extra="[limits]\nsku_lines_per_hour = 10\n")
    config.write_text(config.read_text() + "reconcile = false\nstock_lane = false\n")
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"E-{i:02d}") for i in range(11)])
    settings = load_settings(config)
    assert run_jobs(settings, clock) == [("fr", ["offers"])]
    clock.advance(minutes=61)
    assert run_jobs(settings, clock) == [("fr", ["queue"])]  # 1 line of 10 spent
    with StateStore.open(settings.state_database_url()) as state:
        state.queue.enqueue("fr", [("E-03", "Back Market refused the batch (429)", 2)])
    clock.advance(minutes=4)
    assert run_jobs(settings, clock) == []  # 9 lines left, but the job ran 4 min ago
    clock.advance(minutes=2)
    assert run_jobs(settings, clock) == [("fr", ["queue"])]
    # E-03 is published as the catalog has it: nothing to send, it leaves the queue.
    with StateStore.open_readonly(settings.state_database_url()) as state:
        assert state.queue.queued("fr") == {}
    clock.advance(minutes=10)
    assert run_jobs(settings, clock) == []


def status(config: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(config), "status", *args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_status_shows_products_waiting_for_back_markets_review(
        tmp_path: Path, clock: FakeClock, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_products import NEW, PRODUCT_HEADER, row

    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0, auto_products=False,
                          review_delay=6 * 3600, clock=clock.monotonic) as server:
        config = write_config(tmp_path, state_url=state_url, environment=server.base_url,
                              stores=(("fr", "fr-fr"),))
        config.write_text(config.read_text() + "publish_products = true\nreconcile = false\n"
                          "stock_lane = false\n")
        write_catalog(tmp_path / "catalog.csv", [row("NEW-1", NEW)], PRODUCT_HEADER)
        settings = load_settings(config)
        assert run_jobs(settings, clock) == [("fr", ["products", "offers"])]
        assert server.emulator.listing(TOKEN, "NEW-1", "fr-fr")["publication_state"] == 1  # type: ignore[index]
        with StateStore.open_readonly(settings.state_database_url()) as state:
            proposed = state.products.proposals("fr")[NEW]["updated_at"]
    [entry] = json.loads(status(config, "--format", "json"))
    expected = iso(proposed.replace(tzinfo=UTC) + timedelta(hours=12))
    assert (entry["queue"]["products_in_review"], entry["queue"]["review_expected_by"]) == \
        (1, expected)
    text = status(config)
    assert "1 product proposal in Back Market's review (typically within 12 h: by about " \
        f"{expected})" in text


@pytest.mark.parametrize("spill_at", [50_000, 4])
def test_a_plans_changes_are_counted_by_priority_in_memory_and_spilled(spill_at: int) -> None:
    from syncer.planning.diff import Change, ChangeLog

    def change(sku: str, action: str, fields: tuple[tuple[str, object, object], ...] | None
               ) -> Change:
        return Change(action, "fr", sku, (None,) * 13, fields)  # type: ignore[arg-type]

    changes = ([change(f"Z{i}", "zero", (("quantity", 1, 0),)) for i in range(7)]
               + [change(f"S{i}", "update", (("quantity", 1, 2),)) for i in range(5)]
               + [change(f"P{i}", "retry", (("price", "1", "2"),)) for i in range(3)]
               + [change(f"C{i}", "create", None) for i in range(11)])
    log = ChangeLog(changes, spill_at=spill_at)
    assert log.priorities == [7, 5, 3, 11]
    assert len(list(log)) == 26 and log.priorities == [7, 5, 3, 11]  # read: still counted
    log.close()


def test_a_stopped_plan_says_its_queue_does_not_go(shop: Shop) -> None:
    """A plan apply would refuse (the mass-zero guard) sends nothing: its queue line must not
    promise a drain time (a new user read "drained in this run" under a STOP)."""
    shop.catalog([catalog_row(f"LIVE-{i}") for i in range(5)])
    shop.run("apply")
    shop.catalog([])  # every live offer gone at once: the guard stops apply
    text = shop.run("plan", code=2).stdout
    assert "STOP    apply would stop here" in text
    queue_line = next(line for line in text.splitlines() if line.startswith("Queue fr: "))
    assert "nothing is sent while the STOP above holds (apply --force sends it)" in queue_line
    assert "drained" not in queue_line
    [queue] = shop.plan_json()["queue"]
    assert queue["stopped"] is True
    markdown = shop.run("plan", "--format", "markdown", code=2).stdout
    assert "| stopped (see STOP) |" in markdown
    shop.catalog([catalog_row(f"LIVE-{i}") for i in range(5)])
    assert shop.plan_json()["queue"][0]["stopped"] is False
