"""Back Market's limits as the client keeps them: request rate per route, and the hourly
SKU-line budget shared by consecutive runs through the state, with a queue for what does not
fit (zeros and stock first, then what waited longest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from syncer.backmarket.client import BackMarketClient
from syncer.backmarket.limits import ApiLimits, RateLimiter, SkuBudget
from syncer.backmarket.transport import Transport
from syncer.config.settings import Settings, load_settings
from syncer.emulator.server import EmulatorServer
from syncer.pipeline.jobs import JobContext, LaneBudget, paced
from syncer.pipeline.planner import catalog_source, make_plan, siblings
from syncer.pipeline.schedule import run_due
from syncer.publish.outcomes import PublishResult
from syncer.publish.publisher import Publisher
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import FakeClock, checked_emulator


def test_catalog_routes_get_their_own_lower_limit() -> None:
    clock = [0.0]

    def sleep(seconds: float) -> None:
        clock[0] += seconds

    limits = ApiLimits(RateLimiter(100, 10, lambda: clock[0], sleep),
                       RateLimiter(2, 10, lambda: clock[0], sleep),
                       ("POST /ws/listings", "GET /ws/category*"))
    assert limits.is_catalog("POST", "/ws/listings")
    assert limits.is_catalog("GET", "/ws/category/tree/12")
    assert not limits.is_catalog("POST", "/ws/listings/abc")
    assert not limits.is_catalog("GET", "/ws/listings")
    for _ in range(5):
        limits.acquire("POST", "/ws/listings/abc")
    assert clock[0] == 0.0
    for _ in range(3):
        limits.acquire("POST", "/ws/listings")
    assert clock[0] == 10.0


def test_budget_is_shared_by_runs_and_stores_of_one_account(state_url: str) -> None:
    clock = FakeClock()
    with StateStore.open(state_url) as state:
        first = SkuBudget(state.budget, "eu|TOKEN_EU", 10, clock.now)
        assert first.take(7) == 7
    with StateStore.open(state_url) as state:  # a later run, another store, same account
        second = SkuBudget(state.budget, "eu|TOKEN_EU", 10, clock.now)
        assert second.take(7) == 3
        assert second.take(1) == 0
        assert SkuBudget(state.budget, "us|TOKEN_US", 10, clock.now).take(4) == 4
        second.refund(2)
        assert second.take(5) == 2
        clock.advance(3601)
        assert second.take(5) == 5 and second.used() == 5


@pytest.fixture
def server(clock: FakeClock) -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=10,
                          clock=clock.monotonic) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path, server: EmulatorServer, state_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    write_config(tmp_path, state_url=state_url, environment=server.base_url,
                 stores=(("fr", "fr-fr"),))
    return load_settings(tmp_path / "syncer.toml")


def publish(settings: Settings, clock: FakeClock, rows: list[str]) -> PublishResult:
    write_catalog(settings.catalog_path(), rows)
    fr = settings.store("fr")
    with StateStore.open(settings.state_database_url()) as state, \
            httpx.Client() as http:
        plan = make_plan(settings, [fr], catalog_source(settings), state)
        client = BackMarketClient(Transport(fr.base_url(), settings.token(fr), fr.locale,
                                            settings.api.user_agent(), store="fr", http=http))
        budget = SkuBudget(state.budget, fr.budget_key, 10, clock.now)
        return Publisher(fr, client, state, budget=budget, siblings=siblings(settings, fr),
                         poll_seconds=0.0).apply(plan.stores[0])


def test_work_beyond_the_hourly_budget_is_queued_and_goes_first_next_run(
        settings: Settings, server: EmulatorServer, clock: FakeClock) -> None:
    skus = [f"S-{i:02d}" for i in range(12)]
    first = publish(settings, clock, [catalog_row(s) for s in skus])
    assert (first.counts["created"], first.counts["queued"]) == (10, 2)
    assert len(server.emulator.listings(TOKEN)) == 10
    with StateStore.open_readonly(settings.state_database_url()) as state:
        queued = state.queue.queued("fr")
    assert sorted(sku for sku, _, _ in queued.values()) == ["S-10", "S-11"]
    assert all("hourly budget of 10 SKU lines is used up" in r for _, r, _ in queued.values())

    # Same hour: a zero, a stock change and a price change arrive; nothing fits.
    clock.advance(60)
    rows = [catalog_row(s) for s in skus[1:]]
    rows[0] = catalog_row("S-01", stock="1")
    rows[1] = catalog_row("S-02", price_fr="150.00")
    second = publish(settings, clock, rows)
    assert second.counts["queued"] == 5 and second.counts["created"] == 0

    with StateStore.open_readonly(settings.state_database_url()) as state:
        plan = make_plan(settings, [settings.store("fr")], catalog_source(settings), state)
    changes = list(plan.stores[0].changes)
    order = [(c.action, c.sku) for c in changes]
    assert order == [("zero", "S-00"), ("update", "S-01"), ("update", "S-02"),
                     ("create", "S-10"), ("create", "S-11")]
    assert changes[-1].queued_since is not None
    assert "queued since" in changes[-1].reason()

    clock.advance(3600)  # a new hour: the queue goes out, zeros and stock first
    sent_before = len(server.emulator.exchanges)
    third = publish(settings, clock, rows)
    assert third.counts["queued"] == 0
    assert (third.counts["zeroed"], third.counts["updated"], third.counts["created"]) == (1, 2, 2)
    posts = [(e.path, e.request) for e in server.emulator.exchanges[sent_before:]
             if e.method == "POST"]
    assert posts[0][1] == {"quantity": 0}
    assert posts[1][1] == {"quantity": 1}
    assert posts[2][1] == {"price": "150.00", "currency": "EUR"}
    assert posts[3][0] == "/ws/listings"
    assert server.emulator.stats["budget_refused"] == 0  # the client never overspent
    with StateStore.open_readonly(settings.state_database_url()) as state:
        assert state.queue.queued("fr") == {}


def test_the_stock_lane_takes_its_share_and_only_what_the_account_has_left(
        state_url: str) -> None:
    clock = FakeClock()
    with StateStore.open(state_url) as state:
        main = SkuBudget(state.budget, "eu|TOKEN_EU", 10, clock.now)
        lane = LaneBudget(main, 0.5)  # 5 lines an hour, taken from the account's 10
        assert lane.take(1) == 1 and main.take(8) == 8  # the full runs spent 8
        assert lane.take(4) == 1  # the lane has 4 left, the account only 1
        assert (lane.used(), main.used()) == (2, 10)  # the 3 not granted stay the lane's
        main.refund(5)
        assert lane.take(10) == 3 and (lane.used(), main.used()) == (5, 8)
        lane.refund(2)  # refused before processing: given back to both
        assert (lane.used(), main.used()) == (3, 6)
        clock.advance(3601)
        assert LaneBudget(main, 0.5).take(8) == 5 and main.used() == 5


def run_jobs(settings: Settings, clock: FakeClock) -> list[tuple[str, list[str]]]:
    """`syncer run` on the test's clock: the jobs due for each store."""
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        ctx = JobContext(settings, state, "test-run", limiter_for, now=clock.now)
        return [(r.store, r.ran) for r in run_due(ctx, settings.stores)]


def test_the_stock_lane_sends_within_its_share_of_the_hour_and_queues_the_rest(
        tmp_path: Path, server: EmulatorServer, clock: FakeClock, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=state_url, environment=server.base_url,
                          stores=(("fr", "fr-fr"),),
                          extra="[limits]\nsku_lines_per_hour = 10\n")
    config.write_text(config.read_text() + "reconcile = false\nstock_budget_share = 0.5\n")
    skus = [f"L-{i}" for i in range(6)]
    write_catalog(tmp_path / "catalog.csv", [catalog_row(sku) for sku in skus])
    settings = load_settings(config)
    assert run_jobs(settings, clock) == [("fr", ["offers"])]  # 6 lines of the hour's 10
    clock.advance(minutes=61)  # a new hour; the stock lane is due, the offers are not
    write_catalog(tmp_path / "catalog.csv", [catalog_row(sku, stock="1") for sku in skus])
    assert run_jobs(settings, clock) == [("fr", ["stock"])]
    quantities = [server.emulator.listing(TOKEN, sku, "fr-fr")["quantity"]  # type: ignore[index]
                  for sku in skus]
    assert sorted(quantities) == [1, 1, 1, 1, 1, 5]  # half of 10 lines: 5 went, 1 waits
    with StateStore.open_readonly(settings.state_database_url()) as state:
        assert [sku for sku, _, _ in state.queue.queued("fr").values()] == \
            [skus[quantities.index(5)]]
        # The other half of the hour is left to the full offer runs.
        assert SkuBudget(state.budget, settings.store("fr").budget_key, 10, clock.now).used() == 5
    assert server.emulator.stats["budget_refused"] == 0


def test_client_refuses_plain_http_to_a_remote_host() -> None:
    from pydantic import SecretStr

    with pytest.raises(ValueError, match="only sent over https"):
        BackMarketClient(Transport("http://www.backmarket.fr", SecretStr("t"), "fr-fr",
                                   "BM-a-b;c@d.e"))
