"""The state database on SQLite and PostgreSQL: snapshot, failures, revisions, locks."""

from __future__ import annotations

import multiprocessing
import os
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from syncer.core.offers import FIELDS, Offer
from syncer.core.snapshot import Ack, Failure
from syncer.errors import LockHeld, StateError
from syncer.state.locks import StoreLease, holder_id
from syncer.state.store import StateStore
from syncer.state.version import SCHEMA_VERSION

Q = FIELDS.index("quantity")


def published(sku: str = "A", quantity: int = 3, price: str = "10.00"):  # type: ignore[no-untyped-def]
    return Offer(store="fr", row=2, sku=sku, product_id=None, ean="4006381333931",
                 grade="GOOD", quantity=quantity, price=Decimal(price), currency="EUR",
                 warranty_delay=12, comment="Très bon état").published()


def test_ack_moves_the_snapshot_and_the_revision(state_url: str) -> None:
    with StateStore.open(state_url) as state:
        assert state.offers.snapshot("fr") == {} and state.offers.revision("fr") == 0
        state.offers.record_acks("fr", [Ack("Sku-A", published("Sku-A"), "L1")])
        entry = state.offers.snapshot("fr")["sku-a"]
        assert entry.published == published("Sku-A")
        assert (entry.sku, entry.listing_id, entry.status) == ("Sku-A", "L1", "live")
        assert state.offers.revision("fr") == 1
        assert state.offers.snapshot("de") == {}


def test_failure_keeps_the_last_confirmed_values(state_url: str) -> None:
    with StateStore.open(state_url) as state:
        state.offers.record_acks("fr", [Ack("A", published(price="10.00"), "L1")])
        attempted = published(price="12.00")
        state.offers.record_failures("fr", [Failure("A", "price too high", code="400",
                                                    request_id="req-1", attempted=attempted)])
        state.offers.record_failures("fr", [Failure("A", "price too high", attempted=attempted)])
        entry = state.offers.snapshot("fr")["a"]
        assert entry.published == published(price="10.00")
        assert (entry.status, entry.last_error, entry.attempts) == ("failed", "price too high", 2)
        [row] = state.status.failures("fr")
        assert row["sku"] == "A" and row["attempts"] == 2


def test_failed_create_has_no_confirmed_values_and_ack_clears_it(state_url: str) -> None:
    with StateStore.open(state_url) as state:
        state.offers.record_failures("fr", [Failure("NEW", "unknown product")])
        assert state.offers.snapshot("fr")["new"].published is None
        state.offers.record_acks("fr", [Ack("NEW", published("NEW"), "L2")])
        entry = state.offers.snapshot("fr")["new"]
        assert entry.status == "live" and entry.attempts == 0 and entry.last_error is None
        assert state.status.failures() == []


def test_confirmed_quantity_follows_to_sibling_stores(state_url: str) -> None:
    with StateStore.open(state_url) as state:
        state.offers.siblings = {"fr": ("de",), "de": ("fr",)}
        state.offers.record_acks("de", [Ack("A", published(quantity=3), "L1")])
        state.offers.record_acks("fr", [Ack("A", published(quantity=1), "L1")])
        assert state.offers.snapshot("de")["a"].published[Q] == 1  # type: ignore[index]


def test_bulk_acks_are_written_in_chunks(state_url: str) -> None:
    acks = [Ack(f"S{i}", published(f"S{i}"), f"L{i}") for i in range(4500)]
    with StateStore.open(state_url) as state:
        state.offers.record_acks("fr", acks)
        assert len(state.offers.snapshot("fr")) == 4500
        assert state.status.counts("fr")["live"] == 4500


def test_readonly_open_of_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "syncer.db"
    with StateStore.open_readonly(f"sqlite:///{path}") as state:
        assert state.offers.snapshot("fr") == {} and state.offers.revision("fr") == 0
    assert not path.exists() and not path.parent.exists()


def test_readonly_state_refuses_writes(state_url: str) -> None:
    StateStore.open(state_url).close()
    with StateStore.open_readonly(state_url) as state, pytest.raises(StateError):
        state.offers.record_acks("fr", [Ack("A", published(), None)])


def test_newer_schema_stops_with_a_clear_message(state_url: str) -> None:
    StateStore.open(state_url).close()
    engine = create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_info SET value = '99' WHERE key = 'schema_version'"))
    engine.dispose()
    with pytest.raises(StateError, match="schema version 99, newer than"):
        StateStore.open(state_url)


def test_corrupt_sqlite_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "syncer.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StateError, match="state database"):
        StateStore.open(f"sqlite:///{path}")


def test_unexpired_lease_of_another_host_blocks(state_url: str) -> None:
    with StateStore.open(state_url) as state:
        StoreLease(state.db, "fr", 600, "other-host:4242:live-run").acquire()
        with pytest.raises(LockHeld, match="other-host:4242:live-run"), \
                state.locks.lock("fr", 60, "next-run"):
            pass


def test_lock_excludes_a_second_holder_until_released(state_url: str) -> None:
    with StateStore.open(state_url) as state:
        with state.locks.lock("fr", 60, "run-1"):
            with pytest.raises(LockHeld, match="store 'fr' is locked"), \
                    state.locks.lock("fr", 60, "run-2"):
                pass
            with state.locks.lock("de", 60, "run-3"):
                pass  # other stores are independent
        with state.locks.lock("fr", 60, "run-2"):
            pass


def test_expired_lease_is_taken_over(state_url: str) -> None:
    with StateStore.open(state_url) as state:
        # Never released, by a process on another host whose lease has run out.
        StoreLease(state.db, "fr", -1, "other-host:4242:dead-run").acquire()
        with state.locks.lock("fr", 60, "next-run") as lease:
            lease.renew()


def _die_holding_lock(url: str) -> None:
    state = StateStore.open(url)
    lease = state.locks.lock("fr", 3600, "crashing-run")
    lease.__enter__()
    os._exit(0)  # dies without releasing


def test_lock_of_a_dead_process_on_this_host_does_not_block(state_url: str) -> None:
    StateStore.open(state_url).close()
    child = multiprocessing.get_context("spawn").Process(target=_die_holding_lock,
                                                         args=(state_url,))
    child.start()
    child.join(30)
    with StateStore.open(state_url) as state, state.locks.lock("fr", 60, "after-crash"):
        pass


def test_holder_id_names_host_and_process() -> None:
    assert f":{os.getpid()}:r1" in holder_id("r1")


def test_run_log_records_counts(state_url: str) -> None:
    with StateStore.open(state_url) as state:
        record = state.runs.start("r1", "fr", "offers")
        state.runs.finish(record, "ok", {"created": 2})
        [run] = state.runs.latest("fr")
        assert (run["run_id"], run["outcome"], run["counts"]) == ("r1", "ok", {"created": 2})


def test_schema_2_is_migrated_to_keep_long_error_codes(state_url: str) -> None:
    """Schema version 3 stores error codes and request ids as text: a state made by version 2
    (VARCHAR(64) and (128), enforced by PostgreSQL) is altered by the first publishing open."""
    StateStore.open(state_url).close()
    engine = create_engine(state_url)
    with engine.begin() as conn:  # as version 2 left it
        if conn.dialect.name == "postgresql":
            conn.execute(text("ALTER TABLE offer_snapshot ALTER COLUMN error_code TYPE "
                              "VARCHAR(64)"))
            conn.execute(text("ALTER TABLE offer_snapshot ALTER COLUMN request_id TYPE "
                              "VARCHAR(128)"))
            conn.execute(text("ALTER TABLE order_line_action ALTER COLUMN request_id TYPE "
                              "VARCHAR(128)"))
        conn.execute(text("ALTER TABLE offer_queue DROP COLUMN priority"))  # version 4's
        conn.execute(text("UPDATE schema_info SET value = '2' WHERE key = 'schema_version'"))
        conn.execute(text("DROP TABLE alembic_version"))  # made before Alembic
    code, request_id = "c" * 200, "r" * 300
    with StateStore.open(state_url) as state:
        state.offers.record_failures(
            "fr", [Failure("A", "refused", code=code, request_id=request_id)])
        state.orders.record_line_action("EU@x", 1, 1, "A", "accept", "failed", "refused",
                                        request_id)
        assert [(f["error_code"], f["request_id"]) for f in state.status.failures("fr")] == [
            (code, request_id)]
        assert state.orders.line_actions("EU@x", 1)[1]["request_id"] == request_id
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM schema_info")).scalar() == str(SCHEMA_VERSION)
    engine.dispose()


def test_times_come_back_aware_in_utc_and_a_naive_one_is_refused(state_url: str) -> None:
    paris = timezone(timedelta(hours=1))
    with StateStore.open(state_url) as state:
        state.orders.set_order_watermark("fr", "store", datetime(2026, 12, 4, 15, 0, tzinfo=paris))
        found = state.orders.order_watermark("fr", "store")
        assert found == datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
        assert found is not None and found.utcoffset() == timedelta(0)
        # A naive time is a bug of ours: refused, not stored as if it were UTC.
        with pytest.raises(StateError, match="naive datetime"):
            state.orders.set_order_watermark("fr", "store", datetime(2026, 12, 4, 16, 0))
        assert state.orders.order_watermark("fr", "store") == found


def test_the_state_fingerprint_covers_every_table_the_state_creates(state_url: str) -> None:
    """The "writes nothing" checks hash every row of these tables: a table they miss (or an
    empty list, as when the tables moved off SQLModel's metadata) would make them vacuous."""
    from sqlalchemy import inspect

    from tests.helpers import state_tables

    StateStore.open(state_url).close()
    engine = create_engine(state_url)
    with engine.connect() as conn:
        created = set(inspect(conn).get_table_names())
    engine.dispose()
    assert created and {table.name for table in state_tables()} == created


@pytest.mark.postgres
@pytest.mark.parametrize("offers, analyzed", [(20_000, True), (10, False)])
def test_a_bulk_publication_leaves_postgresql_statistics_fresh(
        pg_url: str, offers: int, analyzed: bool) -> None:
    """Right after a first publication, PostgreSQL's planner still takes the snapshot for a
    small table (its autovacuum analyzes a while later) and reads a whole store for each
    batch of SKU keys the next plan looks up: the state refreshes the statistics of what it
    wrote in bulk when it closes, and only then."""
    with StateStore.open(pg_url) as state:
        state.offers.record_acks("fr", [Ack(f"S-{n}", published(f"S-{n}"), f"L{n}")
                                        for n in range(offers)])
    engine = create_engine(pg_url)
    with engine.connect() as conn:  # what the planner knows of the table: -1, never counted
        rows = conn.execute(text("SELECT reltuples FROM pg_class WHERE oid = "
                                 "'offer_snapshot'::regclass")).scalar()
    engine.dispose()
    assert rows == (offers if analyzed else -1)
