"""An offer Back Market refuses with the same error run after run is quarantined: not sent
every run, listed in `syncer errors`, released by a content change or `syncer retry`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.emulator.server import EmulatorServer
from tests.conftest import TOKEN, catalog_row
from tests.helpers import Shop, checked_emulator

ROWS = [catalog_row(f"Q-{i}") for i in range(5)]


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as server:
        server.emulator.faults.reject_skus["Q-1"] = "=HYPERLINK(\"x\") grade not allowed"
        yield server


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, state_url: str,
         monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, emulator, state_url)
    shop.catalog(ROWS)
    return shop


def sends_for(shop: Shop, sku: str, since: int) -> int:
    return sum(1 for e in shop.server.emulator.exchanges[since:]
               if e.method == "POST" and sku in str(e.request))


def test_offer_refused_three_runs_in_a_row_is_quarantined_until_retry(shop: Shop) -> None:
    for _ in range(3):
        shop.run("apply", code=3)
    plan = shop.plan_json()
    assert plan["changes"] == []
    notices = [(n["store"], n["kind"], n["sku"]) for n in plan["notices"]]
    assert notices == [("fr", "quarantined", "Q-1"), ("de", "quarantined", "Q-1")]
    assert "refused 3 runs in a row" in plan["notices"][0]["message"]
    # Counted apart: the catalog rows are fine, Back Market refuses the offers.
    assert (plan["summary"]["rejected"], plan["summary"]["quarantined"]) == (0, 2)
    assert [s["summary"]["quarantined"] for s in plan["stores"]] == [1, 1]
    errors = shop.run("errors").stdout
    assert "fr  QUARANTINED Q-1: =HYPERLINK" in errors and "(refused 3 runs in a row" in errors

    before = len(shop.server.emulator.exchanges)
    shop.run("apply")  # nothing to send: exit 0, Q-1 left alone
    assert sends_for(shop, "Q-1", before) == 0

    retried = shop.run("retry", "Q-1").stdout
    assert retried == "Q-1: will be sent again by the next run (fr, de)\n"
    plan = shop.plan_json()
    assert [(c["store"], c["action"]) for c in plan["changes"]] == [("fr", "retry"),
                                                                   ("de", "retry")]
    shop.server.emulator.faults.reject_skus.clear()
    shop.run("apply")
    assert shop.run("errors").stdout == "No failed offers.\n"


def test_quarantined_offers_have_their_own_count_and_line_in_text_and_markdown(
        shop: Shop) -> None:
    for _ in range(3):
        shop.run("apply", code=3)
    text = shop.run("plan").stdout
    assert "Store fr (fr-fr): 0 to create, 0 to update, 0 to zero, 0 to retry; 4 unchanged, " \
        "0 rejected, 1 quarantined" in text
    assert "  QUARANTINED 1 offer refused by Back Market too many runs in a row" in text
    assert text.endswith("Nothing to send (8 unchanged, 0 rejected, 2 quarantined).\n")
    markdown = shop.run("plan", "--format", "markdown").stdout
    assert "| store | create | update | zero | retry | unchanged | rejected | quarantined |" \
        in markdown
    assert "| fr (fr-fr) | 0 | 0 | 0 | 0 | 4 | 0 | 1 |" in markdown
    assert "> **Quarantined:** 2 offers refused by Back Market" in markdown
    shop.run("plan", "--fail-on-rejections")  # 0 rejected rows: the gate passes


def test_a_content_change_releases_a_quarantined_offer(shop: Shop) -> None:
    for _ in range(3):
        shop.run("apply", code=3)
    rows = list(ROWS)
    rows[1] = catalog_row("Q-1", grade="GOOD")
    shop.catalog(rows)
    plan = shop.plan_json()
    assert {(c["store"], c["sku"], c["action"]) for c in plan["changes"]} == {
        ("fr", "Q-1", "retry"), ("de", "Q-1", "retry")}


def test_another_error_starts_the_count_again(shop: Shop) -> None:
    shop.run("apply", code=3)
    shop.run("apply", code=3)
    shop.server.emulator.faults.reject_skus["Q-1"] = "another reason"
    shop.run("apply", code=3)  # a different error: one run in a row, not three
    assert [c["sku"] for c in shop.plan_json()["changes"]] == ["Q-1", "Q-1"]
    assert "(refused 1 run in a row" in shop.run("errors").stdout


def test_errors_as_csv_neutralise_spreadsheet_formulas(shop: Shop) -> None:
    shop.run("apply", code=3)
    out = shop.run("errors", "--format", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(out), delimiter=";"))
    assert [(r["store"], r["sku"]) for r in rows] == [("de", "Q-1"), ("fr", "Q-1")]
    assert rows[0]["error"].startswith("'=HYPERLINK")


def test_retry_of_an_unknown_sku_is_an_error(shop: Shop) -> None:
    result = shop.run("retry", "NOPE", "--store", "fr", code=1)
    assert "NOPE has no failed offer in store fr" in result.stderr
