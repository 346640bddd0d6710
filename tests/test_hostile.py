"""A hostile or broken Back Market (issue 12): every answer is bounded and checked.

A small HTTP server on loopback answers what a broken proxy, a buggy release or an attacker
in the middle would: paging that never ends, an answer dripped a byte at a time, JSON of the
wrong shape, a body of 70 MB. `syncer check` and `syncer reconcile` must end, each with one
clear line naming the endpoint (and the field), exit 1, and no traceback.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.conftest import TOKEN
from tests.helpers import LoopbackHandler, LoopbackServer, Shop, serving

Answer = Callable[["_Handler", dict[str, list[str]]], None]
HANG_GUARD = 60.0  # seconds: far beyond any bound below; reaching it means a hang


class _Server(LoopbackServer):
    answer: Answer


class _Handler(LoopbackHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.answer(self, parse_qs(urlsplit(self.path).query))

    send = LoopbackHandler.send_body


@pytest.fixture
def hostile() -> Iterator[_Server]:
    with serving(_Server(("127.0.0.1", 0), _Handler)) as server:
        yield server


@pytest.fixture
def shop(tmp_path: Path, hostile: _Server, monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, hostile, f"sqlite:///{tmp_path / 'state.db'}",  # type: ignore[arg-type]
                stores=(("fr", "fr-fr"),),
                api_extra="timeout_seconds = 1\nmax_retries = 1\nbackoff_base_seconds = 0.01\n"
                          "backoff_cap_seconds = 0.01\n")
    shop.catalog([])
    return shop


def page(results: list[Any], count: Any = 1, following: str | None = None) -> bytes:
    return json.dumps({"count": count, "next": following, "previous": None,
                       "results": results}).encode()


def listing(sku: str = "A-1", **fields: Any) -> dict[str, Any]:
    return {"id": f"id-{sku}", "listing_id": 1, "sku": sku, "quantity": 5, "price": "199.90",
            "currency": "EUR", "grade": "EXCELLENT", "warranty_delay": 12, "comment": None,
            "publication_state": 2, "min_price": None, "max_price": None, "shippings": [],
            **fields}


def run_bounded(shop: Shop, *args: str) -> tuple[int, str]:
    """The command's exit code and what a person reads (stdout + stderr without JSON logs),
    failing the test if it does not end."""
    done: dict[str, Any] = {}

    def target() -> None:
        done["result"] = shop.run(*args, code=None)

    thread = threading.Thread(target=target, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(HANG_GUARD)
    assert not thread.is_alive(), f"`syncer {' '.join(args)}` still running after " \
        f"{time.monotonic() - started:.0f} s"
    result = done["result"]
    assert "Traceback" not in result.output + result.stderr
    assert not result.exception or isinstance(result.exception, SystemExit), result.exception
    text = "\n".join(line for line in (result.stdout + result.stderr).splitlines()
                     if not line.startswith("{"))
    return result.exit_code, text


# --- paging that never ends ----------------------------------------------------------------

@pytest.mark.parametrize("following", [
    "https://www.backmarket.fr/ws/listings?page=1",   # always back to page 1
    "https://www.backmarket.fr/ws/listings?page=2",   # always "page 2", even on page 2
    "https://www.backmarket.fr/ws/listings?cursor=x",  # no page number: page + 1 forever
], ids=["back-to-1", "stuck-on-2", "no-page-number"])
def test_paging_that_never_ends_stops_with_an_error(shop: Shop, hostile: _Server,
                                                    following: str) -> None:
    requests: list[str] = []

    def answer(handler: _Handler, query: dict[str, list[str]]) -> None:
        requests.append(query.get("page", ["?"])[0])
        handler.send(page([listing()], count=1, following=following))

    hostile.answer = answer
    code, text = run_bounded(shop, "reconcile")
    assert code == 1, text
    assert "GET /ws/listings page" in text and "stopped reading pages" in text
    assert len(requests) <= 3


def test_empty_pages_that_link_on_stop_with_an_error(shop: Shop, hostile: _Server) -> None:
    def answer(handler: _Handler, query: dict[str, list[str]]) -> None:
        number = int(query.get("page", ["1"])[0])
        handler.send(page([], count=None, following=f"/ws/listings?page={number + 1}"))

    hostile.answer = answer
    code, text = run_bounded(shop, "reconcile")
    assert code == 1 and "an empty page links to a next one" in text, text


# --- slow drip and huge bodies ---------------------------------------------------------------

def test_an_answer_dripped_a_byte_at_a_time_is_cut_at_the_timeout(shop: Shop,
                                                                  hostile: _Server) -> None:
    def answer(handler: _Handler, query: dict[str, list[str]]) -> None:
        body = page([listing()])
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for byte in body:  # one byte every 0.3 s: each read is quick, the whole is not
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(0.3)

    hostile.answer = answer
    started = time.monotonic()
    code, text = run_bounded(shop, "check")
    assert code == 1, text
    assert "answer not complete after 1 s" in text
    assert f"from 127.0.0.1:{hostile.server_address[1]}" in text
    assert time.monotonic() - started < HANG_GUARD / 2


def test_an_answer_of_70_mb_is_not_read_whole(shop: Shop, hostile: _Server) -> None:
    def answer(handler: _Handler, query: dict[str, list[str]]) -> None:
        handler.send(b" " * (70 * 2**20) + page([listing()]))

    hostile.answer = answer
    code, text = run_bounded(shop, "check")
    assert code == 1 and "answer larger than 64 MiB" in text, text


# --- well-formed JSON of the wrong shape ---------------------------------------------------------

@pytest.mark.parametrize(("body", "field"), [
    (b'{"count": NaN, "next": null, "results": []}', "count"),
    (b'{"count": 1, "next": null, "results": "ab"}', "results"),
    (b'{"count": -3, "next": null, "results": []}', "count"),
    (b'{"count": 1e400, "next": null, "results": []}', "count"),
    (b'{"count": "many", "next": null, "results": []}', "count"),
    (b'{"count": 1, "next": 7, "results": []}', "next"),
], ids=["nan", "results-string", "negative-count", "count-1e400", "count-string", "next-int"])
def test_check_names_the_field_of_a_wrong_answer(shop: Shop, hostile: _Server, body: bytes,
                                                 field: str) -> None:
    hostile.answer = lambda handler, query: handler.send(body)
    code, text = run_bounded(shop, "check")
    assert code == 1, text
    assert f"GET /ws/listings: unexpected answer from Back Market: field {field}:" in text


@pytest.mark.parametrize(("item", "field"), [
    (listing(quantity=1e400), "results.0.quantity"),
    (listing(quantity="five"), "results.0.quantity"),
    (listing(price="NaN"), "results.0.price"),
    (listing(price=[1, 2]), "results.0.price"),
    (listing(shippings="dhl"), "results.0.shippings"),
    ({"id": "x", "quantity": 1}, "results.0.sku"),
    ([1, 2], "results.0"),
], ids=["quantity-1e400", "quantity-text", "price-nan", "price-list", "shippings-string",
        "no-sku", "listing-list"])
def test_reconcile_names_the_field_of_a_wrong_listing(shop: Shop, hostile: _Server,
                                                      item: Any, field: str) -> None:
    hostile.answer = lambda handler, query: handler.send(page([item]))
    code, text = run_bounded(shop, "reconcile")
    assert code == 1, text
    assert f"GET /ws/listings page 1: unexpected answer from Back Market: field {field}:" \
        in text


def test_a_top_level_list_is_one_clear_error(shop: Shop, hostile: _Server) -> None:
    hostile.answer = lambda handler, query: handler.send(b"[1, 2]")
    code, text = run_bounded(shop, "check")
    assert code == 1 and "GET /ws/listings: unexpected answer '[1, 2]'" in text, text


def test_an_api_that_is_down_is_named_by_host_and_port(shop: Shop, hostile: _Server) -> None:
    port = hostile.server_address[1]
    hostile.shutdown()
    hostile.server_close()  # nothing listens on the port any more
    code, text = run_bounded(shop, "check")
    assert code == 1, text
    assert f"GET /ws/listings: ConnectError from 127.0.0.1:{port}" in text
