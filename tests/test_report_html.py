"""The HTML report (`syncer report`, `plan --format html`): one self-contained page per plan
or run, checked as text and in a real headless Chromium (tests/browser.py): it renders its
tables and charts, a header click sorts, typing in the filter hides rows, a hostile catalog
cell never runs; screenshots are kept under build/artifacts/.

The browser tests skip on a laptop without Chromium and fail in CI
(``SYNCER_REQUIRE_CHROMIUM=1``, set by .ci/run, which installs it).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncer.cli.main import cli
from syncer.config.settings import Settings, load_settings
from syncer.core.offers import FIELDS
from syncer.core.snapshot import Ack
from syncer.emulator.server import EmulatorServer
from syncer.pipeline.planner import catalog_source, make_plan
from syncer.planning.plan import Plan
from syncer.reports.html import Budget, drain, plan_html, price_moves
from syncer.reports.page import CSP, SCRIPT
from syncer.state.store import StateStore
from tests.browser import Browser, chromium
from tests.conftest import HEADER, TOKEN, catalog_row, write_config
from tests.helpers import Shop

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "build" / "artifacts"
PRICE = FIELDS.index("price")
QUANTITY = FIELDS.index("quantity")
HOSTILE_SKU = "<script>window.__pwned=1</script>"
HOSTILE_COMMENT = '"><img src=x onerror="window.__pwned=2">'
HOSTILE_EAN = "<img src=x onerror=window.__pwned=3>"
INVISIBLE_SKU = "ZW\u200bSP-1"
# Resolves once every image of the page has loaded or failed (its onerror then ran, or not).
IMAGES_SETTLED = ("new Promise(done => { const check = () => Array.from(document.images)"
                  ".every(i => i.complete) ? setTimeout(done, 0) : setTimeout(check, 10); "
                  "check(); })")


# --- the budget queue -----------------------------------------------------------------------

def test_the_queue_drains_at_the_hourly_budget_after_what_the_last_hour_left() -> None:
    drains = drain([("fr", 5000)], {"fr": Budget("eu", 2000, used=500)})
    fr = drains["fr"]
    assert fr.waiting == [3500, 1500, 0]
    assert (fr.now, fr.waits, len(fr.waiting) - 1) == (1500, 3500, 2)
    assert [fr.hour_of(p) for p in (0, 1499, 1500, 3499, 3500, 4999)] == [0, 0, 1, 1, 2, 2]


def test_stores_of_one_token_drain_one_after_the_other_and_other_tokens_apart() -> None:
    budgets = {"fr": Budget("eu", 100), "de": Budget("eu", 100), "us": Budget("us", 100)}
    drains = drain([("fr", 150), ("de", 120), ("us", 30)], budgets)
    assert drains["fr"].waiting == [50, 0]
    # de waits for fr: it gets what fr left of hour 1 (50 lines), then 70 in hour 2.
    assert drains["de"].waiting == [120, 70, 0]
    assert [drains["de"].hour_of(p) for p in (0, 49, 50, 119)] == [1, 1, 2, 2]
    assert drains["us"].waiting == [0]


def test_an_unlimited_budget_sends_everything_this_run() -> None:
    fr = drain([("fr", 10**6)], {"fr": Budget("eu", 0)})["fr"]
    assert (fr.now, fr.waits, len(fr.waiting) - 1) == (10**6, 0, 0)


def test_price_moves_are_exact_percentages_of_the_published_price(tmp_path: Path) -> None:
    plan = Plan.from_dict(_plan_dict([("A", "200.00", "150.00"), ("B", "3.00", "4.00"),
                                      ("C", None, "9.99")]))
    assert price_moves(plan.changes) == [Decimal("-25"), Decimal("100") / 3]


# --- the page as text ------------------------------------------------------------------------

def test_every_catalog_value_is_escaped_and_invisible_characters_shown() -> None:
    page = plan_html(Plan.from_dict(_plan_dict(
        [(HOSTILE_SKU, "10.00", "12.00"), (INVISIBLE_SKU, "5.00", "4.00")],
        rejections=[{"row": 7, "sku": "R-7", "field": "ean", "column": "EAN code",
                     "value": HOSTILE_EAN, "expected": "an EAN", "store": None}],
        comment=HOSTILE_COMMENT)), {"fr": Budget("eu", 2000)})
    assert HOSTILE_SKU not in page and HOSTILE_EAN not in page
    assert "<img" not in page and 'onerror="' not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=2&quot;&gt;" in page
    assert "ZW&lt;U+200B&gt;SP-1" in page and "\u200b" not in page
    assert page.count("<script>") == 1  # the page's own script only


def test_the_page_loads_nothing_and_runs_only_its_own_script() -> None:
    page = plan_html(Plan.from_dict(_plan_dict([("A", "1.00", "2.00")])),
                     {"fr": Budget("eu", 2000)})
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "@import" not in page and "url(" not in page
    assert f'content="{CSP}"' in page and "default-src 'none'" in CSP
    import base64
    import hashlib
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in CSP and f"<script>{SCRIPT}</script>" in page


def test_a_saved_plan_reports_as_plan_format_html_shows_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _example_shop(tmp_path, monkeypatch)
    html_out, json_out, report_out = (tmp_path / n for n in ("p.html", "p.json", "r.html"))
    assert _syncer("--config", str(config), "plan", "--format", "html", "--out",
                   str(html_out)).exit_code == 2
    assert _syncer("--config", str(config), "plan", "--format", "json", "--out",
                   str(json_out)).exit_code == 2
    made = _syncer("--config", str(config), "report", "--plan", str(json_out), "--out",
                   str(report_out))
    assert made.exit_code == 0, (made.stderr, made.exception)
    planned, reported = (_without_date(p.read_text(encoding="utf-8"))
                         for p in (html_out, report_out))
    assert planned == reported
    # The example's state: updates with their old and new prices, a zero, creates, and a
    # queue behind the 8-line budget (3 lines spent in the last hour).
    assert "<del>226.00</del> → <ins>" in planned or "<del>" in planned
    assert "<td>zero</td>" in planned and "<td>create</td>" in planned
    assert "8/h (3 used)" in planned and "drained in" in planned
    assert "queued since" in planned
    # fr: 5 lines free now (8 - 3) take the zero and 4 of its 6 stock changes; de waits for
    # fr, the stores sharing one token: 4 lines at +2 h, 8 at +3 h, the last 3 at +4 h. The
    # estimate is the account's, as plan and status give it: 32 lines, 3 of them behind the
    # 3 spent just now, free in an hour: 3 h and that hour.
    assert _table_rows(planned, "queue") == [
        ["fr", "12", "0", "2", "8", "2", "1", "4 h (shared with de)"],
        ["de", "15", "0", "4", "10", "1", "0", "4 h (shared with fr)"]]
    sent = [(r[0], r[1], r[5]) for r in _table_rows(planned, "changes")]
    assert sent[0] == ("fr", "zero", "now") and sent[5][2] == "+1 h"
    assert [r[2] for r in sent if r[0] == "de"][-3:] == ["+4 h"] * 3


def test_the_page_drains_the_queue_on_the_sliding_hour_as_plan_and_status_say(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The 3 lines of the hour were spent 40 minutes ago: they free in 20 minutes, not at the
    # next whole hour (the page said 4 h while `syncer plan` said 3 h 20 min).
    config = _example_shop(tmp_path, monkeypatch, spent_ago=timedelta(minutes=40))
    text = _syncer("--config", str(config), "plan")
    page = _syncer("--config", str(config), "plan", "--format", "html")
    assert (text.exit_code, page.exit_code) == (2, 2), (text.stderr, page.stderr)
    said = {store: re.search(rf"^Queue {store}: .*; drained in about ([^(]+) \(", text.stdout,
                             re.MULTILINE) for store in ("fr", "de")}
    assert {store: m and m.group(1) for store, m in said.items()} == \
        {"fr": "3 h 20 min", "de": "3 h 20 min"}
    assert [(r[0], r[-1]) for r in _table_rows(page.stdout, "queue")] == [
        ("fr", "3 h 20 min (shared with de)"), ("de", "3 h 20 min (shared with fr)")]
    assert [(r[0], r[-2]) for r in _table_rows(page.stdout, "stores")] == [
        ("fr", "3 h 20 min (shared with de)"), ("de", "3 h 20 min (shared with fr)")]
    assert "sent within about <b>3 h 20 min</b>" in page.stdout


def test_a_saved_plan_is_reported_without_a_configuration(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    saved = tmp_path / "plan.json"
    saved.write_text(json.dumps(_plan_dict([("A", "1.00", "2.00")])), encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # no syncer.toml here
    made = _syncer("report", "--plan", str(saved))
    assert made.exit_code == 0, (made.stderr, made.exception)
    assert "2000/h (0 used)" in made.stdout and made.stdout.startswith("<!DOCTYPE html>")


def test_report_without_a_run_in_the_state_says_so(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = _example_shop(tmp_path, monkeypatch, seed=False)
    out = tmp_path / "run.html"
    made = _syncer("--config", str(config), "report", "--out", str(out))
    assert made.exit_code == 1
    assert "the state has no run yet" in made.stderr
    assert not out.exists()  # no empty page left behind


def test_products_plan_is_refused_in_html(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    config = _example_shop(tmp_path, monkeypatch, seed=False)
    made = _syncer("--config", str(config), "plan", "--kind", "products", "--format", "html")
    assert made.exit_code == 1 and "--format html shows offer plans" in made.stderr


# --- the last run, published to the emulator --------------------------------------------------

def _run_report(tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch,
                state_url: str | None = None) -> Path:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, emulator, state_url or f"sqlite:///{tmp_path / 'state.db'}",
                extra="[limits]\nsku_lines_per_hour = 4\n",
                stores=(("fr", "fr-fr"),))  # type: ignore[arg-type]
    emulator.emulator.faults.reject_skus["B-2"] = HOSTILE_EAN  # Back Market's words, echoed
    shop.catalog([catalog_row(f"{letter}-{n}") for n, letter in enumerate("ABCDEF", 1)])
    shop.run("apply", code=3)
    out = tmp_path / "run.html"
    shop.run("report", "--out", str(out))
    return out


def test_report_of_the_last_run_shows_its_counts_refusals_and_queue(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch,
        state_url: str) -> None:
    page = _run_report(tmp_path, emulator, monkeypatch, state_url).read_text(encoding="utf-8")
    runs = _table_rows(page, "runs")
    assert len(runs) == 1
    store, job, outcome, created, _, _, _, failed, queued = runs[0][:9]
    assert (store, job, outcome) == ("fr", "offers", "partial")
    assert (created, failed, queued) == ("3", "1", "2")
    failures = _table_rows(page, "failures")
    assert [f[1] for f in failures] == ["B-2"]
    assert HOSTILE_EAN not in page and "&lt;img src=x onerror=window.__pwned=3&gt;" in page
    queue = _table_rows(page, "queue")
    assert sorted(q[1] for q in queue) == ["E-5", "F-6"]
    assert all("hourly budget of 4 SKU lines is used up" in q[2] for q in queue)
    assert all(q[4] == "+1 h" for q in queue)  # this hour's 4 lines are spent


# --- in a real browser -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium()
    if executable is None:
        if os.environ.get("SYNCER_REQUIRE_CHROMIUM") == "1":
            pytest.fail("Chromium is required in CI (SYNCER_REQUIRE_CHROMIUM=1) but is not "
                        "installed: apt-get install chromium")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    with Browser(executable) as running:
        yield running


@pytest.fixture
def example_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = _example_shop(tmp_path, monkeypatch)
    out = tmp_path / "plan.html"
    made = _syncer("--config", str(config), "plan", "--format", "html", "--out", str(out))
    assert made.exit_code == 2, (made.stderr, made.exception)
    return out


def test_the_example_report_renders_its_tables_and_charts_in_chromium(
        browser: Browser, example_page: Path) -> None:
    browser.open(example_page)
    tables = browser.evaluate(
        "Array.from(document.querySelectorAll('table')).map(t => [t.id, t.tBodies[0].rows.length])")
    assert dict(tables) == {"stores": 2, "changes": 32, "queue": 2, "rejections": 2}
    charts = browser.evaluate(
        "Array.from(document.querySelectorAll('figure')).map(f => [f.querySelector("
        "'figcaption').textContent, f.querySelectorAll('svg rect.bar, svg polyline.queue, "
        "svg rect.bin').length, f.querySelector('svg').getBoundingClientRect().height])")
    assert [c[0] for c in charts] == ["Changes by kind per store", "The budget queue draining",
                                      "Price moves (28 prices changed)"]
    assert [c[1] for c in charts] == [8, 2, 12]  # 2 stores x 4 kinds, 2 stores, 12 bins
    assert all(c[2] > 100 for c in charts)  # laid out, not collapsed
    bins = browser.evaluate(
        "Array.from(document.querySelectorAll('svg rect.bin')).map(r => r.textContent)")
    assert sum(int(b.rsplit(": ", 1)[1]) for b in bins) == 28
    shot = browser.screenshot(ARTIFACTS / "report-example.png", height=1000)  # docs/report.png
    full = browser.screenshot(ARTIFACTS / "report-example-full.png", full_page=True)
    print(f"\nscreenshots: {shot} {full}")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_clicking_a_header_sorts_the_rows_and_again_reverses_them(
        browser: Browser, example_page: Path) -> None:
    browser.open(example_page)
    column = "Array.from(document.querySelector('#changes').tBodies[0].rows).map(r => " \
             "r.cells[{}].textContent)"
    before = browser.evaluate(column.format(2))
    browser.click("#changes thead th:nth-child(3)")  # SKU
    skus = browser.evaluate(column.format(2))
    assert skus == sorted(before, key=str.lower) and skus != before
    browser.click("#changes thead th:nth-child(3)")
    assert browser.evaluate(column.format(2)) == sorted(before, key=str.lower, reverse=True)
    browser.click("#changes thead th:nth-child(4)")  # row: numeric, not text order
    cells = browser.evaluate(column.format(3))
    assert cells[0] == ""  # the zero of an offer gone from the catalog has no row
    rows = [int(r) for r in cells[1:]]
    assert rows == sorted(rows) and rows[0] < 10 < rows[-1]
    assert browser.evaluate("document.querySelector('#changes thead th:nth-child(4)')"
                            ".getAttribute('aria-sort')") == "ascending"


def test_typing_in_the_filter_hides_the_rows_without_it(browser: Browser,
                                                        example_page: Path) -> None:
    browser.open(example_page)
    browser.type("input[data-filter=changes]", "iph13-128")
    shown = browser.evaluate(
        "Array.from(document.querySelector('#changes').tBodies[0].rows).filter(r => "
        "!r.hidden && r.offsetHeight > 0).map(r => r.cells[0].textContent + ' ' + "
        "r.cells[2].textContent)")
    assert sorted(shown) == ["de IPH13-128-BLK", "fr IPH13-128-BLK"]
    assert browser.evaluate("document.querySelector('[data-count=changes]').textContent") \
        == "2 of 32 rows"
    browser.screenshot(ARTIFACTS / "report-example-filtered.png")


def test_a_hostile_catalog_cell_does_not_run_in_the_browser(
        browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    config = write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 'state.db'}")
    names = HEADER.split(";")
    rows = [dict.fromkeys(names, "") | {"sku": sku, "ean": ean, "grade": "GOOD", "stock": "3",
                                        "safety_stock": "0", "price_fr": "100.00",
                                        "price_de": "110.00", "warranty_fr": "12",
                                        "warranty_de": "12", "comment_fr": HOSTILE_COMMENT}
            for sku, ean in ((HOSTILE_SKU, "4006381333931"), (INVISIBLE_SKU, "4006381333931"),
                             ("BAD-EAN", HOSTILE_EAN))]
    with (tmp_path / "catalog.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, names, delimiter=";")
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "hostile.html"
    made = _syncer("--config", str(config), "plan", "--format", "html", "--out", str(out))
    assert made.exit_code == 2, (made.stderr, made.exception)
    browser.open(out)
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.images.length") == 0
    assert browser.evaluate("document.scripts.length") == 1
    text = browser.evaluate("document.body.innerText")
    assert HOSTILE_COMMENT in text  # shown as the text it is
    assert HOSTILE_EAN in text
    assert "ZW<U+200B>SP-1" in text
    # The hostile SKU is a value the page shows (as a change or as a rejected SKU).
    assert HOSTILE_SKU in text
    browser.type("input[data-filter=changes]", "<script>")
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    browser.screenshot(ARTIFACTS / "report-hostile.png", full_page=True)


def test_the_pages_policy_stops_markup_that_escaped_the_escaping(
        browser: Browser, tmp_path: Path) -> None:
    """Defence in depth, and proof that the hostile test can see a script run: the same
    injected markup runs in the page without its Content-Security-Policy, not with it."""
    page = plan_html(Plan.from_dict(_plan_dict([("A", "1.00", "2.00")])),
                     {"fr": Budget("eu", 2000)})
    injected = ('<img src=x onerror="window.__pwned=(window.__pwned||0)+1">'
                "<script>window.__pwned=(window.__pwned||0)+1</script>")
    guarded = tmp_path / "guarded.html"
    guarded.write_text(page.replace("<body>\n", "<body>\n" + injected), encoding="utf-8")
    open_page = tmp_path / "open.html"
    open_page.write_text(guarded.read_text(encoding="utf-8").replace(
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">', ""), encoding="utf-8")
    browser.open(open_page)
    browser.evaluate(IMAGES_SETTLED)
    assert browser.evaluate("window.__pwned") == 2
    browser.open(guarded)
    browser.evaluate(IMAGES_SETTLED)
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    # The page's own script still runs under the policy: a header click sorts.
    browser.click("#changes thead th:nth-child(3)")
    assert browser.evaluate("document.querySelector('#changes thead th:nth-child(3)')"
                            ".getAttribute('aria-sort')") == "ascending"


def test_the_run_report_renders_and_filters_in_chromium(
        browser: Browser, tmp_path: Path, emulator: EmulatorServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    page = _run_report(tmp_path, emulator, monkeypatch)
    browser.open(page)
    assert browser.evaluate("typeof window.__pwned") == "undefined"
    assert browser.evaluate("document.querySelectorAll('svg').length") == 2
    browser.type("input[data-filter=queue]", "f-6")
    assert browser.evaluate("document.querySelector('[data-count=queue]').textContent") \
        == "1 of 2 rows"
    browser.screenshot(ARTIFACTS / "report-run.png", full_page=True)


# --- helpers -------------------------------------------------------------------------------------

def _syncer(*args: str) -> Result:
    return CliRunner().invoke(cli, ["--log-format", "json", *args])


def _example_shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: bool = True,
                  spent_ago: timedelta = timedelta(0)) -> Path:
    """The bundled example (its configuration and catalog) on a state where most offers are
    live at other prices, one offer left the catalog, one waited in the queue, and 3 of the
    hour's 8 SKU lines are spent (``spent_ago``): the page then shows every kind of change
    and a queue."""
    shop = tmp_path / "shop"
    shop.mkdir()
    for name in ("syncer.toml", "catalog.csv"):
        shutil.copy(EXAMPLES / name, shop / name)
    monkeypatch.setenv("SYNCER_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    monkeypatch.setenv("SYNCER_LIMITS__SKU_LINES_PER_HOUR", "8")
    monkeypatch.setenv("BACKMARKET_TOKEN_EU", TOKEN)
    config = shop / "syncer.toml"
    if seed:
        _seed(load_settings(config), datetime.now(UTC) - spent_ago)
    return config


MOVES = tuple(Decimal(m) for m in ("0.93", "1.04", "0.98", "1.12", "0.75", "1.01", "0.995",
                                   "1.3", "0.89", "1.06", "1.6", "0.6"))


def _seed(settings: Settings, spent_at: datetime) -> None:
    with StateStore.open(settings.state_database_url()) as state:
        first = make_plan(settings, settings.selected_stores(None), catalog_source(settings),
                          state)
        for number, change in enumerate(first.changes):
            if number % 10 == 4:
                continue  # never published: still a create
            published = list(change.target)
            old = Decimal(str(published[PRICE])) / MOVES[number % len(MOVES)]
            published[PRICE] = str(old.quantize(Decimal("0.01")))
            if number % 3 == 0:
                published[QUANTITY] = int(published[QUANTITY] or 0) + 2
            state.offers.record_acks(change.store,
                                     [Ack(change.sku, tuple(published), f"L{number}")])
            if number == 0:  # a listing whose SKU left the catalog: zeroed
                state.offers.record_acks(change.store, [Ack("RETIRED-1", tuple(published), "L-R")])
        waiting = next(c for n, c in enumerate(first.changes) if n % 10 == 4)
        state.queue.enqueue(waiting.store,
                            [(waiting.sku, "the hourly budget of 8 SKU lines is used up")])
        account = settings.store("fr").budget_key
        assert state.budget.spend(account, 3, 8, spent_at) == 3


def _plan_dict(prices: list[tuple[str, str | None, str]], *, comment: str = "",
               rejections: list[dict[str, object]] | None = None) -> dict[str, object]:
    """A saved plan (its JSON) of price changes on store fr: (sku, old, new), old None for a
    new offer."""
    changes = []
    for sku, old, new in prices:
        target = dict.fromkeys(FIELDS) | {"grade": "GOOD", "quantity": 1, "price": new,
                                          "currency": "EUR", "comment": comment}
        changes.append({
            "store": "fr", "sku": sku, "action": "create" if old is None else "update",
            "row": 2, "listing_id": None, "new_offer": old is None, "target": target,
            "fields": {} if old is None else {"price": {"old": old, "new": new}}
            | ({"comment": {"old": "", "new": comment}} if comment else {})})
    return {"format": 1, "created_at": "2026-12-04T10:00:00+00:00", "catalog": "c.csv",
            "mapping": "default",
            "stores": [{"store": "fr", "locale": "fr-fr", "revision": 0, "live": 0,
                        "summary": {"unchanged": 0, "rejected": 0}}],
            "changes": changes, "rejections": rejections or []}


def _without_date(page: str) -> str:
    return re.sub(r"<p class=meta>made [^ ]+", "<p class=meta>made", page)


def _table_rows(page: str, table_id: str) -> list[list[str]]:
    """The cells' text of a table of the page (its HTML is this module's own, regular)."""
    import html

    body = page.split(f'<table id="{table_id}"', 1)[1].split("</tbody>", 1)[0]
    return [[html.unescape(re.sub(r"<[^>]+>", "", cell))
             for cell in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", body.split("<tbody>", 1)[1])]

