"""Issue 10, case 9, over loopback: an outage never quarantines a stock-out.

Only an explicit per-offer refusal by Back Market counts toward quarantine; a change that
takes a live offer's quantity down is never held back by it; a run that could not reach Back
Market exits 1, not 3 ("refused by Back Market").
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.emulator.server import EmulatorServer
from tests.conftest import TOKEN, catalog_row
from tests.helpers import Shop, checked_emulator

LIVE = ("O-1", "O-2", "O-3")
FAST_RETRIES = "backoff_base_seconds = 0.001\nbackoff_cap_seconds = 0.005\nmax_retries = 1\n"


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as server:
        yield server


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Shop:
    """O-1..O-3 live at quantity 5 in both stores; then O-1 sells out in the catalog."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}",
                api_extra=FAST_RETRIES, extra="[limits]\nmax_zero_share = 1.0\n")
    shop.catalog([catalog_row(sku) for sku in LIVE])
    shop.run("apply")
    shop.catalog([catalog_row("O-1", stock="0"), *(catalog_row(sku) for sku in LIVE[1:])])
    return shop


def quantity(shop: Shop, sku: str = "O-1") -> int:
    return shop.live(sku, "fr-fr")["quantity"]  # type: ignore[index]


def planned(shop: Shop) -> set[tuple[str, str]]:
    """(store, SKU) of every planned change; no offer is quarantined."""
    plan = shop.plan_json()
    assert not [n for n in plan["notices"] if n["kind"] == "quarantined"], plan["notices"]
    return {(c["store"], c["sku"]) for c in plan["changes"]}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_5xx_outage_longer_than_the_quarantine_never_holds_back_a_stock_out(
        shop: Shop) -> None:
    shop.server.emulator.faults.share_5xx = 1.0
    for _ in range(5):  # quarantine_after is 3
        result = shop.run("apply", code=1)  # not 3: Back Market did not refuse anything
        assert "Back Market unreachable" in result.stdout + result.stderr
    assert quantity(shop) == 5
    status = json.loads(shop.run("status", "--format", "json").stdout)
    # Not a successful run: the scheduler runs the job again at once, not in 2 hours.
    assert {s["last_runs"][0]["outcome"] for s in status} == {"unreachable"}
    assert "(not a refusal, sent again next run" in shop.run("errors").stdout
    assert "QUARANTINED" not in shop.run("errors").stdout
    assert ("fr", "O-1") in planned(shop)

    shop.server.emulator.faults.share_5xx = 0.0
    shop.run("apply")
    assert quantity(shop) == 0
    assert shop.plan_json()["changes"] == []
    assert shop.run("errors").stdout == "No failed offers.\n"


def test_a_connection_outage_longer_than_the_quarantine_never_holds_back_a_stock_out(
        shop: Shop) -> None:
    config = shop.config.read_text()
    shop.config.write_text(config.replace(shop.server.base_url,
                                          f"http://127.0.0.1:{free_port()}"))
    for _ in range(4):
        shop.run("apply", code=1)
    shop.config.write_text(config)
    assert ("fr", "O-1") in planned(shop)
    shop.run("apply")
    assert quantity(shop) == 0


def test_a_refused_stock_out_is_sent_every_run_never_quarantined(shop: Shop) -> None:
    shop.server.emulator.faults.reject_skus["O-1"] = "listing is locked for review"
    for _ in range(4):
        shop.run("apply", code=3)  # refused by Back Market: 3
        assert ("fr", "O-1") in planned(shop)
    shop.server.emulator.faults.reject_skus.clear()
    shop.run("apply")
    assert quantity(shop) == 0


def test_a_refused_lower_quantity_is_never_quarantined_a_refused_raise_is(shop: Shop) -> None:
    shop.catalog([catalog_row("O-1", stock="2"), catalog_row("O-2", stock="9"),
                  catalog_row("O-3")])
    shop.server.emulator.faults.reject_skus.update({"O-1": "refused", "O-2": "refused"})
    for _ in range(3):
        shop.run("apply", code=3)
    plan = shop.plan_json()
    assert {(c["store"], c["sku"]) for c in plan["changes"]} == {("fr", "O-1"), ("de", "O-1")}
    assert {(n["store"], n["sku"]) for n in plan["notices"] if n["kind"] == "quarantined"} \
        == {("fr", "O-2"), ("de", "O-2")}
    shop.server.emulator.faults.reject_skus.clear()
    shop.run("apply")
    assert quantity(shop) == 2 and quantity(shop, "O-2") == 5


def test_an_outage_between_refusals_starts_their_count_again(shop: Shop) -> None:
    shop.catalog([catalog_row("O-1", price_fr="150.00"), *(catalog_row(s) for s in LIVE[1:])])
    shop.server.emulator.faults.reject_skus["O-1"] = "price refused"
    shop.run("apply", code=3)
    shop.run("apply", code=3)
    shop.server.emulator.faults.share_5xx = 1.0
    shop.run("apply", code=1)
    shop.server.emulator.faults.share_5xx = 0.0
    shop.run("apply", code=3)
    # refused, refused, unreachable, refused: one refusal in a row, not three
    assert ("fr", "O-1") in planned(shop)
    assert "(refused 1 run in a row" in shop.run("errors").stdout
