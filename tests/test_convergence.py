"""Publishing converges on a hostile network: the emulator injects 10% 429s, 10% 5xx, 5% 5xx
answered after the change was applied, and 5% dropped connections (half of them after the
change was applied). A 5,000-offer catalog
(2,500 SKUs in two countries, in batches of 100 rows so that batch POSTs meet the faults
too) is published run after run until nothing is left to send; then 3% of it changes and
converges again.

Checked: every valid offer ends live with the catalog's values; each offer's batch row reached
Back Market once (no blind re-send of a batch that may have landed); the client never exceeds
its configured rate (the emulator's own limiter never fires); the run summaries count the
retries; every request and answer follows Back Market's published spec.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.emulator.config import EmulatorConfig, Faults
from syncer.emulator.http import EXCHANGE_LOG_SIZE
from syncer.emulator.server import EmulatorServer
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row
from tests.contract import check_exchange
from tests.helpers import Shop, assert_emulator_matches_catalog

SKUS = 2500
RATE = 1200      # the client's configured requests per 10 s
SERVER_RATE = 1300 # the emulator refuses beyond this: any refusal means the client overran
MAX_RUNS = 15


@pytest.fixture
def hostile() -> Iterator[EmulatorServer]:
    faults = Faults(share_429=0.10, share_5xx=0.10, share_5xx_after=0.05, share_drop=0.05,
                    seed=20261123)
    config = EmulatorConfig(tokens=(TOKEN,), task_delay=0.05, sku_lines_per_hour=0,
                            requests_per_window=SERVER_RATE, block_seconds=0.05, faults=faults)
    with EmulatorServer(config) as server:
        yield server


def rows(version: int) -> list[str]:
    out = []
    for n in range(SKUS):
        stock, price = str(n % 17), f"{100 + n % 900}.{n % 100:02d}"
        if version == 2 and n % 33 == 0:
            stock, price = str(n % 5), f"{50 + n % 400}.00"
        out.append(catalog_row(f"CV-{n:05d}", ean="", product_id=_uuid(n), stock=stock,
                               price_fr=price, price_de=f"{200 + n % 700}.00",
                               comment_fr=f"lot {n // 100}"))
    return out


def _uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def converge(shop: Shop) -> list[dict[str, int]]:
    summaries = []
    for _ in range(MAX_RUNS):
        result = shop.run("apply", "--format", "json", code=None)
        assert result.exit_code in (0, 1, 3), result.stderr
        if result.exit_code != 1:
            summaries.extend(r["counts"] for r in json.loads(result.stdout))
        if shop.plan_json()["changes"] == []:
            return summaries
    pytest.fail(f"no convergence after {MAX_RUNS} runs")


def test_5000_offers_converge_under_429s_5xx_and_dropped_connections(
        tmp_path: Path, hostile: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, hostile, f"sqlite:///{tmp_path / 'state.db'}",
                extra=f"[limits]\nrequests_per_window = {RATE}\nrate_block_seconds = 0.05\n"
                      "max_zero_share = 1.0\nsku_lines_per_hour = 0\n",
                api_extra="backoff_base_seconds = 0.005\nbackoff_cap_seconds = 0.05\n"
                          "max_retries = 8\nbatch_rows = 100\n")
    for version in (1, 2):
        catalog = shop.catalog(rows(version))
        summaries = converge(shop)
        assert assert_emulator_matches_catalog(shop, catalog) == 2 * SKUS
        assert sum(s["retries"] for s in summaries) > 0  # the faults were felt and counted

    emulator = hostile.emulator
    assert len(emulator.listings(TOKEN)) == SKUS
    assert emulator.stats["rate_limited"] == 0
    assert emulator.stats["injected_429"] > 0
    assert len(emulator.exchanges) < EXCHANGE_LOG_SIZE, "the log was cut: raise its size"
    posts = [e for e in emulator.exchanges if e.method == "POST" and e.path == "/ws/listings"]
    assert {"5xx-after", "5xx"} <= {e.fault for e in posts} and \
        "after" in {e.dropped for e in posts}, \
        "batch POSTs did not meet every fault: the test proves less than it claims"
    # Version 1 creates every offer through batches, version 2 changes existing ones (real
    # time): each offer's row reached Back Market exactly once, those of the batches whose
    # answer the client lost included (a task result says "updated" to a row sent again).
    received = Counter((row.locale, row.sku.casefold()) for row in emulator.batch_rows)
    assert len(received) == 2 * SKUS and set(received.values()) == {1}
    # The client's own pace: never more than RATE requests in any 10 s.
    times = sorted(e.at for e in emulator.exchanges)
    start = 0
    for end, at in enumerate(times):
        while times[start] <= at - 10.0:
            start += 1
        assert end - start + 1 <= RATE
    for exchange in emulator.exchanges:
        check_exchange(exchange)
    with StateStore.open_readonly(f"sqlite:///{tmp_path / 'state.db'}") as state:
        assert state.status.failures() == []
        assert Counter(r["outcome"] for r in state.runs.latest(limit=100))["running"] == 0
