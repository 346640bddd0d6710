"""Planning at scale: rows unchanged since their confirmation are not validated again (the
row's hash is kept with the snapshot), changes move to disk past a threshold, and an older
state schema is migrated. Each behaviour must give exactly the plan the slow path gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import structlog
from sqlalchemy import create_engine, text

from syncer.config.settings import Settings, load_settings
from syncer.core.snapshot import Ack
from syncer.errors import StateError
from syncer.pipeline.planner import catalog_source, make_plan
from syncer.planning.changes import Change, ChangeLog
from syncer.state.store import StateStore
from syncer.state.version import SCHEMA_VERSION
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config


def confirm_everything(settings: Settings) -> None:
    """What a fully successful publication leaves in the state."""
    with StateStore.open(settings.state_database_url()) as state:
        plan = make_plan(settings, settings.stores, catalog_source(settings), state)
        for store in plan.stores:
            state.offers.record_acks(store.store, [
                Ack(c.sku, c.target, f"id-{c.sku}", c.source_hash) for c in store.changes])


def plan_json(settings: Settings) -> tuple[dict, int]:  # type: ignore[type-arg]
    with structlog.testing.capture_logs() as logs, \
            StateStore.open_readonly(settings.state_database_url()) as state:
        plan = make_plan(settings, settings.stores, catalog_source(settings), state)
    fast = next(e["unchanged_rows"] for e in logs if e["event"] == "planned")
    return json.loads(plan.to_json()), fast


@pytest.fixture
def settings(tmp_path: Path, state_url: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    write_config(tmp_path, state_url=state_url)
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"F-{i}") for i in range(8)])
    return load_settings(tmp_path / "syncer.toml")


def test_unchanged_rows_are_not_validated_again_and_changed_ones_are(settings: Settings) -> None:
    confirm_everything(settings)
    plan, fast = plan_json(settings)
    assert fast == 8 and plan["summary"]["unchanged"] == 16 and plan["changes"] == []

    rows = [catalog_row(f"F-{i}") for i in range(8)]
    rows[2] = catalog_row("F-2", price_de="150.00")  # one store's cell changes: whole row
    rows[5] = catalog_row("F-5", ean="4006381333932")  # now rejected: kept, not zeroed
    del rows[7]  # gone: zeroed
    write_catalog(settings.catalog_path(), rows)
    plan, fast = plan_json(settings)
    assert fast == 5
    assert sorted((c["store"], c["action"], c["sku"]) for c in plan["changes"]) == [
        ("de", "update", "F-2"), ("de", "zero", "F-7"), ("fr", "zero", "F-7")]
    assert plan["summary"]["unchanged"] == 11 and plan["summary"]["rejected"] == 2
    assert {n["kind"] for n in plan["notices"]} == {"kept-rejected"}


def test_a_duplicate_of_an_unchanged_row_is_still_rejected(settings: Settings) -> None:
    confirm_everything(settings)
    # An exact copy of an unchanged row: its cells hash to what was confirmed, so only the
    # fast path's memory of the SKUs it took can tell it is a duplicate.
    rows = [catalog_row(f"F-{i}") for i in range(8)] + [catalog_row("F-3")]
    write_catalog(settings.catalog_path(), rows)
    plan, fast = plan_json(settings)
    assert fast == 8
    (rejection,) = plan["rejections"]
    assert (rejection["row"], rejection["sku"], rejection["field"]) == (10, "F-3", "sku")
    assert "row 5 already uses 'F-3'" in rejection["expected"]
    assert plan["changes"] == []  # the first row stays confirmed: nothing zeroed or resent


def test_an_unchanged_copy_after_an_edited_first_row_is_rejected_as_its_duplicate(
        settings: Settings) -> None:
    confirm_everything(settings)
    # The SKU twice: first edited, then the row as it was confirmed. The second hashes to
    # what was confirmed, but the first row already took the SKU: a duplicate, not unchanged.
    rows = [catalog_row(f"F-{i}") for i in range(8)]
    rows[3] = catalog_row("F-3", price_fr="149.90")
    rows.append(catalog_row("F-3"))
    write_catalog(settings.catalog_path(), rows)
    plan, fast = plan_json(settings)
    assert fast == 7
    (rejection,) = plan["rejections"]
    assert (rejection["row"], rejection["sku"], rejection["field"]) == (10, "F-3", "sku")
    assert "row 5 already uses 'F-3'" in rejection["expected"]
    assert [(c["store"], c["action"], c["sku"]) for c in plan["changes"]] == [
        ("fr", "update", "F-3")]


def test_a_changed_store_setting_revalidates_every_row(settings: Settings, tmp_path: Path
                                                       ) -> None:
    confirm_everything(settings)
    config = tmp_path / "syncer.toml"
    config.write_text(config.read_text() + "warranty_min_months = 24\n")  # the de store
    changed = load_settings(config)
    plan, fast = plan_json(changed)
    assert fast == 0  # a new fingerprint: nothing is taken as unchanged
    assert plan["summary"]["rejected"] == 8  # de now wants 24 months: every de offer
    assert plan["changes"] == []  # rejected offers keep what is live


def test_failed_offers_are_never_taken_as_unchanged(settings: Settings) -> None:
    from syncer.core.snapshot import Failure

    confirm_everything(settings)
    with StateStore.open(settings.state_database_url()) as state:
        state.offers.record_failures("fr", [Failure("F-1", "price refused")])
    plan, fast = plan_json(settings)
    assert fast == 7
    assert [(c["store"], c["action"], c["sku"]) for c in plan["changes"]] == [
        ("fr", "retry", "F-1")]


def test_change_log_spills_to_disk_and_keeps_the_sending_order() -> None:
    def change(action: str, sku: str, queued: str | None = None, fields: tuple = ()
               ) -> Change:  # type: ignore[type-arg]
        target = (None, "4006381333931", "GOOD", 1, "1.00", "EUR", 12, None, None, None, None,
                  None)
        return Change(action, "fr", sku, target, None if action == "create" else fields,
                      queued_since=queued)

    log = ChangeLog(spill_at=3)
    planned = [change("create", "C1"), change("update", "P1", fields=(("price", "2", "1"),)),
               change("zero", "Z1", fields=(("quantity", 1, 0),)), change("create", "C2"),
               change("create", "Q1", queued="2026-11-23T06:00:00+00:00"),
               change("update", "S1", fields=(("quantity", 1, 2),)), change("create", "C3")]
    log.extend(planned)
    assert log._folder is not None  # spilled
    assert len(log) == 7 and log.count("create") == 4 and log.count("zero") == 1
    assert [c.sku for c in log] == ["Z1", "S1", "P1", "Q1", "C1", "C2", "C3"]
    assert log[:2] == [planned[2], planned[5]]
    in_memory = ChangeLog(planned)
    assert in_memory._folder is None and list(in_memory) == list(log)
    log.close()


def test_older_state_schema_is_migrated_by_a_publishing_command(state_url: str) -> None:
    StateStore.open(state_url).close()
    engine = create_engine(state_url)
    with engine.begin() as conn:  # as version 1 left it
        conn.execute(text("ALTER TABLE offer_snapshot DROP COLUMN source_hash"))
        conn.execute(text("ALTER TABLE offer_queue DROP COLUMN priority"))  # version 4's
        conn.execute(text("UPDATE schema_info SET value = '1' WHERE key = 'schema_version'"))
        conn.execute(text("DROP TABLE alembic_version"))  # version 1 predates Alembic
    with pytest.raises(StateError, match="older schema version 1; `syncer apply` or "
                                         "`syncer run` upgrades it"):
        StateStore.open_readonly(state_url)
    with StateStore.open(state_url) as state:
        state.offers.record_acks("fr", [Ack("A", (None, "4006381333931", "GOOD", 1, "1.00", "EUR",
                                                  12, None, None, None, None, None), "L", 42)])
        assert state.offers.snapshot("fr")["a"].source_hash == 42
    with engine.connect() as conn:
        version = conn.execute(text("SELECT value FROM schema_info")).scalar()
    engine.dispose()
    assert version == str(SCHEMA_VERSION)


def test_the_snapshot_index_reads_every_offer_whatever_its_sku_holds(state_url: str) -> None:
    """The index of a store is read as one text joined in the database; a SKU read back from
    Back Market may hold the record separator, and then each offer is read on its own, not
    split into two offers (one of them a SKU that does not exist, zeroed as gone)."""
    published = (None, "4006381333931", "GOOD", 5, "100.00", "EUR", 12, None, None, None,
                 None, None)
    with StateStore.open(state_url) as state:
        assert state.offers.snapshot_index("fr") == ([], 0)
        state.offers.record_acks("fr", [Ack("Plain-1", published, "id-1", 7),
                                        Ack("Other", (*published[:3], 0, *published[4:]),
                                            "id-2", None)])
        pairs, live = state.offers.snapshot_index("fr")
        assert sorted(pairs) == ["other\x1fn", "plain-1\x1f7"] and live == 1
        state.offers.record_observed("fr", [Ack("Odd\x1eSku", published, "id-3", None)])
        pairs, live = state.offers.snapshot_index("fr")
        assert sorted(pairs) == ["odd\x1esku\x1fn", "other\x1fn", "plain-1\x1f7"]
        assert live == 2
        assert state.offers.snapshot_index("de") == ([], 0)
