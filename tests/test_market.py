"""The market view (issue 15, parts 1 and 2): BackBox reads over loopback, their limit, the
state that keeps them, which listings a pass reads first, and `syncer market`."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from syncer.backmarket.client import BackMarketClient
from syncer.backmarket.limits import ApiLimits, RateLimiter
from syncer.backmarket.transport import Transport
from syncer.core.competition import Competition
from syncer.emulator.market import backbox
from syncer.emulator.server import EmulatorServer
from syncer.errors import ApiError
from syncer.market.view import Candidate, market_pass, read_order
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row
from tests.helpers import Shop

UA = "BM-Tests-suite;tests@example.com"
COMPETITORS = "/ws/backbox/v1/competitors/"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer) -> Shop:
    return Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}",
                stores=(("fr", "fr-fr"),))


def competitor_calls(server: EmulatorServer) -> list[Any]:
    return [e for e in server.emulator.exchanges if e.path.startswith(COMPETITORS)]


def admin(server: EmulatorServer, path: str, body: dict[str, Any]) -> Any:
    response = httpx.post(f"{server.base_url}/_emulator/{path}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def market_json(shop: Shop, *args: str) -> dict[str, Any]:
    return json.loads(shop.run("market", "--format", "json", *args).stdout)  # type: ignore[no-any-return]


def test_a_competitor_below_us_shows_the_backbox_lost_until_our_price_is_lowered(
        shop: Shop, emulator: EmulatorServer) -> None:
    shop.catalog([catalog_row("A-1", price_fr="409.00"), catalog_row("B-2", price_fr="250.00")])
    shop.run("apply")
    admin(emulator, "market", {"token": TOKEN, "sku": "A-1", "market": "FR",
                               "price": "399.00", "seller": "cheaper"})

    before = market_json(shop)  # nothing read yet: the state is shown as it is
    assert {row["is_winning"] for row in before["listings"]} == {None}

    report = market_json(shop, "--refresh")
    rows = {row["sku"]: row for row in report["listings"]}
    assert rows["A-1"]["is_winning"] is False
    assert rows["A-1"]["price"] == "409.00"
    assert rows["A-1"]["price_to_win"] == "398.99"
    assert rows["A-1"]["winner_price"] == "399.00"
    assert rows["A-1"]["suggested_price"] == "409.00"
    assert rows["A-1"]["reason"] == "no pricing rules: catalog price"
    assert rows["A-1"]["floor"] is None and rows["A-1"]["ceiling"] is None
    assert rows["B-2"]["is_winning"] is True  # nobody else sells it
    summary = report["stores"][0]
    assert (summary["held"], summary["lost"], summary["cost_to_win"]) == (1, 1, "10.01")

    text = shop.run("market").stdout
    assert "1 BackBoxes held, 1 lost (winning them: 10.01 EUR less margin a unit)" in text
    assert "A-1 [FR] LOST: ours 409.00, to win 398.99, winner 399.00" in text

    # A real apply lowers our price; the next refresh sees the BackBox won.
    shop.catalog([catalog_row("A-1", price_fr="398.99"), catalog_row("B-2", price_fr="250.00")])
    shop.run("apply")
    rows = {row["sku"]: row for row in market_json(shop, "--refresh")["listings"]}
    assert rows["A-1"]["is_winning"] is True
    assert rows["A-1"]["winner_price"] == "398.99"

    calls = competitor_calls(emulator)
    assert len(calls) == 4 and all(call.status == 200 for call in calls)
    assert emulator.emulator.stats["rate_limited"] == 0


def test_competitor_reads_never_exceed_two_a_second(shop: Shop, emulator: EmulatorServer
                                                    ) -> None:
    shop.catalog([catalog_row(f"S-{i}", ean=ean) for i, ean in enumerate(EANS)])
    shop.run("apply")
    shop.run("market", "--refresh")
    calls = competitor_calls(emulator)
    assert len(calls) == len(EANS)
    assert all(call.status == 200 for call in calls), [c.status for c in calls]
    assert emulator.emulator.market_book.rate_limited == 0
    times = [call.at for call in calls]
    for first, third in zip(times, times[2:], strict=False):
        assert third - first >= 1.0  # never 3 in one second


def test_the_emulator_refuses_a_third_call_in_one_second(emulator: EmulatorServer) -> None:
    listing_id = "7e1f4a8d-b1bb-47aa-9f77-2cca759eb41b"
    headers = {"Authorization": f"Basic {TOKEN}", "User-Agent": UA,
               "Accept-Language": "fr-fr"}
    with httpx.Client(base_url=emulator.base_url, headers=headers) as http:
        statuses = [http.get(COMPETITORS + listing_id).status_code for _ in range(3)]
    assert statuses == [404, 404, 429]
    assert emulator.emulator.market_book.rate_limited == 1


HOSTILE = [
    ("is_winning", "yes", "0.is_winning"),
    ("price", {"amount": "NaN", "currency": "EUR"}, "0.price.amount"),
    ("price_to_win", {"amount": "1" * 400, "currency": "EUR"}, "0.price_to_win.amount"),
    ("price", {"amount": 399.0, "currency": "EUR"}, "0.price.amount"),
    ("winner_price", {"amount": "9999999.00", "currency": "EUR"}, "0.winner_price.amount"),
    ("market", 33, "0.market"),
    ("price_to_win", {"amount": "1.00", "currency": "GBP"}, "0.price_to_win.currency"),
]


@pytest.mark.parametrize(("name", "value", "field"), HOSTILE)
def test_a_hostile_competitors_answer_is_one_clear_error(name: str, value: Any,
                                                         field: str) -> None:
    entry = {"listing_id": "7e1f4a8d-b1bb-47aa-9f77-2cca759eb41b",
             "product_id": "1b2c3d4e-1111-2222-3333-444455556666", "market": "FR",
             "price": {"amount": "409.00", "currency": "EUR"}, "min_price": None,
             "price_to_win": {"amount": "398.99", "currency": "EUR"},
             "winner_price": {"amount": "399.00", "currency": "EUR"}, "is_winning": False,
             name: value}
    http = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json=[entry])))
    client = BackMarketClient(Transport("https://www.backmarket.fr", SecretStr(TOKEN), "fr-fr", UA,
                                        http=http, max_retries=0))
    with pytest.raises(ApiError) as caught:
        client.competitors(entry["listing_id"])
    message = str(caught.value)
    assert message.startswith("GET /ws/backbox/v1/competitors/{id}: unexpected answer")
    assert f"field {field}" in message and "\n" not in message and len(message) < 300


def test_a_competitors_answer_that_is_not_a_list_is_one_clear_error() -> None:
    http = httpx.Client(transport=httpx.MockTransport(
        lambda request: httpx.Response(200, json={"results": []})))
    client = BackMarketClient(Transport("https://www.backmarket.fr", SecretStr(TOKEN), "fr-fr", UA,
                                        http=http, max_retries=0))
    with pytest.raises(ApiError, match="expected a list of competitors"):
        client.competitors("7e1f4a8d-b1bb-47aa-9f77-2cca759eb41b")


def test_a_hostile_answer_in_a_pass_is_counted_and_the_others_are_read(
        shop: Shop, emulator: EmulatorServer, tmp_path: Path) -> None:
    shop.catalog([catalog_row("A-1"), catalog_row("B-2", ean="4006381333948")])
    shop.run("apply")
    bad = shop.live("A-1", "fr-fr")
    assert bad is not None

    def handler(request: httpx.Request) -> httpx.Response:
        if bad["id"] in request.url.path:
            return httpx.Response(200, json=[{"listing_id": bad["id"], "is_winning": "no"}])
        return httpx.Response(200, json=[])

    client = BackMarketClient(Transport("https://www.backmarket.fr", SecretStr(TOKEN), "fr-fr", UA,
                                        http=httpx.Client(transport=httpx.MockTransport(handler))))
    with StateStore.open(shop.state_url) as state:
        result = market_pass(client, state.market, account="EU@x", store="fr", locale="fr-fr",
                             every=timedelta(minutes=60), seconds=60)
    assert (result.read, result.failed) == (1, 1)
    assert "field 0.market: Field required" in result.errors[0]


def test_market_refresh_says_a_hostile_answer_in_one_line_and_exits_1(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncer.emulator.config import EmulatorConfig
    from syncer.emulator.market import MarketBook

    honest = MarketBook.entries

    def hostile(self: MarketBook, token: str, listing: Any) -> list[dict[str, Any]]:
        return [{**entry, "is_winning": "maybe", "price_to_win": {"amount": "NaN"}}
                for entry in honest(self, token, listing)]

    # Not the checked emulator: its answers would fail the spec's contract, on purpose.
    with EmulatorServer(EmulatorConfig(tokens=(TOKEN,), task_delay=0.01)) as server:
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}",
                    stores=(("fr", "fr-fr"),))
        shop.catalog([catalog_row("A-1")])
        shop.run("apply")
        monkeypatch.setattr(MarketBook, "entries", hostile)
        result = shop.run("market", "--refresh", code=1)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: GET /ws/backbox/v1/competitors/{id}: unexpected answer from "
                      "Back Market: field 0.price_to_win.amount: expected a decimal string "
                      "such as \"399.00\" (got 'NaN')"]
    assert "Traceback" not in result.output
    assert "A-1 [FR] not read" in result.stdout


# --- which listings a pass reads first -------------------------------------------------------

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def candidate(listing: str, quantity: int = 1, *, read: float | None = 120,
              losing: bool | None = False, changed: float = 600) -> Candidate:
    return Candidate(listing, listing, quantity, NOW - timedelta(minutes=changed),
                     None if read is None else NOW - timedelta(minutes=read), losing)


def test_a_pass_reads_stock_and_losing_listings_first_then_the_oldest() -> None:
    order = read_order([
        candidate("zero-stock-losing", 0, losing=True),
        candidate("winning-old", read=300),
        candidate("winning", read=120),
        candidate("losing", losing=True, read=90),
        candidate("never-read", read=None, losing=None),
        candidate("changed-since", read=120, changed=30),
        candidate("fresh", read=5),  # read within the cadence, unchanged: not due
    ], NOW, timedelta(minutes=60))
    assert [c.listing_id for c in order] == [
        "never-read", "changed-since", "losing", "winning-old", "winning",
        "zero-stock-losing"]


def test_a_fresh_listing_changed_since_its_read_is_due_again() -> None:
    order = read_order([candidate("fresh", read=5, changed=1)], NOW, timedelta(minutes=60))
    assert [c.listing_id for c in order] == ["fresh"]


class _Reader:
    def __init__(self) -> None:
        self.read: list[str] = []

    def competitors(self, listing_id: str, *, read_at: datetime | None = None
                    ) -> list[Competition]:
        self.read.append(listing_id)
        return [Competition(listing_id, "FR", "EUR", Decimal("10"), None, Decimal("9.99"),
                            Decimal("10"), True, read_at or NOW)]


class _State:
    def __init__(self, quantities: dict[str, int]) -> None:
        self.quantities = quantities
        self.saved: dict[tuple[str, str], Competition] = {}

    def market_listings(self, store: str) -> list[Any]:
        return [(k, k, q, "10.00", "EUR", NOW - timedelta(days=1))
                for k, q in self.quantities.items()]

    def competition(self, account: str) -> dict[tuple[str, str], Competition]:
        return dict(self.saved)

    def save_competition(self, account: str, items: Any) -> None:
        self.saved.update({(c.listing_id, c.market): c for c in items})


def test_a_pass_stops_at_its_read_limit_and_the_next_one_resumes() -> None:
    state = _State({"a": 0, "b": 3, "c": 1, "d": 2})
    reader = _Reader()
    clock = iter(range(100))
    first = market_pass(reader, state, account="x", store="fr", locale="fr-fr",
                        every=timedelta(minutes=60), seconds=1000, max_reads=2,
                        now=lambda: NOW, clock=lambda: float(next(clock)))
    assert (first.read, first.left) == (2, 2)
    assert reader.read == ["b", "c"]  # stock first
    second = market_pass(reader, state, account="x", store="fr", locale="fr-fr",
                         every=timedelta(minutes=60), seconds=1000, max_reads=2,
                         now=lambda: NOW, clock=lambda: 0.0)
    assert reader.read[2:] == ["d", "a"] and second.left == 0


def test_a_pass_stops_when_its_time_is_up() -> None:
    state = _State({"a": 1, "b": 1, "c": 1})
    reader = _Reader()
    ticks = iter([0.0, 0.0, 5.0, 11.0, 12.0])
    result = market_pass(reader, state, account="x", store="fr", locale="fr-fr",
                         every=timedelta(minutes=60), seconds=10,
                         now=lambda: NOW, clock=lambda: next(ticks))
    assert (result.read, result.left) == (2, 1)


def test_the_backbox_limiter_holds_competitor_reads_to_two_a_window() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limits = ApiLimits(RateLimiter(150, 10, lambda: now[0], sleep),
                       backbox=RateLimiter(2, 1.1, lambda: now[0], sleep))
    for _ in range(5):
        limits.acquire("GET", "/ws/backbox/v1/competitors/x")
    assert now[0] == pytest.approx(2.2)
    assert limits.is_backbox("GET", "/ws/backbox/v1/competitors/x")
    assert not limits.is_backbox("GET", "/ws/listings")
    assert len(limits.general.history(100.0)) == 5  # the general limit counts them too


# --- the emulator's model ---------------------------------------------------------------------

def test_the_backbox_goes_to_the_best_quality_per_price() -> None:
    from syncer.emulator.market import Rival

    rival = [Rival("r", Decimal("399.00"), Decimal("0.9"))]
    to_win, winner, winning = backbox(Decimal("409.00"), Decimal(1), True, rival)
    assert to_win == Decimal("443.33")  # 399 / 0.9, rounded down: better quality wins above
    assert (winner, winning) == (Decimal("409.00"), True)
    to_win, winner, winning = backbox(Decimal("409.00"), Decimal(1), False, rival)
    assert (winner, winning) == (Decimal("399.00"), False)  # out of stock: not competing
    assert backbox(Decimal("5"), Decimal(1), True, []) == (Decimal("5"), Decimal("5"), True)


# --- the state --------------------------------------------------------------------------------

def test_competition_is_kept_with_its_read_time_and_a_read_replaces_the_older(
        state_url: str) -> None:
    first = Competition("L1", "FR", "EUR", Decimal("409.00"), None, Decimal("398.99"),
                        Decimal("399.00"), False, NOW)
    later = Competition("L1", "FR", "EUR", Decimal("398.99"), Decimal("390.00"),
                        Decimal("398.99"), Decimal("398.99"), True, NOW + timedelta(hours=1))
    with StateStore.open(state_url) as state:
        state.market.save_competition("EU@host", [first])
        state.market.save_competition("EU@host", [later,
                                                  Competition("L1", "DE", "EUR", Decimal("1"), None,
                                                       Decimal("1"), None, True, NOW)])
        assert state.market.competition("EU@host")[("L1", "FR")] == later
        assert state.market.competition("EU@host")[("L1", "DE")].winner_price is None
        assert state.market.competition("other") == {}


def test_a_read_only_state_made_before_the_competition_table_reads_as_empty(
        tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{tmp_path / 'state.db'}"
    StateStore.open(url).close()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE listing_competition"))
    engine.dispose()
    with StateStore.open_readonly(url) as state:
        assert state.market.competition("EU@host") == {}


# --- formats ----------------------------------------------------------------------------------

def test_market_csv_neutralises_formulas_and_markdown_has_a_table(
        shop: Shop, emulator: EmulatorServer) -> None:
    shop.catalog([catalog_row("=HYPERLINK(1)", price_fr="100.00")])
    shop.run("apply")
    shop.run("market", "--refresh")
    rows = list(csv.reader(io.StringIO(shop.run("market", "--format", "csv").stdout),
                           delimiter=";"))
    assert rows[0][:4] == ["store", "sku", "listing_id", "market"]
    assert rows[1][1] == "'=HYPERLINK(1)" and rows[1][9] == "yes"
    markdown = shop.run("market", "--format", "markdown").stdout
    assert "| SKU | market | BackBox |" in markdown and "WINNING" in markdown


def test_a_scheduled_run_reads_the_market_when_watched(tmp_path: Path,
                                                       emulator: EmulatorServer) -> None:
    shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}",
                stores=(("fr", "fr-fr"),))
    text = shop.config.read_text(encoding="utf-8")
    shop.config.write_text(text.replace('token_env = "SYNCER_TEST_TOKEN"',
                                        'token_env = "SYNCER_TEST_TOKEN"\nwatch_market = true\n'
                                        'reconcile = false'), encoding="utf-8")
    shop.catalog([catalog_row("A-1")])
    out = shop.run("run").stdout
    assert "Store fr market: 1 due, 1 read" in out
    assert len(competitor_calls(emulator)) == 1
    assert "market" in shop.run("run").stdout  # nothing due: "market 20.. (in 60 min)"


EANS = ["4006381333931", "4006381333948", "4006381333955", "4006381333962", "4006381333979",
        "4006381333986"]


# --- the public shop (parse.bot) ---------------------------------------------------------------

SHOP_KEY = "shopkey-0a9b8c7d6e5f-SECRET"


def test_the_public_shop_view_shows_grade_prices_within_the_monthly_credits(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from syncer.emulator.shop import ShopEmulator, ShopServer

    monkeypatch.setenv("SYNCER_SHOP_KEY", SHOP_KEY)
    shop_api = ShopEmulator(emulator.emulator, keys=(SHOP_KEY,), requests_per_minute=20)
    with ShopServer(shop_api) as server:
        shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}",
                    stores=(("fr", "fr-fr"),),
                    extra=f'[market.shop]\nbase_url = "{server.base_url}"\n'
                          'requests_per_minute = 20\nmonthly_credits = 2\n')
        shop.catalog([catalog_row("A-1", price_fr="409.00")])
        shop.run("apply")
        listing = shop.live("A-1", "fr-fr")
        assert listing is not None
        product = listing["product_id"]
        admin(emulator, "market", {"token": TOKEN, "sku": "A-1", "market": "FR",
                                   "undercut": "10", "seller": "rival"})
        url = f"https://www.backmarket.fr/fr-fr/p/iphone-15/{product}"

        first = market_json(shop, "--refresh", "--product", url)
        view = first["shop"][0]
        assert view["starting_price"] == "399.00"
        assert view["grades"] == [{"label": "Parfait état", "price": "399.00",
                                   "currency": "EUR"}]
        assert view["in_stock"] is True and view["rating"] == 4.5
        assert view["credits_spent_this_month"] == 1

        shop.run("market", "--refresh", "--product", product)  # the 2nd credit
        third = shop.run("market", "--refresh", "--product", product, code=1)
        assert "credits of" in third.stdout and "are spent" in third.stdout
        assert SHOP_KEY not in third.output + third.stderr
        assert len(shop_api.exchanges) == 2  # past the allowance, nothing is sent
        # Without --refresh: the last view, with its age, no credit spent.
        cached = market_json(shop, "--product", product)["shop"][0]
        assert cached["starting_price"] == "399.00" and cached["age_seconds"] >= 0
        assert len(shop_api.exchanges) == 2
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.name != ".env":
            assert SHOP_KEY.encode() not in path.read_bytes()


def test_the_scheduled_pass_reads_stock_holding_and_losing_listings_first(
        tmp_path: Path, emulator: EmulatorServer) -> None:
    import time

    shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}",
                stores=(("fr", "fr-fr"),), extra="[market]\nmax_reads = 2\n")
    text = shop.config.read_text(encoding="utf-8")
    shop.config.write_text(text.replace(
        'token_env = "SYNCER_TEST_TOKEN"',
        'token_env = "SYNCER_TEST_TOKEN"\nwatch_market = true\nmarket_every_minutes = 0.01\n'
        'reconcile = false'), encoding="utf-8")
    shop.catalog([catalog_row("A-1"), catalog_row("B-2", ean="4006381333948", stock="0"),
                  catalog_row("C-3", ean="4006381333955")])
    shop.run("apply")
    ids = {sku: (shop.live(sku, "fr-fr") or {})["id"] for sku in ("A-1", "B-2", "C-3")}
    admin(emulator, "market", {"token": TOKEN, "sku": "C-3", "market": "FR",
                               "undercut": "5"})

    def read_by_the_next_run() -> list[str]:
        seen = len(competitor_calls(emulator))
        assert "Store fr market: 3 due, 2 read" in shop.run("run").stdout
        by_id = {v: k for k, v in ids.items()}
        return [by_id[call.path.rsplit("/", 1)[1]] for call in competitor_calls(emulator)[seen:]]

    first = read_by_the_next_run()
    assert sorted(first) == ["A-1", "C-3"]  # with stock first: B-2 has none
    time.sleep(0.7)  # past market_every_minutes: every listing is due again
    assert read_by_the_next_run() == ["C-3", "A-1"]  # C-3 lost its BackBox: first
    assert all(call.status == 200 for call in competitor_calls(emulator))
