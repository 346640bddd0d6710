"""The Back Market emulator over a real loopback socket, every exchange checked against the spec.

Each request goes through ``contract.check_request`` (an httpx event hook) and each response
through ``contract.check_response`` (a hook, then again from the emulator's own log at
teardown). A request that breaks the contract on purpose is sent with
``extensions={"off_contract": True}``: the hook then asserts the contract check rejects it.
Time is a fake clock: no test sleeps, except one that checks the real-clock task delay.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncer.emulator.config import GRADES, EmulatorConfig, Faults
from syncer.emulator.products import product_id_for_ean
from syncer.emulator.server import EmulatorServer
from tests.contract import check_exchange, check_request, check_response
from tests.helpers import FakeClock

TOKEN = "seller-a-token"
OTHER_TOKEN = "seller-b-token"
UA = "BM-Acme-Syncer;ops@acme.example"
EAN = "4006381333931"
EAN_2 = "5901234123457"
HEADER = "sku;ean;grade;quantity;price;warranty_delay"
TASK_DELAY = 1.0


def _check_request_hook(request: httpx.Request) -> None:
    if request.url.path.startswith("/_emulator/"):
        return
    body = json.loads(request.content) if request.content else None
    if request.extensions.get("off_contract"):
        with pytest.raises(AssertionError):
            check_request(request.method, request.url.path, body)
    else:
        check_request(request.method, request.url.path, body)


def _check_response_hook(response: httpx.Response) -> None:
    if response.request.url.path.startswith("/_emulator/"):
        return
    response.read()
    content_type = response.headers.get("content-type", "")
    body = response.json() if "json" in content_type else response.text
    check_response(
        response.request.method,
        response.request.url.path,
        response.status_code,
        body,
        content_type=content_type,
    )


Connect = Callable[..., httpx.Client]
Start = Callable[..., EmulatorServer]


@pytest.fixture
def start(clock: FakeClock) -> Iterator[Start]:
    """Start an emulator (fake clock, two sellers); its log is contract-checked at teardown."""
    servers: list[EmulatorServer] = []

    def _start(**overrides: Any) -> EmulatorServer:
        settings: dict[str, Any] = {
            "tokens": (TOKEN, OTHER_TOKEN),
            "clock": clock.monotonic,
            "task_delay": TASK_DELAY,
        }
        settings.update(overrides)
        server = EmulatorServer(EmulatorConfig(**settings)).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
    for server in servers:
        for exchange in server.emulator.exchanges:
            if exchange.status is not None:
                check_response(
                    exchange.method,
                    exchange.path,
                    exchange.status,
                    exchange.response,
                    content_type=exchange.response_headers.get("Content-Type"),
                )


@pytest.fixture
def connect() -> Iterator[Connect]:
    """An httpx client as the engine would configure it, with contract-checking hooks."""
    clients: list[httpx.Client] = []

    def _connect(
        server: EmulatorServer,
        *,
        token: str | None = TOKEN,
        locale: str | None = "fr-fr",
        user_agent: str | None = UA,
        timeout: float = 5.0,
    ) -> httpx.Client:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Basic {token}"
        if locale is not None:
            headers["Accept-Language"] = locale
        client = httpx.Client(
            base_url=server.base_url,
            headers=headers,
            timeout=timeout,
            event_hooks={"request": [_check_request_hook], "response": [_check_response_hook]},
        )
        if user_agent is None:
            del client.headers["User-Agent"]
        else:
            client.headers["User-Agent"] = user_agent
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        client.close()


def post_batch(client: httpx.Client, rows: list[str], header: str = HEADER) -> int:
    catalog = "\n".join([header, *rows]) + "\n"
    response = client.post(
        "/ws/listings",
        json={"catalog": catalog, "quotechar": '"', "delimiter": ";", "encoding": "utf-8"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["statuscode"] == 200
    task_id = response.json()["bodymessage"]
    assert isinstance(task_id, int)
    return task_id


def finish_task(client: httpx.Client, clock: FakeClock, task_id: int) -> dict[str, Any]:
    clock.advance(TASK_DELAY)
    response = client.get(f"/ws/tasks/{task_id}")
    assert response.status_code == 200
    task: dict[str, Any] = response.json()
    assert task["action_status"] in (8, 9), task
    return task


def entries(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A finished task's result entries by key, each marked ``ok`` (in product_success) or
    not (in product_errors); a key in both would be a bug."""
    result = task["result"]
    assert set(result) == {"product_success", "product_errors"}, result
    success, errors = result["product_success"], result["product_errors"]
    assert not set(success) & set(errors), result
    return {**{k: {**v, "ok": True} for k, v in success.items()},
            **{k: {**v, "ok": False} for k, v in errors.items()}}


def in_row_order(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries of a task result keyed by row, in row order."""
    found = entries(task)
    assert all(key.isdigit() for key in found), found
    return [found[key] for key in sorted(found, key=int)]


def create(
    client: httpx.Client, clock: FakeClock, rows: list[str], header: str = HEADER
) -> list[dict[str, Any]]:
    """Successes of a batch, in row order (the result is keyed by SKU: one row per SKU)."""
    task = finish_task(client, clock, post_batch(client, rows, header))
    assert task["action_status"] == 9, task
    found = entries(task)
    skus = [row.split(";")[0] for row in rows]
    assert list(found) == list(dict.fromkeys(skus)), found
    results = [found[sku] for sku in dict.fromkeys(skus)]
    assert all(r["ok"] and r["status"] in ("created", "updated") for r in results), results
    return results


def detail(client: httpx.Client, sku: str, locale: str | None = None) -> dict[str, Any]:
    headers = {"Accept-Language": locale} if locale else {}
    response = client.get("/ws/listings/detail", params={"sku": sku}, headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


# --- authentication, bot management, WAF, locales ------------------------------------------


def test_request_without_a_valid_token_is_401(start: Start, connect: Connect) -> None:
    server = start()
    for token in (None, "not-a-token"):
        response = connect(server, token=token).get("/ws/listings")
        assert response.status_code == 401
        body = response.json()
        assert body["error"]["code"] == "unauthenticated"
        assert body["requestId"] == response.headers["X-Request-Id"]
    bearer = connect(server, token=None)
    response = bearer.get("/ws/listings", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 401


def test_request_without_bm_user_agent_gets_bot_challenge_403(
    start: Start, connect: Connect
) -> None:
    server = start()
    for user_agent in (None, "python-httpx/0.28", "BM-Acme-Syncer"):
        response = connect(server, user_agent=user_agent).get("/ws/listings")
        assert response.status_code == 403
        assert response.json()["errors"][0]["code"] == "bot-need-challenge"
        assert response.json()["errors"][0]["challengePath"] == "/testchallengepage"
    assert connect(server).get("/ws/listings").status_code == 200


def test_waf_block_answers_html_403_with_cf_ray(start: Start, connect: Connect) -> None:
    server = start(faults=Faults(waf_block=True))
    client = connect(server)
    response = client.get("/ws/listings")
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cf-ray"]
    assert "Cloudflare" in response.text
    assert client.post("/_emulator/faults", json={"waf_block": False}).status_code == 200
    assert client.get("/ws/listings").status_code == 200


def test_an_outage_answers_every_request_with_the_same_503_page(start: Start,
                                                                connect: Connect) -> None:
    server = start()
    client = connect(server)
    assert client.post("/_emulator/faults", json={"outage": "yes"}).status_code == 400
    assert client.post("/_emulator/faults", json={"outage": True}).status_code == 200
    answers = [client.get("/ws/listings") for _ in range(5)]
    assert {a.status_code for a in answers} == {503}
    assert {a.headers["content-type"].split(";")[0] for a in answers} == {"text/html"}
    assert all("Service unavailable" in a.text for a in answers)
    assert client.post("/_emulator/faults", json={"outage": False}).status_code == 200
    assert client.get("/ws/listings").status_code == 200


def test_unknown_locale_is_400_and_absent_locale_is_the_platform_first(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;2;100;12"])[0]
    for locale in ("xx-yy", "en-us", "fr-FR"):
        response = client.get(f"/ws/listings/{listing['id']}", headers={"Accept-Language": locale})
        assert response.status_code == 400
        assert "Accept-Language" in response.json()["error"]["message"]
    # The update endpoint documents its 400 as a bare string.
    response = client.post(
        f"/ws/listings/{listing['id']}", json={"quantity": 1}, headers={"Accept-Language": "xx"}
    )
    assert response.status_code == 400
    assert isinstance(response.json(), str)
    no_locale = connect(server, locale=None)
    assert no_locale.get(f"/ws/listings/{listing['id']}").json()["price"] == "100.00"


# --- batch creation and tasks --------------------------------------------------------------


def test_batch_creates_listings_and_task_reports_each_row_keyed_by_row_or_sku(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start(result_key="row")
    client = connect(server)
    product = str(uuid.uuid4())
    header = (
        "sku;product_id;ean;grade;state;quantity;price;warranty_delay;"
        "shipper_1;shipping_price_1;shipping_delay_1"
    )
    rows = [
        f"PHONE-1;;{EAN};EXCELLENT;;5;199.90;12;UPS;4.90;48",
        # product_id wins; no grade: GOOD (state is not read as the legacy grade code)
        f"PHONE-2;{product};{EAN_2};;0;3;150;24;;;",
        "PHONE-3;;4006381333932;GOOD;;1;10;12;;;",  # bad check digit
        f"PHONE-4;;{EAN};MINT;;1;10;12;;;",  # not a grade
        f"PHONE-5;;{EAN};GOOD;;1;10;3;;;",  # warranty below 6 months
        f"PHONE-6;;{EAN};GOOD;;1;0;12;;;",  # price must be positive
        f"PHONE-7;;{EAN};GOOD;;1;10;12;Pigeon Post;1;24",  # not a Back Market shipper
        ";;;GOOD;;1;10;12;;;",  # no SKU
    ]
    task_id = post_batch(client, rows, header)
    task = client.get(f"/ws/tasks/{task_id}").json()
    assert (task["action_status"], task["result"], task["last_action_error"]) == (0, {}, None)
    clock.advance(TASK_DELAY / 2)
    assert client.get(f"/ws/tasks/{task_id}").json()["action_status"] == 2
    task = finish_task(client, clock, task_id)
    assert task["action_status"] == 9
    results = in_row_order(task)
    assert [r["sku"] for r in results] == [
        "PHONE-1", "PHONE-2", "PHONE-3", "PHONE-4", "PHONE-5", "PHONE-6", "PHONE-7", None,
    ]
    assert [r["ok"] for r in results] == [True, True] + [False] * 6
    assert [r["status"] for r in results[:2]] == ["created", "created"]
    assert [r["message"].split(":")[0] for r in results[2:]] == [
        "ean", "grade", "warranty_delay", "price", "shipper_1", "sku",
    ]
    assert all(set(r) == {"sku", "code", "message", "ok"} for r in results[2:])
    assert results[1]["listing_id"] == results[0]["listing_id"] + 1
    for created in results[:2]:
        assert {"listing_id", "backmarket_id", "publication_state", "product_id", "id"} <= \
            set(created)
        assert created["publication_state"] == 2
    # Keyed by SKU (the default), a row without one by its row number.
    server.emulator.config.result_key = "sku"
    by_sku = entries(finish_task(client, clock, post_batch(client, rows, header)))
    assert set(by_sku) == {
        "PHONE-1", "PHONE-2", "PHONE-3", "PHONE-4", "PHONE-5", "PHONE-6", "PHONE-7", "8"}
    assert by_sku["PHONE-1"]["status"] == "updated" and by_sku["8"]["sku"] is None

    first = client.get(f"/ws/listings/{results[0]['id']}").json()
    assert first["product_id"] == product_id_for_ean(EAN)
    assert (first["grade"], first["state"]) == ("EXCELLENT", GRADES["EXCELLENT"])
    assert first["shippings"] == [
        {
            "shipping_price": "4.90",
            "shipping_delay": 48,
            "shipper": "UPS",
            "shipper_display": "UPS",
            "country_code": "fr-fr",
        }
    ]
    second = client.get(f"/ws/listings/{results[1]['listing_id']}").json()
    assert (second["product_id"], second["grade"], second["warranty_delay"]) == (
        product, "GOOD", 24,
    )


def test_unparseable_catalog_fails_the_task_with_a_reason(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    client = connect(start())
    task = finish_task(client, clock, post_batch(client, ['"PHONE-1"x;5'], "sku;quantity"))
    assert task["action_status"] == 8
    assert "CSV" in task["last_action_error"]
    task = finish_task(client, clock, post_batch(client, ["PHONE-1;5"], "reference;quantity"))
    assert task["action_status"] == 8
    assert "sku" in task["last_action_error"]


def test_batch_without_a_required_parameter_is_400_bare_string(
    start: Start, connect: Connect
) -> None:
    client = connect(start())
    response = client.post(
        "/ws/listings",
        json={"catalog": "sku\nA\n", "quotechar": '"', "delimiter": ";"},
        extensions={"off_contract": True},
    )
    assert response.status_code == 400
    assert response.json() == "parameter encoding not found"


def test_batch_over_15000_lines_is_refused(start: Start, connect: Connect) -> None:
    server = start(sku_lines_per_hour=0)
    client = connect(server)
    rows = [f"SKU-{n};{EAN};GOOD;1;10;12" for n in range(15_001)]
    response = client.post(
        "/ws/listings",
        json={
            "catalog": "\n".join([HEADER, *rows]),
            "quotechar": '"',
            "delimiter": ";",
            "encoding": "utf-8",
        },
    )
    assert response.status_code == 400
    assert "15000" in response.json()
    assert post_batch(client, rows[:15_000]) > 0


# --- what is global, what is per country ---------------------------------------------------


def test_sku_is_matched_case_insensitively_and_keeps_its_first_spelling(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    client = connect(start())
    created = create(client, clock, [f"iPhone-13-Blue;{EAN};GOOD;2;300;12"])[0]
    updated = create(client, clock, ["IPHONE-13-BLUE;;;7;;"])[0]
    assert updated["status"] == "updated"
    assert (updated["id"], updated["listing_id"]) == (created["id"], created["listing_id"])
    listing = detail(client, "iphone-13-blue")
    assert (listing["sku"], listing["quantity"]) == ("iPhone-13-Blue", 7)
    assert listing["price"] == "300.00"  # the update row gave no price: kept
    assert client.get("/ws/listings").json()["count"] == 1


def test_quantity_is_global_and_price_is_per_country(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;5;100;12"])[0]
    response = client.post(
        f"/ws/listings/{listing['id']}",
        json={"price": "90.00", "quantity": 7},
        headers={"Accept-Language": "de-de"},
    )
    assert response.status_code == 200
    assert (response.json()["price"], response.json()["quantity"]) == ("90.00", 7)
    fr, de, it = (detail(client, "SKU-1", locale) for locale in ("fr-fr", "de-de", "it-it"))
    assert (fr["price"], fr["quantity"], fr["publication_state"]) == ("100.00", 7, 2)
    assert (de["price"], de["quantity"], de["publication_state"]) == ("90.00", 7, 2)
    # A country without a price of its own: not published (0), price shown as 0.00.
    assert (it["price"], it["quantity"], it["publication_state"]) == ("0.00", 7, 0)
    # Zero stock takes the listing offline everywhere at once.
    client.post(f"/ws/listings/{listing['id']}", json={"quantity": "0"})
    assert [detail(client, "SKU-1", loc)["publication_state"] for loc in ("fr-fr", "de-de")] == [
        3, 3,
    ]
    assert server.emulator.listing(TOKEN, "sku-1", "de-de") == {
        k: v for k, v in detail(client, "SKU-1", "de-de").items() if k != "statuscode"
    }


def test_single_update_changes_only_the_fields_given(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    client = connect(start())
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;5;100;12"])[0]
    url = f"/ws/listings/{listing['id']}"
    assert client.post(url, json={"comment": "Boxed", "min_price": 95}).status_code == 200
    body = client.post(url, json={"price": 95.5, "warranty_delay": "24"}).json()
    assert (body["price"], body["comment"], body["min_price"], body["warranty_delay"]) == (
        "95.50", "Boxed", "95.00", 24,
    )
    body = client.post(
        url, json={"shipper_1": "DHL Express", "shipping_price_1": "0", "shipping_delay_1": 24}
    ).json()
    assert body["shippings_response"] == ["Shipping method 1 (DHL Express) created"]
    for bad, message in (
        ({"comment": "x" * 501}, "500"),
        ({"price": "-1"}, "positive"),
        ({"quantity": -1}, "quantity"),
        ({"warranty_delay": 3}, "at least 6"),
        ({"shipper_2": "UPS"}, "shipping option 2"),
    ):
        response = client.post(url, json=bad)
        assert response.status_code == 400, bad
        assert message in response.json()
    assert client.get(url).json()["price"] == "95.50"


def test_single_update_ignores_unknown_fields_and_logs_them_unless_strict(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    """Production integrations send pub_state on this endpoint and Back Market accepts it:
    the emulator ignores what the spec's body lacks, and says so in its exchange log."""
    server = start()
    client = connect(server)
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;5;100;12"])[0]
    url = f"/ws/listings/{listing['id']}"
    response = client.post(url, json={"quantity": 3, "pub_state": 2, "max_price": "150"})
    assert response.status_code == 200, response.text
    (held,) = server.emulator.listings(TOKEN)
    assert (held["quantity"], held["markets"]["fr-fr"]["max_price"]) == (3, None)
    posted = [e for e in server.emulator.exchanges if e.method == "POST" and e.path == url]
    assert posted[-1].ignored == ("max_price", "pub_state")
    assert posted[-1].request == {"quantity": 3, "pub_state": 2, "max_price": "150"}
    with pytest.raises(AssertionError, match="max_price, pub_state"):
        check_exchange(posted[-1])  # our own client sending them fails the contract check

    strict = start(strict_fields=True)
    client = connect(strict)
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;5;100;12"])[0]
    url = f"/ws/listings/{listing['id']}"
    response = client.post(url, json={"quantity": 3, "pub_state": 2})
    assert response.status_code == 400
    assert "pub_state" in response.json()
    assert strict.emulator.listings(TOKEN)[0]["quantity"] == 5


def test_currency_that_is_not_the_market_one_is_rejected(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    client = connect(start())
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;5;100;12"])[0]
    url = f"/ws/listings/{listing['id']}"
    response = client.post(url, json={"price": "90", "currency": "GBP"})
    assert response.status_code == 400
    assert "GBP" in response.json()
    uk = {"Accept-Language": "en-gb"}
    response = client.post(url, json={"price": "90"}, headers=uk)  # EUR by default: wrong here
    assert response.status_code == 400
    assert "GBP" in response.json()
    response = client.post(url, json={"price": "85", "currency": "GBP"}, headers=uk)
    assert response.status_code == 200
    assert (response.json()["price"], response.json()["currency"]) == ("85.00", "GBP")
    assert detail(client, "SKU-1")["price"] == "100.00"


# --- reading: paging and 404s --------------------------------------------------------------


def test_listings_are_paged_with_absolute_next_links(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    create(client, clock, [f"SKU-{n:02d};{EAN};GOOD;{n % 3};10;12" for n in range(23)])
    page = client.get("/ws/listings", params={"page-size": 10}).json()
    assert (page["count"], len(page["results"]), page["previous"]) == (23, 10, None)
    seen = [r["sku"] for r in page["results"]]
    pages = 1
    while page["next"]:
        assert page["next"].startswith(server.base_url + "/ws/listings?")
        page = client.get(page["next"]).json()
        assert page["previous"].startswith(server.base_url)
        seen += [r["sku"] for r in page["results"]]
        pages += 1
    assert pages == 3
    assert seen == [f"SKU-{n:02d}" for n in range(23)]
    # page_size (underscore) is not the spec's name: ignored, the default page size answers.
    ignored = client.get("/ws/listings", params={"page_size": 5}).json()
    assert (len(ignored["results"]), ignored["count"]) == (10, 23)
    assert len(client.get("/ws/listings", params={"page-size": 500}).json()["results"]) == 23
    offline = client.get("/ws/listings", params={"publication_state": 3}).json()
    assert offline["count"] == 8
    assert all(r["quantity"] == 0 for r in offline["results"])
    stocked = client.get("/ws/listings", params={"min_quantity": 2, "max_quantity": 2}).json()
    assert stocked["count"] == 7


def test_unknown_listing_or_task_is_404(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    other = connect(server, token=OTHER_TOKEN)
    task_id = post_batch(client, [f"SKU-1;{EAN};GOOD;5;100;12"])
    listing = entries(finish_task(client, clock, task_id))["SKU-1"]
    for response in (
        client.get(f"/ws/listings/{uuid.uuid4()}"),
        client.get("/ws/listings/999999"),
        client.get("/ws/listings/detail", params={"sku": "nope"}),
        client.post(f"/ws/listings/{uuid.uuid4()}", json={"quantity": 1}),
        client.get("/ws/tasks/999999"),
        # another seller's listing and task
        other.get(f"/ws/listings/{listing['id']}"),
        other.get("/ws/listings/detail", params={"sku": "SKU-1"}),
        other.get(f"/ws/tasks/{task_id}"),
    ):
        assert response.status_code == 404, response.request.url
        assert response.json()["error"]["code"] == "not_found"
    assert other.get("/ws/listings").json()["count"] == 0


# --- limits ----------------------------------------------------------------------------------


def test_more_requests_than_the_window_allows_block_the_token(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start(requests_per_window=5, window_seconds=10, block_seconds=10)
    client, other = connect(server), connect(server, token=OTHER_TOKEN)
    for _ in range(5):
        assert client.get("/ws/listings").status_code == 200
        clock.advance(1)
    clock.advance(0.5)  # t = 5.5: all five requests still in the sliding window
    response = client.get("/ws/listings")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_requests"
    assert other.get("/ws/listings").status_code == 200  # limits are per token
    clock.advance(9)  # the oldest requests left the window, but the block lasts 10 s
    assert client.get("/ws/listings").status_code == 429
    clock.advance(1.1)
    assert client.get("/ws/listings").status_code == 200


def test_hourly_sku_line_budget_refuses_updates_with_429(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start(sku_lines_per_hour=3)
    client = connect(server)
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;5;100;12", f"SKU-2;{EAN};GOOD;5;100;12"])[0]
    url = f"/ws/listings/{listing['id']}"
    assert client.post(url, json={"quantity": 4}).status_code == 200  # third line of the hour
    response = client.post(url, json={"quantity": 3})
    assert response.status_code == 429
    listings_before = len(server.emulator.listings(TOKEN))
    response = client.post(
        "/ws/listings",
        json={
            "catalog": f"{HEADER}\nSKU-3;{EAN};GOOD;1;10;12\n",
            "quotechar": '"',
            "delimiter": ";",
            "encoding": "utf-8",
        },
    )
    assert response.status_code == 429
    assert "SKU line" in response.json()["error"]["message"]
    clock.advance(TASK_DELAY * 2)
    assert len(server.emulator.listings(TOKEN)) == listings_before  # no task was created
    assert detail(client, "SKU-1")["quantity"] == 4
    clock.advance(3600)
    assert client.post(url, json={"quantity": 3}).status_code == 200


# --- faults ----------------------------------------------------------------------------------


def test_named_sku_is_always_rejected_and_left_unchanged(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    listing = create(client, clock, [f"Blocked-SKU;{EAN};GOOD;5;100;12"])[0]
    faults = {"reject_skus": {"blocked-sku": "EAN blacklisted for this seller"}}
    assert client.post("/_emulator/faults", json=faults).status_code == 200
    results = entries(finish_task(
        client,
        clock,
        post_batch(client, ["BLOCKED-SKU;;;9;50;", f"OTHER-SKU;{EAN};GOOD;1;10;12"]),
    ))
    assert results["BLOCKED-SKU"] == {"sku": "BLOCKED-SKU", "code": "listing_rejected",
                                      "message": "EAN blacklisted for this seller", "ok": False}
    assert results["OTHER-SKU"]["ok"] and results["OTHER-SKU"]["status"] == "created"
    response = client.post(f"/ws/listings/{listing['id']}", json={"quantity": 0})
    assert response.status_code == 400
    assert response.json() == "EAN blacklisted for this seller"
    after = detail(client, "blocked-sku")
    assert (after["quantity"], after["price"]) == (5, "100.00")


def test_echo_auth_fault_answers_with_the_request_authorization_header(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    listing = create(client, clock, [f"ECHO-1;{EAN};GOOD;5;100;12"])[0]
    for bad in ({"echo_auth_skus": "ECHO-1"}, {"echo_auth_skus": [1]}, {"reject_code": ""}):
        assert client.post("/_emulator/faults", json=bad).status_code == 400, bad
    assert client.post("/_emulator/faults", json={"echo_auth_skus": ["echo-1"]}).status_code \
        == 200
    authorization = client.headers["authorization"]
    response = client.post(f"/ws/listings/{listing['id']}", json={"quantity": 0})
    assert response.status_code == 400
    assert response.json().endswith(f"Authorization: {authorization}")
    results = entries(finish_task(client, clock, post_batch(client, ["ECHO-1;;;9;50;"])))
    assert authorization in results["ECHO-1"]["message"]
    assert detail(client, "echo-1")["quantity"] == 5


def test_dropped_connection_after_apply_really_applies_the_change(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;1;100;12"])[0]
    client.post("/_emulator/faults", json={"share_drop": 1.0, "seed": 7})
    expected, seen = 1, set()
    for quantity in range(10, 30):
        with pytest.raises(httpx.TransportError):
            client.post(f"/ws/listings/{listing['id']}", json={"quantity": quantity})
        dropped = server.emulator.exchanges[-1].dropped
        seen.add(dropped)
        if dropped == "after":
            expected = quantity
        now = server.emulator.listing(TOKEN, "SKU-1", "fr-fr")
        assert now is not None
        assert now["quantity"] == expected
    assert seen == {"before", "after"}
    client.post("/_emulator/faults", json={"share_drop": 0})
    assert detail(client, "SKU-1")["quantity"] == expected


def test_injected_429_and_5xx_answer_as_cloudflare_would(start: Start, connect: Connect) -> None:
    server = start(faults=Faults(share_5xx=1.0, seed=3))
    client = connect(server)
    statuses = {client.get("/ws/listings").status_code for _ in range(12)}
    assert statuses == {500, 502, 503}
    assert any(
        e.status == 502 and isinstance(e.response, str) and "cf-ray" in e.response_headers
        for e in server.emulator.exchanges
    )
    client.post("/_emulator/faults", json={"share_5xx": 0, "share_429": 1.0})
    response = client.get("/ws/listings")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "too_many_requests"


def test_a_5xx_after_processing_applies_the_change_a_5xx_before_does_not(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;1;100;12"])[0]
    client.post("/_emulator/faults", json={"share_5xx": 1.0, "seed": 5})
    assert client.post(f"/ws/listings/{listing['id']}", json={"quantity": 7}).status_code >= 500
    assert server.emulator.exchanges[-1].fault == "5xx"
    assert detail_after_faults(client, "SKU-1")["quantity"] == 1
    client.post("/_emulator/faults", json={"share_5xx": 0, "share_5xx_after": 1.0})
    response = client.post(f"/ws/listings/{listing['id']}", json={"quantity": 8})
    assert response.status_code in (502, 504) and "cf-ray" in response.headers
    assert server.emulator.exchanges[-1].fault == "5xx-after"
    assert detail_after_faults(client, "SKU-1")["quantity"] == 8
    assert client.post("/_emulator/faults", json={"share_5xx_after": 2}).status_code == 400


def detail_after_faults(client: httpx.Client, sku: str) -> dict[str, Any]:
    """The listing as it is, read with every fault off (they stay off)."""
    client.post("/_emulator/faults", json={"share_5xx": 0, "share_5xx_after": 0})
    return detail(client, sku)


def test_every_batch_row_received_is_recorded_even_when_the_answer_is_lost(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    create(client, clock, [f"SKU-1;{EAN};GOOD;1;100;12", f"SKU-2;{EAN};GOOD;1;100;12"])
    client.post("/_emulator/faults", json={"share_5xx": 1.0})  # refused: nothing received
    body = {"catalog": f"{HEADER}\nSKU-1;{EAN};GOOD;2;100;12\n", "quotechar": '"',
            "delimiter": ";", "encoding": "utf-8"}
    assert client.post("/ws/listings", json=body).status_code >= 500
    client.post("/_emulator/faults", json={"share_5xx": 0, "share_5xx_after": 1.0})
    assert client.post("/ws/listings", json=body).status_code >= 500  # received, answer lost
    client.post("/_emulator/faults", json={"share_5xx_after": 0})
    again = finish_task(client, clock, post_batch(client, [f"SKU-1;{EAN};GOOD;3;100;12"]))
    assert entries(again)["SKU-1"]["status"] == "updated"  # the result cannot tell
    rows = server.emulator.batch_rows
    assert [(r.token, r.locale, r.sku) for r in rows] == [
        (TOKEN, "fr-fr", "SKU-1"), (TOKEN, "fr-fr", "SKU-2"), (TOKEN, "fr-fr", "SKU-1"),
        (TOKEN, "fr-fr", "SKU-1")]
    assert len({r.task_id for r in rows}) == 3
    server.emulator.reset()
    assert server.emulator.batch_rows == []


def test_unreported_skus_are_left_out_of_task_results_applied_or_not(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    create(client, clock, [f"SKU-{n};{EAN};GOOD;1;100;12" for n in (1, 2, 3)])
    for bad in ({"SKU-1": "lost"}, ["SKU-1"], {"SKU-1": 1}):
        assert client.post("/_emulator/faults", json={"unreported_skus": bad}).status_code == 400
    faults = {"unreported_skus": {"sku-1": "applied", "SKU-2": "skipped"}}
    assert client.post("/_emulator/faults", json=faults).status_code == 200
    task = finish_task(client, clock, post_batch(
        client, [f"SKU-{n};{EAN};GOOD;{5 + n};100;12" for n in (1, 2, 3)]))
    assert [entry["sku"] for entry in entries(task).values()] == ["SKU-3"]
    assert [detail(client, f"SKU-{n}")["quantity"] for n in (1, 2, 3)] == [6, 1, 8]
    server.emulator.reset()  # back to the configured faults
    assert server.emulator.faults.unreported_skus == {}


def test_slow_answer_makes_the_client_time_out(start: Start, connect: Connect) -> None:
    server = start(faults=Faults(share_slow=1.0, slow_seconds=0.3))
    with pytest.raises(httpx.ReadTimeout):
        connect(server, timeout=0.05).get("/ws/listings")


def test_unexpected_error_is_500_and_the_server_goes_on(
    start: Start, connect: Connect, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = start()
    client = connect(server)
    listing = create(client, clock, [f"SKU-1;{EAN};GOOD;1;100;12"])[0]

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    with monkeypatch.context() as patch:
        patch.setattr(server.emulator._listings, "public", broken)
        response = client.get(f"/ws/listings/{listing['id']}")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert client.get(f"/ws/listings/{listing['id']}").status_code == 200


# --- in-process helpers, admin, persistence --------------------------------------------------


def test_sale_decrements_global_stock(start: Start, connect: Connect, clock: FakeClock) -> None:
    server = start()
    client = connect(server)
    create(client, clock, [f"SKU-1;{EAN};GOOD;3;100;12"])
    server.emulator.sell(TOKEN, "sku-1", 2)
    response = client.post("/_emulator/sell", json={"token": TOKEN, "sku": "SKU-1", "quantity": 1})
    assert response.status_code == 200
    assert response.json()["quantity"] == 0
    assert detail(client, "SKU-1", "de-de")["quantity"] == 0
    assert client.post("/_emulator/sell", json={"sku": "SKU-1"}).status_code == 409
    admin = client.get("/_emulator/listings", params={"token": TOKEN}).json()
    assert admin[0]["markets"]["fr-fr"]["publication_state"] == 3


def test_exchanges_log_never_keeps_the_token(start: Start, connect: Connect) -> None:
    server = start()
    connect(server).get("/ws/listings", params={"page": 1})
    exchange = server.emulator.exchanges[-1]
    assert (exchange.method, exchange.path, exchange.query, exchange.status) == (
        "GET", "/ws/listings", {"page": "1"}, 200,
    )
    assert "authorization" not in {name.lower() for name in exchange.headers}
    assert TOKEN not in repr(exchange)


def test_task_is_processed_after_the_real_task_delay(start: Start, connect: Connect) -> None:
    server = start(clock=time.monotonic, task_delay=0.02)
    client = connect(server)
    task_id = post_batch(client, [f"SKU-1;{EAN};GOOD;1;100;12"])
    deadline = time.monotonic() + 2
    while client.get(f"/ws/tasks/{task_id}").json()["action_status"] != 9:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert detail(client, "SKU-1")["quantity"] == 1


def test_state_path_keeps_listings_tasks_and_ids_across_restart(
    start: Start, connect: Connect, clock: FakeClock, tmp_path: Path
) -> None:
    state = str(tmp_path / "emulator.sqlite")
    first = start(state_path=state)
    client = connect(first)
    task_id = post_batch(client, [f"SKU-1;{EAN};GOOD;5;100;12", f"SKU-2;{EAN_2};FAIR;1;50;12"])
    created = list(entries(finish_task(client, clock, task_id)).values())
    german = {"Accept-Language": "de-de"}
    client.post(f"/ws/listings/{created[0]['id']}", json={"price": "120"}, headers=german)
    pending = post_batch(client, ["SKU-1;;;9;;"])  # still waiting when the emulator stops
    first.stop()

    second = start(state_path=state)
    client = connect(second)
    listing = detail(client, "sku-1", "de-de")
    assert (listing["id"], listing["listing_id"], listing["price"]) == (
        created[0]["id"], created[0]["listing_id"], "120.00",
    )
    assert list(entries(client.get(f"/ws/tasks/{task_id}").json()).values()) == created
    assert entries(finish_task(client, clock, pending))["SKU-1"]["status"] == "updated"
    assert detail(client, "SKU-1")["quantity"] == 9
    third = create(client, clock, [f"SKU-3;{EAN};GOOD;1;10;12"])[0]
    assert third["listing_id"] == created[1]["listing_id"] + 1
    assert client.post("/_emulator/reset").status_code == 200
    assert client.get("/ws/listings").json()["count"] == 0


# --- observed behaviour: reused listings, resolved products (issue 13) ----------------------


def test_realistic_profile_reuses_a_listing_of_the_same_product_and_grade_keeping_its_sku(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start(realistic=True)
    assert server.emulator.config.result_key == "row"
    client = connect(server)
    task = finish_task(client, clock, post_batch(client, [f"OLD-1;{EAN};GOOD;5;100;12"]))
    old = in_row_order(task)[0]
    task = finish_task(client, clock, post_batch(client, [
        f"NEW-1;{EAN};GOOD;2;90;12", f"NEW-2;{EAN};FAIR;1;80;12"]))
    reused, fresh = in_row_order(task)
    assert (reused["sku"], reused["listing_id"], reused["id"]) == ("OLD-1", old["listing_id"],
                                                                   old["id"])
    assert fresh["sku"] == "NEW-2" and fresh["listing_id"] != old["listing_id"]
    assert [(item["sku"], item["quantity"]) for item in server.emulator.listings(TOKEN)] == [
        ("OLD-1", 2), ("NEW-2", 1)]
    # The switch is a fault like the others: off, a new SKU is a new listing.
    assert client.post("/_emulator/faults", json={"reuse_listings": "yes"}).status_code == 400
    assert client.post("/_emulator/faults", json={"reuse_listings": False}).status_code == 200
    task = finish_task(client, clock, post_batch(client, [f"NEW-3;{EAN};GOOD;1;70;12"]))
    assert in_row_order(task)[0]["sku"] == "NEW-3"
    assert len(server.emulator.listings(TOKEN)) == 3


def test_a_product_of_a_model_family_is_resolved_to_the_familys_first_product(
    start: Start, connect: Connect, clock: FakeClock
) -> None:
    server = start()
    client = connect(server)
    first, other = str(uuid.uuid4()), str(uuid.uuid4())
    for pid in (first, other):
        body = {"product_id": pid, "title": "iPhone 13", "family": "iphone-13"}
        assert client.post("/_emulator/products", json=body).status_code == 200
    header = "sku;product_id;grade;quantity;price;warranty_delay"
    assert create(client, clock, [f"A-1;{other};GOOD;1;10;12"], header)[0]["product_id"] == other
    assert client.post("/_emulator/faults", json={"resolve_products": True}).status_code == 200
    created = create(client, clock, [f"B-1;{other};GOOD;1;10;12"], header)[0]
    assert created["product_id"] == first
    # A listing of the family's first product takes a row naming another of the family.
    assert create(client, clock, [f"B-1;{other};GOOD;3;10;12"], header)[0]["status"] == \
        "updated"


def test_syncer_emulator_on_a_port_in_use_is_a_clear_error_not_a_traceback() -> None:
    from click.testing import CliRunner

    from syncer.cli.main import cli

    with EmulatorServer() as taken:
        result = CliRunner().invoke(cli, ["emulator", "--port", str(taken.port)])
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit)
    assert f"error: cannot listen on 127.0.0.1:{taken.port}: " in result.stderr
    assert "another --port (0: any free port)" in result.stderr
    assert "Traceback" not in result.output
