"""`--results FILE` on apply and run: a run-results JSON (as dbt's run_results.json) of what
became of every offer, checked against what the loopback emulator holds and refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from syncer.emulator.server import EmulatorServer
from tests.conftest import TOKEN, catalog_row
from tests.helpers import Shop, checked_emulator


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as running:
        running.emulator.faults.reject_skus["R-1"] = "grade not allowed for this product"
        running.emulator.faults.echo_auth_skus.append("R-2")  # a refusal quoting the token
        yield running


@pytest.fixture
def shop(tmp_path: Path, server: EmulatorServer, state_url: str,
         monkeypatch: pytest.MonkeyPatch) -> Shop:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    return Shop(tmp_path, server, state_url, stores=(("fr", "fr-fr"),),
                extra="[limits]\nsku_lines_per_hour = 8\n")


def read(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    for secret in (TOKEN, base64.b64encode(TOKEN.encode()).decode().rstrip("=")):
        assert secret not in text
    return json.loads(text)  # type: ignore[no-any-return]


def by_sku(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["sku"]: r for r in results["results"]}


def test_results_hold_what_the_emulator_confirmed_and_refused(
        shop: Shop, server: EmulatorServer, tmp_path: Path) -> None:
    emulator = server.emulator
    shop.catalog([catalog_row(f"R-{i}") for i in range(6)])
    out = tmp_path / "reports" / "results.json"
    out.parent.mkdir()
    out.write_text("an older file, replaced whole")
    shop.run("apply", "--results", str(out), code=3)
    first = read(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["results.json"]  # no temp left

    meta = first["metadata"]
    assert meta["command"] == "apply" and meta["error"] is None
    assert meta["started_at"] <= meta["finished_at"]
    assert first["summary"] == {"offers": 6, "confirmed": 4, "refused": 2, "unreachable": 0,
                                "failed": 0, "queued": 0, "in_flight": 0,
                                "already_published": 0}
    [store] = first["stores"]
    assert (store["store"], store["kind"], store["outcome"]) == ("fr", "offers", "partial")
    assert (store["counts"]["created"], store["counts"]["failed"]) == (4, 2)

    offers = by_sku(first)
    held = {listing["sku"]: listing for listing in emulator.listings(TOKEN)}
    confirmed = {sku for sku, r in offers.items() if r["outcome"] == "confirmed"}
    assert confirmed == set(held) == {"R-0", "R-3", "R-4", "R-5"}
    [post] = [e for e in emulator.exchanges if (e.method, e.path) == ("POST", "/ws/listings")]
    task_id = post.response["bodymessage"]
    for sku in confirmed:
        entry = offers[sku]
        assert entry["action"] == "create"
        assert entry["listing_id"] == str(held[sku]["id"])
        assert (entry["task_id"], entry["request_id"]) == (task_id, post.request_id)
        timing = entry["timing"]
        assert timing["sent_at"] <= timing["settled_at"] and timing["seconds"] >= 0
    refused = offers["R-1"]
    assert (refused["outcome"], refused["task_id"]) == ("refused", task_id)
    assert refused["message"] == "grade not allowed for this product"
    assert "<redacted>" in offers["R-2"]["message"]  # Back Market echoed the token

    # Next: a stock and a price change go as real-time updates, within the 2 lines the
    # hour's budget of 8 has left; the retries and the new offers are queued.
    rows = [catalog_row(f"R-{i}") for i in range(9)]
    rows[0] = catalog_row("R-0", price_fr="149.00")
    rows[3] = catalog_row("R-3", stock="2")
    shop.catalog(rows)
    emulator.faults.reject_skus.clear()
    before = len(emulator.exchanges)
    shop.run("apply", "--results", str(out))
    second = by_sku(read(out))
    singles = {e.path.rsplit("/", 1)[1]: e for e in emulator.exchanges[before:]
               if e.method == "POST" and e.path.startswith("/ws/listings/")}
    for sku, field, value in (("R-3", "quantity", 2), ("R-0", "price", "149.00")):
        entry = second[sku]
        exchange = singles[entry["listing_id"]]
        assert exchange.request[field] == value
        assert (entry["action"], entry["outcome"]) == ("update", "confirmed")
        assert entry["request_id"] == exchange.request_id and entry["task_id"] is None
        assert emulator.listing(TOKEN, sku, "fr-fr")[field] == value  # type: ignore[index]
    queued = {sku: r for sku, r in second.items() if r["outcome"] == "queued"}
    assert {sku: r["action"] for sku, r in queued.items()} == {
        "R-1": "retry", "R-2": "retry", "R-6": "create", "R-7": "create", "R-8": "create"}
    assert all("hourly budget of 8 SKU lines is used up" in r["message"]
               for r in queued.values())
    assert all(r["timing"]["sent_at"] is None for r in queued.values())


def test_run_writes_results_and_nothing_without_the_option(shop: Shop, tmp_path: Path,
                                                          server: EmulatorServer) -> None:
    server.emulator.faults.reject_skus.clear()
    server.emulator.faults.echo_auth_skus.clear()
    shop.catalog([catalog_row("A-1"), catalog_row("A-2")])
    out = tmp_path / "run.json"
    shop.run("run", "--results", str(out))
    results = read(out)
    assert results["metadata"]["command"] == "run"
    assert [(s["store"], s["kind"], s["outcome"]) for s in results["stores"]] == [
        ("fr", "offers", "ok")]
    assert {r["sku"]: r["outcome"] for r in results["results"]} == {
        "A-1": "confirmed", "A-2": "confirmed"}
    before = set(tmp_path.iterdir())
    shop.run("run")  # nothing due, no file asked for: none written
    assert set(tmp_path.iterdir()) == before


def test_a_results_file_in_a_missing_folder_gets_its_folders_made(
        shop: Shop, tmp_path: Path) -> None:
    shop.catalog([catalog_row("A-1")])
    out = tmp_path / "build" / "results" / "r.json"
    shop.run("apply", "--results", str(out))
    assert read(out)["summary"]["confirmed"] == 1


def test_a_results_path_under_a_file_is_refused_before_sending(
        shop: Shop, server: EmulatorServer, tmp_path: Path) -> None:
    shop.catalog([catalog_row("A-1")])
    (tmp_path / "build").write_text("a file, not a folder")
    result = shop.run("apply", "--results", str(tmp_path / "build" / "results" / "r.json"),
                      code=1)
    assert f"--results {tmp_path / 'build' / 'results' / 'r.json'}: " \
        f"{tmp_path / 'build'} is a file, not a folder" in result.stderr
    assert server.emulator.exchanges == []
    assert (tmp_path / "build").read_text() == "a file, not a folder"


def test_a_command_stopped_by_an_error_still_writes_its_results_naming_it(
        shop: Shop, server: EmulatorServer, tmp_path: Path) -> None:
    server.emulator.faults.reject_skus.clear()
    server.emulator.faults.echo_auth_skus.clear()
    shop.catalog([catalog_row(f"L-{i}") for i in range(3)])
    shop.run("apply")
    shop.catalog([])  # an empty export: the mass-zero guard stops the run
    out = tmp_path / "stopped.json"
    shop.run("apply", "--results", str(out), code=1)
    results = read(out)
    assert "the plan would zero 3 of 3 live offers" in results["metadata"]["error"]
    assert results["results"] == [] and results["summary"]["offers"] == 0
    assert all(listing["quantity"] == 5 for listing in server.emulator.listings(TOKEN))
