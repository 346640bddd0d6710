"""Orders end to end over loopback: pull, accept, ship through the real CLI and the emulator.

Pins the issue's promises: orders placed in the emulator are pulled (paged, since the last
pull minus an overlap), stored on SQLite and PostgreSQL and exported (CSV safe from formula
injection, JSON lines); paid lines are accepted by policy or cancelled from a file; shipments
go out with mapped carriers and IMEIs, and the emulator shows the orders shipped; rerunning
any command changes nothing; every bad shipment row is reported with its row and field and
nothing is sent for it, while the good rows go on. Every exchange with the emulator is checked
against Back Market's spec at teardown.
"""

from __future__ import annotations

import csv
import hashlib
import json
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import create_engine, text

from syncer.backmarket.client import BackMarketClient
from syncer.backmarket.transport import Transport
from syncer.config.settings import BUNDLED_MAPPINGS, load_settings
from syncer.emulator.config import EmulatorConfig
from syncer.emulator.emulator import Emulator
from syncer.emulator.server import EmulatorServer
from syncer.errors import ConfigError
from syncer.orders.files import check_imei, parse_line_choices, parse_shipments, shipper_for
from syncer.planning.cells import BadValue
from syncer.planning.mapping import load_profile
from syncer.reports.tables import csv_cell
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row, write_config
from tests.contract import check_exchange
from tests.helpers import Shop

IMEI_1 = "490154203237518"
IMEI_2 = "352099001761481"
BAD_IMEI = "490154203237517"  # one digit off: the Luhn check digit no longer matches
SHIP_HEADER = "order_id,carrier,tracking_number,tracking_url,imei,serial_number"
ORDER_TABLES = ("order_record", "order_line", "order_line_action", "order_shipment",
                "order_pull")


def make_shop(folder: Path, server: EmulatorServer, state_url: str,
              monkeypatch: pytest.MonkeyPatch, orders: str = "") -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    extra = "[orders]\n" + textwrap.dedent(orders) if orders else ""
    shop = Shop(folder, server, state_url, extra=extra)
    shop.catalog([catalog_row("A-1", stock="5"), catalog_row("B-2", stock="3"),
                  catalog_row("C-3", stock="4")])
    shop.run("apply")
    return shop


@pytest.fixture
def shop(tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> Shop:
    """A shop on a SQLite state (the flows that must hold on PostgreSQL too take
    ``state_url``)."""
    return make_shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state' / 'syncer.db'}",
                     monkeypatch)


def place(shop: Shop, lines: list[tuple[str, int]], country: str = "fr-fr",
          **kwargs: Any) -> int:
    order = shop.server.emulator.create_order(
        TOKEN, [{"sku": sku, "quantity": quantity} for sku, quantity in lines],
        country=country, **kwargs)
    return int(order["order_id"])


def write(shop: Shop, name: str, lines: list[str]) -> Path:
    path = shop.folder / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def order_posts(shop: Shop, since: int = 0) -> list[Any]:
    return [e for e in shop.server.emulator.exchanges[since:]
            if e.method == "POST" and e.path.startswith("/ws/orders/")]


def orders_fingerprint(url: str) -> str:
    """Every row of the order tables, hashed: any write to them shows."""
    engine = create_engine(url)
    digest = hashlib.sha256()
    with engine.connect() as conn:
        for table in ORDER_TABLES:
            for row in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2")):
                digest.update(repr(tuple(row)).encode())
    engine.dispose()
    return digest.hexdigest()


def emulator_orders(shop: Shop) -> dict[int, dict[str, Any]]:
    return {o["order_id"]: o for o in shop.server.emulator.orders(TOKEN)}


def line_states(order: dict[str, Any]) -> dict[str, int]:
    return {line["listing"]: line["state"] for line in order["orderlines"]}


# --- the whole flow ---------------------------------------------------------------------------

def test_orders_are_pulled_accepted_and_shipped_and_reruns_change_nothing(
        tmp_path: Path, emulator: EmulatorServer, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, state_url, monkeypatch)
    o1 = place(shop, [("A-1", 1)])
    o2 = place(shop, [("A-1", 1), ("C-3", 2)], country="de-de")
    o3 = place(shop, [("B-2", 1)])
    o4 = place(shop, [("B-2", 2)])
    o5 = place(shop, [("C-3", 1)], country="de-de")
    # The shop sold one B-2 elsewhere since: two left for three ordered.
    shop.catalog([catalog_row("A-1", stock="5"), catalog_row("B-2", stock="2"),
                  catalog_row("C-3", stock="4")])

    pulled = shop.run("orders", "pull").stdout
    assert "Store fr (own country): 3 orders" in pulled and "3 new" in pulled
    assert "Store de (own country): 2 orders" in pulled
    exports = sorted((shop.folder / "state" / "orders").glob("orders-*"))
    assert [p.suffix for p in exports] == [".csv", ".jsonl"]
    with exports[0].open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    assert sorted({int(r["order_id"]) for r in rows}) == [o1, o2, o3, o4, o5]
    assert len(rows) == 6  # one per orderline
    jsonl = [json.loads(line) for line in exports[1].read_text().splitlines()]
    assert {e["order"]["order_id"] for e in jsonl} == {o1, o2, o3, o4, o5}
    before = orders_fingerprint(shop.state_url)
    again = shop.run("orders", "pull").stdout
    assert "0 new, 0 changed, 3 unchanged" in again and "Nothing new to export." in again
    assert orders_fingerprint(shop.state_url) == before

    cancel = write(shop, "cancel.csv", ["order_id;sku", f"{o5};c-3"])
    accepted = shop.run("orders", "accept", "--cancel", str(cancel)).stdout
    assert f"CANCELLED row 2, order {o5}, SKU C-3" in accepted
    assert f"HELD      order {o4}, SKU B-2: catalog stock is 2 (1 already promised" \
        in accepted
    live = emulator_orders(shop)
    assert line_states(live[o1]) == {"A-1": 2} and live[o1]["state"] == 3
    assert line_states(live[o2]) == {"A-1": 2, "C-3": 2}
    assert line_states(live[o3]) == {"B-2": 2}
    assert line_states(live[o4]) == {"B-2": 1} and live[o4]["state"] == 1
    assert line_states(live[o5]) == {"C-3": 4} and live[o5]["state"] == 9
    posts, before = len(shop.server.emulator.exchanges), orders_fingerprint(shop.state_url)
    rerun = shop.run("orders", "accept", "--cancel", str(cancel)).stdout
    assert f"SKIPPED   row 2, order {o5}, SKU C-3: already cancelled" in rerun
    assert order_posts(shop, posts) == []
    assert orders_fingerprint(shop.state_url) == before

    shipments = write(shop, "shipments.csv", [
        "order_id;carrier;tracking_number;tracking_url;imei;serial_number",
        f"{o1};La Poste;6A0001;https://www.laposte.fr/outils/suivre-vos-envois?code=6A0001;"
        f"{IMEI_1};",
        f"{o2};dhl;JD0002;;;",
        f"{o3};Mondial Relay;MR0003;;;SN-0003",
    ])
    shipped = shop.run("orders", "ship", "--from", str(shipments)).stdout
    assert "Total: 3 shipped" in shipped
    live = emulator_orders(shop)
    assert (live[o1]["state"], live[o1]["shipper_display"], live[o1]["tracking_number"]) == \
        (9, "Colissimo", "6A0001")
    assert live[o1]["orderlines"][0]["imei"] == IMEI_1
    assert (live[o2]["state"], live[o2]["shipper_display"]) == (9, "DHL Express")
    assert line_states(live[o2]) == {"A-1": 3, "C-3": 3}
    assert (live[o3]["shipper_display"], live[o3]["orderlines"][0]["serial_number"]) == \
        ("Other", "SN-0003")
    posts, before = len(shop.server.emulator.exchanges), orders_fingerprint(shop.state_url)
    rerun = shop.run("orders", "ship", "--from", str(shipments)).stdout
    assert "Total: 3 skipped" in rerun and "already shipped" in rerun
    assert shop.server.emulator.exchanges[posts:] == []  # not even a read
    assert orders_fingerprint(shop.state_url) == before
    assert emulator_orders(shop) == live

    status = json.loads(shop.run("status", "--format", "json").stdout)
    kinds = {run["kind"] for entry in status for run in entry["last_runs"]}
    assert {"orders-pull", "orders-accept", "orders-ship"} <= kinds
    for output in (pulled, accepted, shipped):
        assert TOKEN not in output
    engine = create_engine(shop.state_url)
    with engine.connect() as conn:
        for table in ORDER_TABLES:
            assert TOKEN not in repr(conn.execute(text(f"SELECT * FROM {table}")).all())
    engine.dispose()


def test_bad_shipments_are_each_reported_and_nothing_is_sent_for_them(
        tmp_path: Path, emulator: EmulatorServer, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, state_url, monkeypatch, orders='carrier_fallback = ""')
    single = place(shop, [("A-1", 1)])
    double = place(shop, [("A-1", 1), ("B-2", 1)])
    third = place(shop, [("C-3", 1)])
    good = place(shop, [("C-3", 1)])
    fallback = place(shop, [("B-2", 1)])
    shop.run("orders", "pull")
    shop.run("orders", "accept")
    shipments = write(shop, "shipments.csv", [
        SHIP_HEADER,
        "999999,Colissimo,X1,,,",
        f"{single},Colissimo,X2,,{BAD_IMEI},",
        f"{double},Colissimo,X3,,{IMEI_2},",
        f"{third},Colissimo,,,,",
        f"{fallback},Pigeon Voyageur,X5,,,",
        f"{good},Colissimo,X6,,,",
    ])
    sent_before = len(shop.server.emulator.exchanges)
    result = shop.run("orders", "ship", "--from", str(shipments), code=3)
    out = result.stdout
    assert "row 2, order 999999: order_id: order 999999 is not in the state" in out
    assert f"row 3, order {single}: imei: '{BAD_IMEI}'; expected an IMEI with a valid " \
           "check digit" in out
    assert f"row 4, order {double}: imei: an imei is only sent for an order of one line of " \
           "quantity 1" in out and f"order {double} has 2 lines" in out
    assert f"row 5, order {third}: tracking_number: missing" in out
    assert f"row 6, order {fallback}: carrier: 'Pigeon Voyageur' is not in the carrier " \
           "table and no fallback is configured" in out
    assert f"SHIPPED   row 7, order {good}" in out
    assert "Total: 5 failed, 1 shipped" in out
    posts = order_posts(shop, sent_before)
    assert [p.path for p in posts] == [f"/ws/orders/{good}"]
    live = emulator_orders(shop)
    assert [live[o]["state"] for o in (single, double, third, fallback)] == [3, 3, 3, 3]
    assert live[single]["tracking_number"] == ""  # empty until shipped, as on Back Market


def test_a_shipper_column_is_sent_as_written_and_one_past_200_characters_is_refused(
        shop: Shop) -> None:
    # The spec's Shipper list is the known values, not a closed enum: the column is Back
    # Market's shipper name, free text, taking over from the carrier table.
    named = place(shop, [("A-1", 1)])
    too_long = place(shop, [("B-2", 1)])
    shop.run("orders", "pull")
    shop.run("orders", "accept")
    shipments = write(shop, "ship.csv", [
        "order_id,carrier,tracking_number,shipper",
        f"{named},,RM0001GB,Velocargo Same Day",
        f"{too_long},Royal Mail,RM0002GB,{'R' * 201}"])
    out = shop.run("orders", "ship", "--from", str(shipments), code=3).stdout
    assert f"SHIPPED   row 2, order {named}: Velocargo Same Day, tracking RM0001GB" in out
    assert f"row 3, order {too_long}: shipper: 201 characters; expected Back Market's shipper " \
           "name of at most 200 characters" in out
    live = emulator_orders(shop)
    assert (live[named]["shipper"], live[named]["tracking_number"]) == \
        ("Velocargo Same Day", "RM0001GB")
    assert live[too_long]["state"] == 3


def test_an_imei_for_two_units_or_a_serial_for_two_lines_is_refused_and_not_sent(
        shop: Shop) -> None:
    # Back Market takes an IMEI or a serial number only on an order of one line of quantity
    # 1, and never lets it be corrected: our side refuses the row before sending anything.
    pair = place(shop, [("A-1", 2)])
    several = place(shop, [("B-2", 1), ("C-3", 1)])
    shop.run("orders", "pull")
    shop.run("orders", "accept")
    shipments = write(shop, "ship.csv", [SHIP_HEADER, f"{pair},Colissimo,X1,,{IMEI_1},",
                                         f"{several},Colissimo,X2,,,SN-0002"])
    before = len(shop.server.emulator.exchanges)
    out = shop.run("orders", "ship", "--from", str(shipments), code=3).stdout
    assert f"row 2, order {pair}: imei: an imei is only sent for an order of one line of " \
           "quantity 1 (Back Market cannot correct it afterwards); order " \
           f"{pair} has one line of quantity 2. Nothing was sent: leave it empty to ship " \
           "without it" in out
    assert f"row 3, order {several}: serial_number: a serial_number is only sent for an " \
           f"order of one line of quantity 1 (Back Market cannot correct it afterwards); " \
           f"order {several} has 2 lines." in out
    assert "Total: 2 failed" in out
    assert shop.server.emulator.exchanges[before:] == []  # not even a read
    live = emulator_orders(shop)
    assert [live[o]["state"] for o in (pair, several)] == [3, 3]
    assert {(line["imei"], line["serial_number"]) for o in (pair, several)
            for line in live[o]["orderlines"]} == {("", "")}

    # Without the identifier, the same orders ship.
    shipments = write(shop, "ship.csv", [SHIP_HEADER, f"{pair},Colissimo,X1,,,",
                                         f"{several},Colissimo,X2,,,"])
    assert "Total: 2 shipped" in shop.run("orders", "ship", "--from", str(shipments)).stdout
    assert [emulator_orders(shop)[o]["state"] for o in (pair, several)] == [9, 9]


def test_shipment_of_an_order_with_lines_to_accept_is_refused_before_sending(
        shop: Shop) -> None:
    waiting = place(shop, [("A-1", 1)])
    shop.run("orders", "pull")
    shipments = write(shop, "ship.csv", [SHIP_HEADER, f"{waiting},UPS,1Z999,,,"])
    before = len(shop.server.emulator.exchanges)
    out = shop.run("orders", "ship", "--from", str(shipments), code=3).stdout
    assert "order_id: the order still has 1 paid line(s) to accept or cancel" in out
    assert shop.server.emulator.exchanges[before:] == []


def test_order_unknown_to_back_market_is_reported(shop: Shop) -> None:
    gone = place(shop, [("A-1", 1)])
    shop.run("orders", "pull")
    shop.run("orders", "accept")
    shop.server.emulator.reset()  # Back Market no longer knows any order of this seller
    shipments = write(shop, "ship.csv", [SHIP_HEADER, f"{gone},UPS,1Z999,,,"])
    out = shop.run("orders", "ship", "--from", str(shipments), code=3).stdout
    assert f"order_id: order {gone} is unknown to Back Market" in out
    assert order_posts(shop) == []


# --- accept policies --------------------------------------------------------------------------

def test_manual_policy_accepts_only_the_listed_lines(
        tmp_path: Path, emulator: EmulatorServer, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, state_url, monkeypatch,
                     orders='accept_policy = "manual"')
    listed = place(shop, [("A-1", 1), ("B-2", 1)])
    other = place(shop, [("C-3", 1)])
    shop.run("orders", "pull")
    choices = write(shop, "accept.csv", ["order_id,sku", f"{listed},a-1", f"{listed},NOPE",
                                         "x,A-1"])
    out = shop.run("orders", "accept", "--accept", str(choices), code=3).stdout
    assert f"ACCEPTED  row 2, order {listed}, SKU A-1" in out
    assert f"row 3, order {listed}, SKU NOPE: sku: order {listed} has no line with this SKU" \
        in out
    assert "row 4: order_id: 'x'; expected a Back Market order id" in out
    assert f"HELD      order {listed}, SKU B-2: accept policy is manual" in out
    assert f"HELD      order {other}, SKU C-3" in out
    live = emulator_orders(shop)
    assert line_states(live[listed]) == {"A-1": 2, "B-2": 1}
    assert line_states(live[other]) == {"C-3": 1}


def test_a_line_shipped_since_it_was_accepted_is_skipped_not_accepted_again(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}", monkeypatch,
                     orders='accept_policy = "manual"')
    order = place(shop, [("A-1", 1)])
    shop.run("orders", "pull")
    choices = write(shop, "accept.csv", ["order_id,sku", f"{order},A-1"])
    shop.run("orders", "accept", "--accept", str(choices))
    shipments = write(shop, "shipments.csv", ["order_id;carrier;tracking_number",
                                              f"{order};dhl;JD0001"])
    shop.run("orders", "ship", "--from", str(shipments))
    shop.run("orders", "pull")
    assert line_states(emulator_orders(shop)[order]) == {"A-1": 3}
    sent = len(emulator.emulator.exchanges)
    # The same acceptance file again (a rerun of yesterday's job): nothing to do.
    out = shop.run("orders", "accept", "--accept", str(choices)).stdout
    assert f"SKIPPED   row 2, order {order}, SKU A-1: already" in out
    assert order_posts(shop, sent) == []


def test_a_repeated_order_ships_from_its_first_valid_row_and_says_so(shop: Shop) -> None:
    order = place(shop, [("A-1", 1)])
    shop.run("orders", "pull")
    shop.run("orders", "accept")
    shipments = write(shop, "shipments.csv", ["order_id;carrier;tracking_number",
                                              f"{order};dhl;",          # row 2: no tracking
                                              f"{order};dhl;JD0002",    # row 3: valid
                                              f"{order};dhl;JD0003"])   # row 4: a repeat
    out = shop.run("orders", "ship", "--from", str(shipments), code=3).stdout
    assert "row 2" in out and "tracking_number: missing" in out
    assert f"row 4, order {order}: order_id: order {order} is also in row 3 of this file" in out
    assert "already shipped by row" not in out
    live = emulator_orders(shop)[order]
    assert (live["state"], live["tracking_number"]) == (9, "JD0002")


def test_an_order_whose_lines_are_all_cancelled_is_not_shippable_in_a_dry_run_either(
        shop: Shop) -> None:
    order = place(shop, [("C-3", 1)])
    shop.run("orders", "pull")
    cancel = write(shop, "cancel.csv", ["order_id;sku", f"{order};C-3"])
    shop.run("orders", "accept", "--cancel", str(cancel))
    shipments = write(shop, "shipments.csv", ["order_id;carrier;tracking_number",
                                              f"{order};dhl;JD0009"])
    sent = len(shop.server.emulator.exchanges)
    for args in (("--dry-run",), ()):
        out = shop.run("orders", "ship", "--from", str(shipments), *args, code=3).stdout
        assert "processed without anything to ship (its lines are cancelled)" in out, out
        assert "WOULD-SHIP" not in out and "already processed" not in out
    assert order_posts(shop, sent) == []


def test_all_policy_accepts_every_paid_line_without_reading_the_catalog(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}", monkeypatch,
                     orders='accept_policy = "all"')
    order = place(shop, [("B-2", 3)])
    (shop.folder / "catalog.csv").unlink()
    shop.run("orders", "pull")
    assert "Total: 1 accepted" in shop.run("orders", "accept").stdout
    assert emulator_orders(shop)[order]["state"] == 3


def test_sku_missing_from_the_catalog_is_held_with_its_reason(shop: Shop) -> None:
    order = place(shop, [("C-3", 1)])
    shop.catalog([catalog_row("A-1")])
    shop.run("orders", "pull")
    out = shop.run("orders", "accept").stdout
    assert f"HELD      order {order}, SKU C-3: the SKU is not in the catalog" in out


def test_dry_run_sends_and_records_nothing(shop: Shop) -> None:
    order = place(shop, [("A-1", 1)])
    shop.run("orders", "pull")
    before, sent = orders_fingerprint(shop.state_url), len(shop.server.emulator.exchanges)
    out = shop.run("orders", "accept", "--dry-run").stdout
    assert f"WOULD-ACCEPT order {order}, SKU A-1" in out
    assert orders_fingerprint(shop.state_url) == before
    assert shop.server.emulator.exchanges[sent:] == []


def test_line_accepted_on_back_market_meanwhile_is_recorded_not_sent_again(shop: Shop) -> None:
    order = place(shop, [("A-1", 1)])
    shop.run("orders", "pull")
    # Accepted in the back office after the pull: the state still says paid.
    emulator = shop.server.emulator
    reply = emulator.handle("POST", f"/ws/orders/{order}", {
        "Authorization": f"Basic {TOKEN}", "User-Agent": "BM-Tests-suite;tests@example.com"},
        json.dumps({"id": order, "order_id": order, "new_state": 2, "sku": "A-1"}).encode())
    assert reply.status == 200
    sent = len(emulator.exchanges)
    out = shop.run("orders", "accept").stdout
    assert f"SKIPPED   order {order}, SKU A-1: already accepted" in out
    assert order_posts(shop, sent) == []


# --- pull -------------------------------------------------------------------------------------

def test_pull_reads_since_the_last_pull_minus_the_overlap_so_late_orders_are_not_missed(
        shop: Shop) -> None:
    book = shop.server.emulator.order_book
    start = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)
    book.now = lambda: start
    first = place(shop, [("A-1", 1)])
    shop.run("orders", "pull", "--store", "fr")
    # An order whose modification is stamped 10 minutes before the watermark (committed late).
    book.now = lambda: start - timedelta(minutes=10)
    late = place(shop, [("B-2", 1)])
    sent = len(shop.server.emulator.exchanges)
    out = shop.run("orders", "pull", "--store", "fr").stdout
    assert "1 new, 0 changed, 1 unchanged" in out
    [request] = [e for e in shop.server.emulator.exchanges[sent:] if e.path == "/ws/orders"]
    assert request.query["date_modification"] == "2030-05-01T11:00:00Z"  # 60 min overlap
    assert request.query["country_code"] == "fr-fr"
    with StateStore.open(shop.state_url) as state:
        settings = load_settings(shop.config)
        account = settings.store("fr").account
        assert state.orders.find_order(account, first) is not None
        assert state.orders.find_order(account, late) is not None
        assert state.orders.order_watermark("fr", "store") == start


def test_pull_pages_through_every_order(shop: Shop) -> None:
    shop.catalog([catalog_row("A-1", stock="60")])
    shop.run("apply", "--force")
    for _ in range(53):
        place(shop, [("A-1", 1)])
    sent = len(shop.server.emulator.exchanges)
    out = shop.run("orders", "pull", "--store", "fr").stdout
    assert "Store fr (own country): 53 orders" in out
    pages = [e.query["page"] for e in shop.server.emulator.exchanges[sent:]
             if e.path == "/ws/orders"]
    assert pages == ["1", "2"]


def test_all_countries_pulls_the_other_countries_orders_too_and_one_order_is_singular(
        shop: Shop) -> None:
    german = place(shop, [("A-1", 1)], country="de-de")
    place(shop, [("A-1", 1)])
    alone = shop.run("orders", "pull", "--store", "fr").stdout
    assert "Store fr (own country): 1 order since " in alone and "(1 line stored)" in alone
    out = shop.run("orders", "pull", "--store", "fr", "--all-countries").stdout
    assert "Store fr (all countries): 2 orders since " in out
    with StateStore.open(shop.state_url) as state:
        found = state.orders.find_order(load_settings(shop.config).store("fr").account, german)
        assert found is not None and found["country_code"] == "de-de"
        assert found["store"] == "fr"


def test_store_scope_all_comes_from_the_store_configuration(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'state.db'}", monkeypatch,
                     orders='pull_scope = "all"')
    place(shop, [("A-1", 1)], country="de-de")
    out = shop.run("orders", "pull", "--store", "fr").stdout
    assert "Store fr (all countries): 1 order since " in out


def test_export_escapes_cells_a_spreadsheet_would_run_as_formulas(shop: Shop) -> None:
    place(shop, [("A-1", 1)], customer={"lastName": '=HYPERLINK("http://evil","x")',
                                        "firstName": "@SUM(A1)", "street": "+1 rue"})
    shop.run("orders", "pull", "--store", "fr")
    [export] = (shop.folder / "state" / "orders").glob("*.csv")
    with export.open(encoding="utf-8") as fh:
        [row] = list(csv.DictReader(fh, delimiter=";"))
    assert row["last_name"] == "'=HYPERLINK(\"http://evil\",\"x\")"
    assert row["first_name"] == "'@SUM(A1)" and row["street"] == "'+1 rue"
    assert row["phone"] == "'+33639981234"


# --- retries after an unknown outcome ---------------------------------------------------------

class DropAnswers(httpx.BaseTransport):
    """A transport to an in-process emulator that loses the answer of the first order POST,
    after (``applied``) or before the emulator handled it."""

    def __init__(self, emulator: Emulator, *, applied: bool) -> None:
        self.emulator = emulator
        self.applied = applied
        self.dropped = False
        self.posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        target = request.url.raw_path.decode()
        self.posts += request.method == "POST"
        first_post = request.method == "POST" and not self.dropped
        if first_post and not self.applied:
            self.dropped = True
            raise httpx.ReadError("connection reset", request=request)
        answer = self.emulator.handle(request.method, target, dict(request.headers),
                                      request.content)
        if first_post:
            self.dropped = True
            raise httpx.ReadError("connection reset", request=request)
        return httpx.Response(answer.status, headers=answer.headers, content=answer.body)


@pytest.mark.parametrize("applied", [True, False])
def test_lost_answer_to_an_acceptance_is_checked_before_sending_it_again(
        applied: bool) -> None:
    emulator = Emulator(EmulatorConfig(tokens=(TOKEN,), task_delay=0))
    catalog = "sku;ean;grade;quantity;price;warranty_delay\nA-1;4006381333931;GOOD;5;99;12\n"
    headers = {"Authorization": f"Basic {TOKEN}", "User-Agent": "BM-T-t;t@example.com"}
    emulator.handle("POST", "/ws/listings", headers, json.dumps(
        {"catalog": catalog, "delimiter": ";", "quotechar": '"', "encoding": "utf-8"}).encode())
    emulator.run_due_tasks()
    order_id = emulator.create_order(TOKEN, [{"sku": "A-1", "quantity": 1}])["order_id"]
    transport = DropAnswers(emulator, applied=applied)
    client = BackMarketClient(Transport("http://127.0.0.1:1", SecretStr(TOKEN), "fr-fr",
                                        "BM-T-t;t@example.com",
                                        http=httpx.Client(transport=transport),
                                        sleep=lambda _s: None))
    answer = client.update_order(order_id, {"new_state": 2, "sku": "A-1"},
                                 applied=lambda o: o["orderlines"][0]["state"] == 2)
    assert answer["orderlines"][0]["state"] == 2
    # Landed: read back, not sent again. Lost before landing: read back, then sent again.
    assert transport.posts == (1 if applied else 2)
    assert emulator.order_book.history(TOKEN, order_id) == [(answer["orderlines"][0]["id"],
                                                              2)]
    for exchange in emulator.exchanges:
        check_exchange(exchange)


# --- parsing and validation -------------------------------------------------------------------

def test_imei_needs_15_digits_and_a_valid_check_digit() -> None:
    assert check_imei(IMEI_1) == IMEI_1
    assert check_imei("35-209900-176148-1") == IMEI_2
    for bad, expected in ((BAD_IMEI, "valid check digit"), ("49015420323751", "15 digits"),
                          ("4901542032375180", "15 digits"), ("49015420323751X", "15 digits")):
        with pytest.raises(BadValue, match=expected):
            check_imei(bad)


def test_formula_cells_are_quoted_and_others_kept() -> None:
    assert [csv_cell(v) for v in ("=1+1", "+33 6", "-2", "@x", "\tx", "ok", None, 12)] == \
        ["'=1+1", "'+33 6", "'-2", "'@x", "'\tx", "ok", "", "12"]


def test_carriers_map_through_the_table_then_the_fallback() -> None:
    profile = load_profile(BUNDLED_MAPPINGS / "default.toml")
    assert shipper_for(profile, "la poste", None) == ("Colissimo", False)
    assert shipper_for(profile, "DPD DE", None) == ("DPD DE", False)  # a Back Market value
    assert shipper_for(profile, "Pigeon", None) == ("Other", True)
    assert shipper_for(profile, "Pigeon", "") == (None, False)
    assert shipper_for(profile, "Pigeon", "Private Transporter") == ("Private Transporter", True)


def test_shipments_file_is_read_with_either_delimiter_and_rows_numbered_from_the_header(
        tmp_path: Path) -> None:
    profile = load_profile(BUNDLED_MAPPINGS / "default.toml")
    for delimiter in (",", ";"):
        path = tmp_path / "s.csv"
        path.write_text("\ufeff" + delimiter.join(SHIP_HEADER.split(",")) + "\n"
                        + delimiter.join(["12", "UPS", "1Z", "", f" {IMEI_1} ", ""]) + "\n\n"
                        + delimiter.join(["13", "UPS", "1Z", "ftp://x", "", ""]) + "\n",
                        encoding="utf-8")
        shipments, problems = parse_shipments(path, profile, None)
        assert [(s.row, s.order_id, s.shipper, s.imei) for s in shipments] == \
            [(2, 12, "UPS", IMEI_1)]
        assert [(p.row, p.field) for p in problems] == [(4, "tracking_url")]


def test_shipments_file_without_its_columns_is_refused_whole(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text("order,carrier\n1,UPS\n", encoding="utf-8")
    profile = load_profile(BUNDLED_MAPPINGS / "default.toml")
    with pytest.raises(ConfigError, match="no column order_id, tracking_number"):
        parse_shipments(path, profile, None)


def test_same_order_twice_in_a_shipments_file_is_refused_on_the_second_row(
        tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_text(f"{SHIP_HEADER}\n7,UPS,A,,,\n7,UPS,B,,,\n", encoding="utf-8")
    shipments, problems = parse_shipments(path, load_profile(BUNDLED_MAPPINGS / "default.toml"),
                                          None)
    assert [s.tracking_number for s in shipments] == ["A"]
    assert [(p.row, p.field) for p in problems] == [(3, "order_id")]


def test_line_list_rows_need_an_order_id_and_a_sku(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("order_id;sku\n5;A-1\n;A-1\n6;\n", encoding="utf-8")
    choices, problems = parse_line_choices(path)
    assert [(c.row, c.order_id, c.sku) for c in choices] == [(2, 5, "A-1")]
    assert [(p.row, p.field) for p in problems] == [(3, "order_id"), (4, "sku")]


def test_order_settings_defaults_and_an_unknown_fallback_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "syncer.toml"
    config.write_text("[orders]\n", encoding="utf-8")
    orders = load_settings(config).orders
    assert (orders.pull_scope, orders.accept_policy, orders.overlap_minutes) == \
        ("store", "stock", 60)
    # A shipper is free text (the spec's list is the known values), of at most 200 characters.
    config.write_text('[orders]\ncarrier_fallback = "Pigeon Post Ltd"\n', encoding="utf-8")
    assert load_settings(config).orders.carrier_fallback == "Pigeon Post Ltd"
    config.write_text(f'[orders]\ncarrier_fallback = "{"P" * 201}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="201 characters long; Back Market takes a shipper "
                                          "of at most 200"):
        load_settings(config)


# --- the state on SQLite and PostgreSQL -------------------------------------------------------

def _order(order_id: int, state: int, modified: str) -> dict[str, Any]:
    return {"order_id": order_id, "state": state, "country_code": "fr-fr", "currency": "EUR",
            "price": "10.00", "date_modification": modified,
            "orderlines": [{"id": order_id * 10, "listing": "A-1", "quantity": 1,
                            "price": "10.00", "state": 1}]}


def test_order_state_upserts_keep_the_first_store_and_shipments_stay_confirmed(
        state_url: str) -> None:
    from syncer.orders.records import order_rows

    with StateStore.open(state_url) as state:
        row, lines = order_rows("EU@x", "fr", _order(5, 1, "2030-01-01T00:00:00Z"))
        state.orders.save_orders([row], lines)
        row, lines = order_rows("EU@x", "de", _order(5, 3, "2030-01-02T00:00:00+01:00"))
        state.orders.save_orders([row], lines)
        found = state.orders.find_order("EU@x", 5)
        assert found is not None and (found["store"], found["state"]) == ("fr", 3)
        assert found["date_modification"] == datetime(2030, 1, 1, 23, 0, tzinfo=UTC)
        assert list(found["lines"]) == [50]
        assert state.orders.orders_in_state(["fr"], 3)[0]["order_id"] == 5
        base = {"account": "EU@x", "order_id": 5, "store": "fr", "carrier": "UPS",
                "shipper": "UPS", "tracking_number": "1Z", "tracking_url": None, "imei": None,
                "serial_number": None, "error": None, "request_id": None}
        state.orders.record_shipment({**base, "status": "failed", "error": "refused"})
        state.orders.record_shipment({**base, "status": "failed", "error": "refused"})
        assert state.orders.shipment("EU@x", 5)["attempts"] == 2  # type: ignore[index]
        state.orders.record_shipment({**base, "status": "confirmed"})
        state.orders.record_shipment({**base, "status": "failed", "error": "late"})
        shipment = state.orders.shipment("EU@x", 5)
        assert shipment is not None and shipment["status"] == "confirmed"
        assert shipment["confirmed_at"].tzinfo is not None
        state.orders.set_order_watermark("fr", "store", datetime(2030, 1, 1, tzinfo=UTC))
        assert state.orders.order_watermark("fr", "store") == datetime(2030, 1, 1, tzinfo=UTC)
        assert state.orders.order_watermark("fr", "all") is None


# --- reading Back Market's orders -------------------------------------------------------------

def mock_client(handler: Any) -> BackMarketClient:
    return BackMarketClient(Transport("http://127.0.0.1:1", SecretStr(TOKEN), "fr-fr",
                                      "BM-T-t;t@example.com",
                                      http=httpx.Client(transport=httpx.MockTransport(handler)),
                                      sleep=lambda _s: None))


def real_order(order_id: int, country: str = "fr-fr", **changes: Any) -> dict[str, Any]:
    """An order in the shape production integrations cached (reference/BACKMARKET.md)."""
    address = {"first_name": "Ada", "last_name": "Lovelace", "street": "1 Analytical Row",
               "street2": "", "postal_code": "N1 9GU", "city": "London", "country": "GB",
               "phone": "+447700900123", "email": "ada@example.com", "company": "",
               "customer_id_number": "", "first_name_pronunciation": ""}
    order = {"order_id": order_id, "state": 1, "country_code": country, "currency": "GBP",
             "price": "199.00", "shipping_price": "0.00",
             "date_creation": "2030-01-01T10:00:00Z", "date_modification": "2030-01-01T10:00:00Z",
             "date_payment": "2030-01-01T10:01:00Z", "shipping_address": address,
             "billing_address": address, "tracking_number": "", "tracking_url": "",
             "shipper": "", "shipper_display": "", "date_bill_provided": None,
             "psp_reference": "X", "is_backship": False,
             "orderlines": [{"id": order_id * 10, "listing": "A-1", "listing_id": 42,
                             "product_id": 1234, "quantity": 1, "price": "199.00",
                             "state": 1, "condition": 3, "shipper": "", "return_reason": 0,
                             "return_message": "", "imei": "", "serial_number": "",
                             "backcare": False, "orderline_fee": "19.90"}]}
    order.update(changes)
    return order


def test_real_order_shapes_are_read_and_exported_and_camel_case_addresses_too(
        tmp_path: Path) -> None:
    from syncer.orders.export import export
    from syncer.orders.pull import PullResult
    from syncer.orders.records import order_rows

    camel = real_order(8, shipping_address={"firstName": "Victor", "lastName": "Hugo",
                                            "postalCode": "75003", "phoneNumber": "+336",
                                            "street": "3 rue", "city": "Paris"})
    page = {"count": 2, "next": None, "previous": None, "results": [real_order(7), camel]}
    client = mock_client(lambda request: httpx.Response(200, json=page))
    orders = list(client.iter_orders())
    assert [o["order_id"] for o in orders] == [7, 8]
    row, lines = order_rows("EU@x", "fr", orders[0])
    assert (row["tracking_number"], row["tracking_url"], row["shipper"]) == (None, None, None)
    assert (lines[0]["imei"], lines[0]["serial_number"]) == (None, None)
    result = PullResult("fr", "store", datetime(2030, 1, 1, tzinfo=UTC),
                        exported=[("new", o) for o in orders])
    [csv_path, _] = export([result], tmp_path, "run1")
    with csv_path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    assert [(r["first_name"], r["postal_code"], r["phone"]) for r in rows] == \
        [("Ada", "N1 9GU", "'+447700900123"), ("Victor", "75003", "'+336")]


@pytest.mark.parametrize(("order", "where"), [
    (real_order(7, date_modification="yesterday"),
     "order 7, field results.0.date_modification: expected an RFC 3339 date-time"),
    (real_order(7, orderlines=[{"id": 70, "listing": "A-1", "state": "shipped"}]),
     "order 7, field results.0.orderlines.0.state"),
    (real_order(7, shipping_address={"first_name": ["Ada"]}),
     "order 7, field results.0.shipping_address.first_name"),
    (real_order(7, orderlines=[{"listing": "A-1", "state": 1}]),
     "order 7, field results.0.orderlines.0.id: Field required"),
])
def test_a_malformed_order_is_one_error_naming_the_order_and_the_field(
        order: dict[str, Any], where: str) -> None:
    from syncer.errors import ApiError

    page = {"count": 1, "next": None, "results": [order]}
    client = mock_client(lambda request: httpx.Response(200, json=page))
    with pytest.raises(ApiError) as caught:
        list(client.iter_orders())
    assert f"GET /ws/orders page 1: unexpected answer from Back Market: {where}" in \
        caught.value.message


def test_a_store_pulling_its_own_country_keeps_only_its_orders_even_if_the_filter_is_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Back Market does not filter orders by Accept-Language: one real call returned several
    # countries. The pull asks for country_code and still drops any other country's order.
    from syncer.orders.pull import pull

    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    settings = load_settings(write_config(tmp_path, state_url=f"sqlite:///{tmp_path}/s.db"))
    asked: list[str] = []

    def ignores_the_filter(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params.get("country_code", ""))
        return httpx.Response(200, json={"count": 2, "next": None, "results": [
            real_order(7, "fr-fr"), real_order(8, "de-de")]})

    with StateStore.open(settings.state_database_url()) as state:
        result = pull(settings, settings.store("fr"), mock_client(ignores_the_filter), state,
                      scope="store")
    assert asked == ["fr-fr"]
    assert [order["order_id"] for _, order in result.exported] == [7]
    assert result.counts() == {"fetched": 1, "new": 1, "changed": 0, "unchanged": 0,
                               "lines": 1, "other_countries": 1}


# --- invoices ---------------------------------------------------------------------------------

PDF = b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


def invoice_uploads(shop: Shop, since: int = 0) -> list[Any]:
    return [e for e in shop.server.emulator.exchanges[since:]
            if e.method == "POST" and e.path.endswith("/invoice")]


def test_invoices_are_uploaded_once_and_bad_rows_name_their_row_and_column(
        tmp_path: Path, emulator: EmulatorServer, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path, emulator, state_url, monkeypatch)
    o1, o2 = place(shop, [("A-1", 1)]), place(shop, [("B-2", 1)], country="de-de")
    unpaid = place(shop, [("C-3", 1)], state=10)
    elsewhere = place(shop, [("C-3", 1)])
    shop.run("orders", "pull")
    (shop.folder / "invoices").mkdir()
    (shop.folder / "invoices" / "F-0001.pdf").write_bytes(PDF)
    (shop.folder / "invoices" / "F-0002.pdf").write_bytes(PDF + b"% 2\n")
    (shop.folder / "invoices" / "notes.txt").write_text("not an invoice", encoding="utf-8")
    (shop.folder / "invoices" / "empty.pdf").write_bytes(b"")
    # An invoice given in the back office meanwhile: Back Market shows date_bill_provided.
    book = shop.server.emulator.order_book
    with shop.server.emulator._lock:
        book._orders[elsewhere].date_bill_provided = datetime(2030, 1, 1, tzinfo=UTC)
    rows = write(shop, "invoices.csv", [
        "order_id;path",
        f"{o1};invoices/F-0001.pdf",
        f"{o2};invoices/F-0002.pdf",
        "999999;invoices/F-0001.pdf",
        f"{unpaid};invoices/F-0001.pdf",
        f"{o1};invoices/F-0002.pdf",
        f"{elsewhere};invoices/notes.txt",
        f"{elsewhere};invoices/missing.pdf",
        f"{elsewhere};invoices/empty.pdf",
        "12ab;invoices/F-0001.pdf",
        f"{elsewhere};invoices/F-0001.pdf",
    ])

    before, sent = orders_fingerprint(shop.state_url), len(shop.server.emulator.exchanges)
    dry = shop.run("orders", "invoice", "--from", str(rows), "--dry-run", code=3).stdout
    assert f"WOULD-SEND row 2, order {o1}: invoice invoices/F-0001.pdf (1 KiB)" in dry
    assert orders_fingerprint(shop.state_url) == before
    assert shop.server.emulator.exchanges[sent:] == []

    out = shop.run("orders", "invoice", "--from", str(rows), code=3).stdout
    assert f"SENT      row 2, order {o1}: invoice invoices/F-0001.pdf" in out
    assert f"SENT      row 3, order {o2}: invoice invoices/F-0002.pdf" in out
    assert "row 4, order 999999: order_id: order 999999 is not in the state" in out
    assert f"row 5, order {unpaid}: order_id: the order is pending payment: an invoice is " \
           "given for a paid order" in out
    assert f"row 6, order {o1}: order_id: order {o1} is also in row 2 of this file" in out
    assert f"row 7, order {elsewhere}: path: invoices/notes.txt: not a PDF (a PDF file " \
           "starts with %PDF-)" in out
    assert f"row 8, order {elsewhere}: path: invoices/missing.pdf: no such file" in out
    assert f"row 9, order {elsewhere}: path: invoices/empty.pdf: the file is empty" in out
    assert "row 10: order_id: '12ab'; expected a Back Market order id (digits)" in out
    assert f"SKIPPED   row 11, order {elsewhere}: Back Market already has an invoice" in out
    assert "Total: 7 failed, 2 sent, 1 skipped" in out
    assert [e.path for e in invoice_uploads(shop, sent)] == [f"/ws/orders/{o1}/invoice",
                                                             f"/ws/orders/{o2}/invoice"]
    assert book.invoice(TOKEN, o1) == (PDF, 1)
    assert book.invoice(TOKEN, o2) == (PDF + b"% 2\n", 1)
    assert book.invoice(TOKEN, elsewhere) == (b"", 0)
    live = emulator_orders(shop)
    assert live[o1]["date_bill_provided"] and live[o2]["date_bill_provided"]
    assert live[unpaid]["date_bill_provided"] is None

    # A second run sends nothing, not even a read: the state knows the invoices were given.
    sent = len(shop.server.emulator.exchanges)
    again = shop.run("orders", "invoice", "--from", str(rows), code=3).stdout
    assert f"SKIPPED   row 2, order {o1}: invoice already sent (invoices/F-0001.pdf)" in again
    assert f"SKIPPED   row 11, order {elsewhere}: invoice already sent" in again
    assert shop.server.emulator.exchanges[sent:] == []
    # Another file for an invoiced order is not sent either, and the report says so.
    other = write(shop, "other.csv", ["order_id,path", f"{o1},invoices/F-0002.pdf"])
    out = shop.run("orders", "invoice", "--from", str(other)).stdout
    assert "this row's file invoices/F-0002.pdf differs: an invoice is sent once" in out
    assert shop.server.emulator.exchanges[sent:] == []
    with StateStore.open(shop.state_url) as state:
        account = load_settings(shop.config).store("fr").account
        recorded = state.orders.invoice(account, o1)
        assert recorded is not None and recorded["status"] == "confirmed"
        assert recorded["sha256"] == hashlib.sha256(PDF).hexdigest()


def test_a_refused_invoice_is_recorded_as_failed_and_sent_by_the_next_run(shop: Shop) -> None:
    order = place(shop, [("A-1", 1)])
    shop.run("orders", "pull")
    (shop.folder / "F-1.pdf").write_bytes(PDF)
    rows = write(shop, "invoices.csv", ["order_id,path", f"{order},F-1.pdf"])
    book = shop.server.emulator.order_book
    with shop.server.emulator._lock:  # Back Market refuses the upload: the order is unpaid
        book._orders[order].state = 10
    out = shop.run("orders", "invoice", "--from", str(rows), code=3).stdout
    assert f"row 2, order {order}: path: Back Market refused the invoice: order {order} is " \
           "in state 10" in out
    with StateStore.open(shop.state_url) as state:
        recorded = state.orders.invoice(load_settings(shop.config).store("fr").account, order)
        assert recorded is not None and (recorded["status"], recorded["attempts"]) == \
            ("failed", 1)
    with shop.server.emulator._lock:  # paid again, and pulled again
        book._orders[order].state = 1
        book._orders[order].date_modification = book.now()
    shop.run("orders", "pull")
    assert "Total: 1 sent" in shop.run("orders", "invoice", "--from", str(rows)).stdout
    assert book.invoice(TOKEN, order) == (PDF, 1)


def test_invoices_file_without_its_columns_is_refused_whole(tmp_path: Path) -> None:
    from syncer.orders.files import parse_invoices

    path = tmp_path / "i.csv"
    path.write_text("order;file\n1;a.pdf\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no column order_id, path"):
        parse_invoices(path)


# --- identifiers after shipping ---------------------------------------------------------------

def orderline_patches(shop: Shop, since: int = 0) -> list[Any]:
    return [e for e in shop.server.emulator.exchanges[since:] if e.method == "PATCH"]


def test_identifiers_are_added_after_shipping_once_with_the_ship_rules(shop: Shop) -> None:
    single = place(shop, [("A-1", 1)])
    pair = place(shop, [("A-1", 1), ("B-2", 1)])
    two_units = place(shop, [("C-3", 2)])
    cancelled = place(shop, [("C-3", 1)])
    shop.run("orders", "pull")
    shop.run("orders", "accept", "--cancel", str(write(shop, "cancel.csv", [
        "order_id,sku", f"{cancelled},C-3"])))
    shop.run("orders", "ship", "--from", str(write(shop, "ship.csv", [
        "order_id,carrier,tracking_number", f"{single},UPS,1Z1", f"{pair},UPS,1Z2",
        f"{two_units},UPS,1Z3"])))
    rows = write(shop, "serials.csv", [
        "order_id;sku;imei;serial_number",
        f"{single};;{IMEI_1};",
        f"{pair};b-2;;SN-B2",
        f"{pair};;{IMEI_2};",
        f"{two_units};C-3;{IMEI_2};",
        f"{single};;{BAD_IMEI};",
        f"{cancelled};C-3;;SN-4",
        f"{pair};A-1;;",
        f"{pair};B-2;;SN-AGAIN",
    ])
    sent = len(shop.server.emulator.exchanges)
    dry = shop.run("orders", "serials", "--from", str(rows), "--dry-run", code=3).stdout
    assert f"WOULD-SEND row 2, order {single}, SKU A-1: IMEI {IMEI_1}" in dry
    assert shop.server.emulator.exchanges[sent:] == []

    out = shop.run("orders", "serials", "--from", str(rows), code=3).stdout
    assert f"SENT      row 2, order {single}, SKU A-1: IMEI {IMEI_1}" in out
    assert f"SENT      row 3, order {pair}, SKU B-2: serial SN-B2" in out
    assert f"row 4, order {pair}: sku: missing; order {pair} has 2 lines (A-1, B-2): name " \
           "the line by its SKU" in out
    assert f"row 5, order {two_units}, SKU C-3: imei: an identifier names one device; this " \
           "line has quantity 2" in out
    assert f"row 6, order {single}: imei: '{BAD_IMEI}'; expected an IMEI with a valid check " \
           "digit" in out
    assert f"row 7, order {cancelled}, SKU C-3: sku: the line is cancelled (state 4)" in out
    assert f"row 8, order {pair}, SKU A-1: imei: missing, and so is serial_number" in out
    assert f"row 9, order {pair}, SKU B-2: order_id: this line is also in row 3" in out
    assert "Total: 6 failed, 2 sent" in out
    live = emulator_orders(shop)
    assert live[single]["orderlines"][0]["imei"] == IMEI_1
    assert {line["listing"]: line["serial_number"] for line in live[pair]["orderlines"]} == \
        {"A-1": "", "B-2": "SN-B2"}
    assert len(orderline_patches(shop, sent)) == 2

    # A second run sends nothing, not even a read.
    sent = len(shop.server.emulator.exchanges)
    again = shop.run("orders", "serials", "--from", str(rows), code=3).stdout
    assert f"SKIPPED   row 2, order {single}, SKU A-1: already registered" in again
    assert shop.server.emulator.exchanges[sent:] == []
    # A different IMEI for a line that has one is refused before anything is sent.
    other = write(shop, "other.csv", ["order_id,imei", f"{single},{IMEI_2}"])
    out = shop.run("orders", "serials", "--from", str(other), code=3).stdout
    assert f"row 2, order {single}, SKU A-1: imei: the line already has the IMEI {IMEI_1} " \
           f"(this row says {IMEI_2}); Back Market cannot correct it. Nothing was sent" in out
    assert shop.server.emulator.exchanges[sent:] == []
    # The serial number may still be added to a line that has its IMEI: only that is sent.
    more = write(shop, "more.csv", ["order_id,imei,serial_number",
                                    f"{single},{IMEI_1},SN-A1"])
    assert "SENT" in shop.run("orders", "serials", "--from", str(more)).stdout
    [patch] = orderline_patches(shop, sent)
    assert patch.request == {"serial_number": "SN-A1"}
    assert emulator_orders(shop)[single]["orderlines"][0]["serial_number"] == "SN-A1"


def test_an_identifier_registered_on_back_market_meanwhile_is_recorded_not_sent(
        shop: Shop) -> None:
    order = place(shop, [("A-1", 1)])
    shop.run("orders", "pull")
    shop.run("orders", "accept")
    shop.run("orders", "ship", "--from", str(write(shop, "ship.csv", [
        "order_id,carrier,tracking_number", f"{order},UPS,1Z1"])))
    line = emulator_orders(shop)[order]["orderlines"][0]["id"]
    emulator = shop.server.emulator
    reply = emulator.handle("PATCH", f"/ws/orderlines/{line}", {
        "Authorization": f"Basic {TOKEN}", "User-Agent": "BM-Tests-suite;tests@example.com"},
        json.dumps({"imei": IMEI_1}).encode())
    assert reply.status == 200
    rows = write(shop, "serials.csv", ["order_id,imei", f"{order},{IMEI_1}"])
    sent = len(emulator.exchanges)
    out = shop.run("orders", "serials", "--from", str(rows)).stdout
    assert f"SKIPPED   row 2, order {order}, SKU A-1: already registered on Back Market" in out
    assert orderline_patches(shop, sent) == []
    sent = len(emulator.exchanges)
    shop.run("orders", "serials", "--from", str(rows))
    assert emulator.exchanges[sent:] == []  # recorded: not even read again


def test_serials_file_rules(tmp_path: Path) -> None:
    from syncer.orders.files import parse_serials

    path = tmp_path / "s.csv"
    path.write_text(f'order_id,sku,imei,serial_number\n5,A-1,{IMEI_1},\n6,,,"SN\n2"\n'
                    f"7,,,{'S' * 51}\n", encoding="utf-8")
    found, problems = parse_serials(path)
    assert [(s.row, s.order_id, s.imei) for s in found] == [(2, 5, IMEI_1)]
    assert [(p.row, p.field) for p in problems] == [(4, "serial_number"), (5, "serial_number")]
    path.write_text("order_id,sku\n5,A-1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="no column imei or serial_number"):
        parse_serials(path)
