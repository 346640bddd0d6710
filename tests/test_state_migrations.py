"""State schema migrations through Alembic (issue 14), on SQLite and PostgreSQL.

Old databases are built from the DDL the syncer emitted before Alembic
(``tests/fixtures/state/schema_3.<dialect>.sql``): schema 3 as it is, schemas 1 and 2 as
the changes of revisions 0002 and 0003 leave it when undone.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from syncer.core.snapshot import Ack, Failure
from syncer.errors import StateError
from syncer.state.store import StateStore
from syncer.state.version import HEAD, SCHEMA_VERSION, alembic_head
from tests.helpers import state_fingerprint
from tests.test_state import published

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "state"


def _old_state(url: str, version: int) -> None:
    """A state database as the syncer before Alembic left it at ``version`` (1, 2 or 3),
    with one confirmed offer, one failure, one order line action and one run."""
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url)
    ddl = (FIXTURES / f"schema_3.{engine.dialect.name}.sql").read_text(encoding="utf-8")
    if version < 3:  # VARCHAR error codes and request ids (PostgreSQL enforces them)
        ddl = ddl.replace("error_code TEXT,", "error_code VARCHAR(64),")
        ddl = ddl.replace("request_id TEXT,\n\tattempts INTEGER NOT NULL,\n\tfailed_hash",
                          "request_id VARCHAR(128),\n\tattempts INTEGER NOT NULL,\n\tfailed_hash")
        ddl = ddl.replace("reason TEXT,\n\trequest_id TEXT,",
                          "reason TEXT,\n\trequest_id VARCHAR(128),")
    if version < 2:
        ddl = ddl.replace("\tsource_hash BIGINT,\n", "")
    statements = [s for s in ddl.split(";") if s.strip().removeprefix("--").strip()]
    with engine.begin() as conn:
        for statement in statements:
            body = "\n".join(line for line in statement.splitlines()
                             if not line.startswith("--"))
            conn.execute(text(body))
        conn.execute(text("INSERT INTO schema_info VALUES ('schema_version', :v)"),
                     {"v": str(version)})
        conn.execute(text(
            "INSERT INTO offer_snapshot (store, sku_key, sku, listing_id, quantity, price, "
            "currency, status, attempts, confirmed_at, updated_at, last_error) VALUES "
            "('fr', 'a', 'A', 'L1', 3, '10.00', 'EUR', 'live', 0, :t, :t, NULL), "
            "('fr', 'b', 'B', NULL, NULL, NULL, NULL, 'failed', 2, NULL, :t, 'refused')"),
            {"t": "2026-12-01 10:00:00.000000" if engine.dialect.name == "sqlite"
             else "2026-12-01 10:00:00+00"})
        conn.execute(text(
            "INSERT INTO order_line_action (account, orderline_id, order_id, sku, action, "
            "status, attempts, updated_at) VALUES ('EU@x', 7, 70, 'A', 'accept', 'confirmed', "
            "0, :t)"), {"t": "2026-12-01 10:00:00.000000" if engine.dialect.name == "sqlite"
                        else "2026-12-01 10:00:00+00"})
        conn.execute(text("INSERT INTO run_log (run_id, store, kind, started_at, outcome, "
                          "counts) VALUES ('r0', 'fr', 'offers', :t, 'ok', '{}')"),
                     {"t": "2026-12-01 09:00:00.000000" if engine.dialect.name == "sqlite"
                      else "2026-12-01 09:00:00+00"})
    engine.dispose()


def _recorded(url: str) -> tuple[str, str | None, set[str]]:
    """(schema_info version, Alembic revision, offer_snapshot's columns)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        version = conn.execute(text("SELECT value FROM schema_info")).scalar()
        revision = None
        if inspect(conn).has_table("alembic_version"):
            revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        columns = {c["name"] for c in inspect(conn).get_columns("offer_snapshot")}
    engine.dispose()
    return str(version), revision, columns


def _kept_rows(state: StateStore) -> None:
    snapshot = state.offers.snapshot("fr")
    assert snapshot["a"].published is not None and snapshot["a"].listing_id == "L1"
    assert snapshot["a"].live and snapshot["b"].status == "failed"
    assert snapshot["b"].attempts == 2
    assert state.orders.line_actions("EU@x", 70)[7]["status"] == "confirmed"
    assert [run["run_id"] for run in state.runs.latest("fr")] == ["r0"]


def test_the_head_revision_is_the_schema_version_the_store_checks() -> None:
    assert alembic_head() == HEAD == f"{SCHEMA_VERSION:04d}"


def test_a_schema_3_database_of_the_old_syncer_is_adopted_then_upgraded(state_url: str
                                                                        ) -> None:
    """The last schema before Alembic is adopted at its own revision (0003), then brought
    to head by the revisions after it: schema 4 adds only the queue's priority column."""
    _old_state(state_url, 3)
    engine = create_engine(state_url)
    with engine.connect() as conn:
        before = {table: inspect(conn).get_columns(table)
                  for table in inspect(conn).get_table_names()}
    recorded = _recorded(state_url)
    with pytest.raises(StateError, match="older schema version 3; `syncer apply` or `syncer "
                                         f"run` upgrades it \\(to {SCHEMA_VERSION}\\)"):
        StateStore.open_readonly(state_url)  # plan: refuses, writes nothing
    assert _recorded(state_url) == recorded and recorded[:2] == ("3", None)
    with StateStore.open(state_url) as state:
        _kept_rows(state)
    with engine.connect() as conn:
        after = {table: inspect(conn).get_columns(table)
                 for table in inspect(conn).get_table_names()}
    engine.dispose()
    assert [c["name"] for c in after["offer_queue"]] == [
        *(c["name"] for c in before["offer_queue"]), "priority"]
    # Tables added since (create_all makes them; no revision needed) and Alembic's own.
    assert set(after) - set(before) == {"alembic_version", "price_move"}
    assert {t: repr(after[t]) for t in before if t != "offer_queue"} == {
        t: repr(c) for t, c in before.items() if t != "offer_queue"}
    assert _recorded(state_url)[:2] == (str(SCHEMA_VERSION), HEAD)
    with StateStore.open_readonly(state_url) as state:
        _kept_rows(state)


@pytest.mark.parametrize("version", [1, 2])
def test_an_older_database_of_the_old_syncer_is_upgraded_and_keeps_its_rows(
        state_url: str, version: int) -> None:
    _old_state(state_url, version)
    with pytest.raises(StateError, match=f"older schema version {version}; `syncer apply` "
                                         "or `syncer run` upgrades it"):
        StateStore.open_readonly(state_url)
    with StateStore.open(state_url) as state:
        _kept_rows(state)
        code, request_id = "c" * 200, "r" * 300  # longer than schema 2's VARCHARs
        state.offers.record_failures("fr", [Failure("D", "refused", code=code,
                                                    request_id=request_id)])
        state.orders.record_line_action("EU@x", 8, 70, "A", "accept", "failed", "refused",
                                        request_id)
        state.offers.record_acks("fr", [Ack("C", published(), "L3", 42)])
        assert state.offers.snapshot("fr")["c"].source_hash == 42
        assert state.status.failures("fr")[1]["error_code"] == code  # B, then D
    version_now, revision, columns = _recorded(state_url)
    assert (version_now, revision) == (str(SCHEMA_VERSION), HEAD) and "source_hash" in columns
    with StateStore.open_readonly(state_url) as state:
        _kept_rows(state)


def test_a_database_newer_than_head_is_refused_with_the_message(state_url: str) -> None:
    StateStore.open(state_url).close()
    engine = create_engine(state_url)
    newer = f"{SCHEMA_VERSION + 1:04d}"
    with engine.begin() as conn:  # a later syncer's revision; schema_info left as it was
        conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": newer})
    engine.dispose()
    before = state_fingerprint(state_url)
    message = f"has schema revision '{newer}', newer than this syncer understands"
    for opening in (StateStore.open, StateStore.open_readonly):
        with pytest.raises(StateError, match=f"{message} \\({HEAD}\\); upgrade the syncer"):
            opening(state_url)
    assert state_fingerprint(state_url) == before


def test_a_fresh_database_is_created_at_head(state_url: str) -> None:
    StateStore.open(state_url).close()
    version, revision, columns = _recorded(state_url)
    assert (version, revision) == (str(SCHEMA_VERSION), HEAD) and "source_hash" in columns
    before = state_fingerprint(state_url)
    StateStore.open(state_url).close()  # current: nothing to do
    assert state_fingerprint(state_url) == before


def _imported_after(code: str) -> list[str]:
    probe = "\n".join(("import sys", code, 'print(sorted(m for m in sys.modules if '
                                            'm.split(".")[0] in ("alembic", "mako")))'))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                            check=True, timeout=60)
    return list(ast.literal_eval(result.stdout))


def test_alembic_is_loaded_only_to_stamp_or_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'syncer.db'}"
    assert _imported_after("import syncer.cli.main") == []
    assert _imported_after(f"from syncer.state.store import StateStore\n"
                           f"StateStore.open({url!r}).close()") != []  # created: stamped
    assert _imported_after(f"from syncer.state.store import StateStore\n"
                           f"StateStore.open({url!r}).close()\n"
                           f"StateStore.open_readonly({url!r}).close()") == []
