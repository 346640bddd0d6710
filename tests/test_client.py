"""The API client, one function at a time, through httpx.MockTransport (the loopback tests
against the emulator are in test_publish_e2e.py)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from syncer.backmarket.client import BackMarketClient, batch_csv
from syncer.backmarket.limits import RateLimiter
from syncer.backmarket.taskresult import SentLine, task_outcomes
from syncer.backmarket.transport import Transport
from syncer.errors import (
    Blocked,
    OfferError,
    OutcomeUnknown,
    RetriableError,
    TokenRejected,
)
from tests.contract import check_request

TOKEN = "s3cr3t-token-value"
UA = "BM-Tests-suite;tests@example.com"


def client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: object
           ) -> tuple[BackMarketClient, list[float]]:
    slept: list[float] = []

    def checked(request: httpx.Request) -> httpx.Response:
        # Whatever the client sends must be what Back Market's spec accepts.
        check_request(request.method, request.url.path,
                      json.loads(request.content) if request.content else None)
        return handler(request)

    http = httpx.Client(transport=httpx.MockTransport(checked))
    c = BackMarketClient(Transport("https://www.backmarket.fr", SecretStr(TOKEN), "de-de", UA,
                                   store="de", http=http,
                                   sleep=slept.append, **kwargs))  # type: ignore[arg-type]
    return c, slept


def listing(**fields: object) -> dict[str, object]:
    return {"id": "7a97a1b6-547e-4718-bc72-5b84aca91b09", "sku": "A", "quantity": 1, **fields}


def test_every_request_carries_auth_locale_user_agent_and_json_headers() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=listing())

    c, _ = client(handler)
    c.update_listing("L1", {"quantity": 3})
    (request,) = seen
    assert request.headers["authorization"] == f"Basic {TOKEN}"
    assert request.headers["accept-language"] == "de-de"
    assert request.headers["user-agent"] == UA
    assert request.headers["accept"] == "application/json"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"quantity": 3}


def test_token_appears_in_no_repr_and_no_error() -> None:
    c, _ = client(lambda r: httpx.Response(401, json={"error": {"code": "unauthenticated",
                                                                "message": "bad token"}}))
    assert TOKEN not in repr(c)
    with pytest.raises(TokenRejected) as caught:
        c.check()
    assert "token rejected for store de" in str(caught.value)
    assert TOKEN not in str(caught.value) and TOKEN not in repr(caught.value)


def test_429_waits_out_the_block_and_retries() -> None:
    answers = iter([httpx.Response(429, json={"error": {"code": "r", "message": "slow"}}),
                    httpx.Response(200, json=listing())])
    c, slept = client(lambda r: next(answers), rate_block_seconds=10.0)
    assert c.update_listing("L1", {"quantity": 1})["id"]
    assert slept == [10.0] and c.stats.rate_limited == 1 and c.stats.retries == 1


def test_5xx_and_dropped_connections_back_off_then_succeed() -> None:
    calls = iter(["500", "drop", "ok"])

    def handler(request: httpx.Request) -> httpx.Response:
        what = next(calls)
        if what == "drop":
            raise httpx.RemoteProtocolError("server disconnected", request=request)
        return httpx.Response(500 if what == "500" else 200, json=listing())

    c, slept = client(handler)
    c.get_listing("L1")
    assert len(slept) == 2 and all(0 <= s <= 30 for s in slept)
    assert c.stats.retries == 2


def test_retries_are_bounded() -> None:
    c, slept = client(lambda r: httpx.Response(503, text="<html>down</html>"), max_retries=3)
    with pytest.raises(RetriableError, match="HTTP 503"):
        c.get_listing("L1")
    assert len(slept) == 3


def test_retries_give_up_at_the_requests_deadline() -> None:
    """Slow 503s (4 s each): the retries that would outlive the deadline (a third of the
    lock lease) are not made, and each attempt's timeout is cut to what is left of it."""
    now = [0.0]
    timeouts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeout = request.extensions["timeout"]["read"]
        timeouts.append(timeout)
        now[0] += min(timeout, 4.0)
        if timeout < 4.0:
            raise httpx.ReadTimeout("no answer in time", request=request)
        return httpx.Response(503, text="<html>down</html>")

    def sleep(seconds: float) -> None:
        now[0] += seconds

    http = httpx.Client(transport=httpx.MockTransport(handler))
    c = BackMarketClient(Transport("https://www.backmarket.fr", SecretStr(TOKEN), "de-de", UA,
                                   store="de", http=http,
                                   sleep=sleep, clock=lambda: now[0], timeout=5.0, max_retries=10,
                                   backoff_base=1.0, backoff_cap=3.0, deadline=15.0,
                                   rng=random.Random(0)))
    with pytest.raises(RetriableError, match="ReadTimeout"):
        c.update_listing("L1", {"quantity": 3})
    assert now[0] == 15.0  # gave up at the deadline, far from ten retries
    assert (c.stats.requests, c.stats.retries) == (3, 2)
    assert timeouts[:2] == [5.0, 5.0] and timeouts[2] < 4.0  # the last had what was left


def test_batch_post_is_never_resent_after_a_lost_answer() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    c, _ = client(handler)
    with pytest.raises(OutcomeUnknown, match="may have been applied"):
        c.create_batch(["sku"], [{"sku": "A"}])
    assert len(calls) == 1


def test_batch_post_refused_before_sending_is_retried() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append("x")
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json={"bodymessage": 42, "statuscode": 200})

    c, _ = client(handler)
    assert c.create_batch(["sku"], [{"sku": "A"}]) == 42


def test_batch_body_uses_back_market_csv_dialect() -> None:
    bodies: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"bodymessage": 7, "statuscode": 200})

    c, _ = client(handler)
    c.create_batch(["sku", "comment"], [{"sku": "A", "comment": 'say "hi"; ok'}])
    (body,) = bodies
    assert body["delimiter"] == ";" and body["quotechar"] == '"' and body["encoding"] == "utf-8"
    assert body["catalog"] == '"sku";"comment"\n"A";"say ""hi""; ok"\n'


def test_offer_errors_keep_back_markets_message_and_request_id() -> None:
    c, _ = client(lambda r: httpx.Response(
        400, json="price must be positive", headers={"x-request-id": "req-9"}))
    with pytest.raises(OfferError) as caught:
        c.update_listing("L1", {"price": "0"})
    assert caught.value.message == "price must be positive"
    assert caught.value.request_id == "req-9" and caught.value.status == 400


def test_waf_block_reports_the_cf_ray() -> None:
    c, _ = client(lambda r: httpx.Response(403, text="<html>blocked</html>",
                                           headers={"cf-ray": "931354450813d142-CDG"}))
    with pytest.raises(Blocked, match="931354450813d142-CDG") as caught:
        c.check()
    assert caught.value.cf_ray == "931354450813d142-CDG"


def test_bot_management_block_is_fatal() -> None:
    body = {"errors": [{"code": "bot-need-challenge", "message": "Forbidden"}]}
    c, _ = client(lambda r: httpx.Response(403, json=body))
    with pytest.raises(Blocked, match="bot management"):
        c.check()


def test_paging_follows_next_but_never_its_host() -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        page = int(request.url.params["page"])
        assert request.url.params["page-size"] == "50"
        following = "https://evil.example/ws/listings?page=2" if page == 1 else None
        return httpx.Response(200, json={"count": 2, "next": following, "previous": None,
                                         "results": [listing(sku=f"S{page}")]})

    c, _ = client(handler)
    assert [item["sku"] for item in c.iter_listings()] == ["S1", "S2"]
    assert hosts == ["www.backmarket.fr", "www.backmarket.fr"]


def test_find_listing_returns_none_on_404() -> None:
    c, _ = client(lambda r: httpx.Response(404, json={"error": {"code": "not-found",
                                                                "message": "no"}}))
    assert c.find_listing("nope") is None


def test_limiter_spaces_requests() -> None:
    now = [0.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(2, 10.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(5):
        limiter.acquire()
    assert waits == [10.0, 10.0]


def test_task_outcomes_still_read_the_first_guessed_shape() -> None:
    task = {"action_status": 9, "result": {"listings": [
        {"sku": "A", "status": "created", "id": "u1", "errors": []},
        {"sku": "b", "status": "error", "id": None,
         "errors": [{"field": "grade", "message": "unknown grade"}]}]}}
    outcomes = task_outcomes(task, [SentLine("A", 1), SentLine("B", 2)]).outcomes
    assert outcomes["a"].ok and outcomes["a"].listing_id == "u1"
    assert not outcomes["b"].ok and outcomes["b"].message == "grade: unknown grade"


def test_batch_csv_quotes_every_field() -> None:
    assert batch_csv(["a"], [{"a": "1"}]) == '"a"\n"1"\n'
