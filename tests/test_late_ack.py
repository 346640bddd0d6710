"""Issue 10, case 10, over loopback: a late batch settlement never overwrites a newer
confirmation, and the snapshot ends up holding what Back Market shows.

Stores fr and de share one listing (quantity is global). fr's batch is sent and left in
flight (its run ends before the task is done, as if killed); de confirms a newer quantity in
real time; then fr's batch settles. Back Market may have applied the two in either order:
both orders are played, and the emulator's listing must end at the catalog's quantity with
nothing more to send.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from syncer.core.snapshot import Ack
from syncer.emulator.server import EmulatorServer
from syncer.state.offers import _ACK_WRITER
from syncer.state.schema import utcnow
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row
from tests.helpers import Shop, checked_emulator
from tests.test_state import published


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as server:
        yield server


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Shop:
    """L-1 live in de at quantity 5; not offered in fr yet (no French price)."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}",
                api_extra="task_timeout_seconds = 0.3\n",
                extra="[limits]\nmax_zero_share = 1.0\n")
    shop.catalog([catalog_row("L-1", price_fr="")])
    shop.run("apply")
    assert shop.live("L-1", "de-de")["quantity"] == 5  # type: ignore[index]
    return shop


def leave_fr_batch_in_flight(shop: Shop, stock: str = "5") -> None:
    """fr offers L-1 (a batch); its task is not done when the run ends."""
    shop.catalog([catalog_row("L-1", stock=stock)])
    shop.server.emulator.config.task_delay = 3600.0
    result = shop.run("apply", "--store", "fr", "--format", "json")
    assert '"in_flight": 1' in result.stdout


def process_tasks(shop: Shop) -> None:
    shop.server.emulator.config.task_delay = 0.0
    shop.server.emulator.listings(TOKEN)  # the emulator runs due tasks on its next access


def quantity(shop: Shop) -> int:
    return shop.live("L-1", "de-de")["quantity"]  # type: ignore[index]


def test_a_batch_applied_before_a_newer_update_does_not_overwrite_its_confirmation(
        shop: Shop) -> None:
    leave_fr_batch_in_flight(shop)
    process_tasks(shop)              # Back Market applies fr's batch: quantity 5
    shop.catalog([catalog_row("L-1", stock="2")])
    shop.run("apply", "--store", "de")
    assert quantity(shop) == 2       # de's newer update, confirmed
    shop.catalog([catalog_row("L-1", stock="5")])  # restocked
    # fr's run settles its old batch (quantity 5) after de's confirmation of 2: taking it
    # would leave both stores believing 5 is on sale while Back Market shows 2.
    shop.run("apply", "--store", "fr")
    shop.run("apply", "--store", "de")
    assert quantity(shop) == 5
    assert shop.plan_json()["changes"] == []


def test_a_batch_applied_after_a_newer_update_is_read_back_not_ignored(shop: Shop) -> None:
    leave_fr_batch_in_flight(shop)
    shop.catalog([catalog_row("L-1", stock="0")])
    shop.run("apply", "--store", "de")
    assert quantity(shop) == 0       # sold out, confirmed through de
    process_tasks(shop)              # then Back Market applies fr's old batch: 5 on sale
    assert quantity(shop) == 5
    # fr stops offering it (no French price): nothing in fr's plan sends L-1 again. Ignoring
    # the late confirmation would keep "0" in the snapshot with 5 on sale.
    shop.catalog([catalog_row("L-1", stock="0", price_fr="")])
    shop.run("apply", "--store", "fr")
    shop.run("apply", "--store", "de")
    assert quantity(shop) == 0


def test_a_late_confirmation_is_not_copied_over_a_sibling_newer_quantity(
        state_url: str) -> None:
    with StateStore.open(state_url) as state:
        state.offers.siblings = {"fr": ("de",), "de": ("fr",)}
        sent = utcnow() - timedelta(seconds=30)
        state.offers.record_acks("fr", [Ack("A", published(quantity=5), "L1")],
                                 sent_at=sent - timedelta(seconds=30))
        state.offers.record_acks("de", [Ack("A", published(quantity=2), "L1")])
        stale = state.offers.record_acks("fr", [Ack("A", published(quantity=7), "L1")],
                                         sent_at=sent)
        assert [ack.published for ack in stale] == [published(quantity=7)]
        snapshot = {store: state.offers.snapshot(store)["a"].published for store in ("fr", "de")}
        assert snapshot == {"fr": published(quantity=2), "de": published(quantity=2)}
        # A confirmation sent after the newest one is taken, and copied to the sibling.
        assert state.offers.record_acks("fr", [Ack("A", published(quantity=4), "L1")],
                                        sent_at=utcnow()) == []
        assert state.offers.snapshot("de")["a"].published == published(quantity=4)
        # An older confirmation written anyway (another process between the check and the
        # write) changes nothing: the upsert itself only moves forward.
        with state.db.write() as conn:
            _ACK_WRITER.write(conn, "fr", [Ack("A", published(quantity=9), "L1")], sent,
                              utcnow())
        assert state.offers.snapshot("fr")["a"].published == published(quantity=4)
