"""orders accept: paid lines (order state 1, line state 1) are accepted (new_state 2) by
policy: "stock" when the catalog's stock of the SKU covers them, "all", or "manual" (only
the lines of --accept FILE); lines of --cancel FILE are cancelled (new_state 4).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncer.backmarket.client import BackMarketClient
from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.core.offers import sku_key
from syncer.errors import ApiError, OfferError
from syncer.orders.files import LineChoice, parse_line_choices
from syncer.orders.records import (
    ACCEPTED_OR_LATER,
    LINE_ACCEPTED,
    LINE_CANCELLED,
    LINE_PAID,
    LINE_STATE_NAMES,
    ORDER_PAID,
    ORDER_TO_SHIP,
    find_order,
    line_state,
    line_state_name,
    save_order,
)
from syncer.orders.report import ClientFor, Outcome, StepReport
from syncer.pipeline.planner import catalog_source
from syncer.planning.cells import BadValue, parse_count
from syncer.planning.mapping import compile_mapping, load_profile
from syncer.state.store import StateStore


@dataclass(frozen=True, slots=True)
class CatalogStock:
    sku: str
    row: int
    stock: int | None
    problem: str | None = None


def catalog_stock(settings: Settings, catalog: Path | None = None) -> dict[str, CatalogStock]:
    """The stock column of every catalog row, by SKU key, read through the mapping profile
    (before safety stock and max quantity: what is physically there to ship)."""

    profile = load_profile(settings.mapping_path())
    found: dict[str, CatalogStock] = {}
    with catalog_source(settings, catalog).open() as stream:
        mapping = compile_mapping(profile, stream.header, settings.stores)
        sku_of, stock_of = mapping.offer["sku"], mapping.offer["stock"]
        for row, values in stream.rows:
            if len(values) != len(stream.header):
                continue
            sku = sku_of(values)
            if sku is None:
                continue
            key = sku_key(sku)
            if key in found:
                first = found[key]
                found[key] = CatalogStock(sku, first.row, None, (
                    f"the catalog has SKU {sku} on rows {first.row} and {row}"))
                continue
            raw = stock_of(values)
            try:
                stock = parse_count(raw or "")
            except BadValue as exc:
                found[key] = CatalogStock(sku, row, None, (
                    f"catalog row {row}: stock {raw!r} is not {exc.expected}"))
            else:
                found[key] = CatalogStock(sku, row, stock)
    return found


@dataclass
class _LineTask:
    action: str  # "accept" or "cancel"
    sku: str
    orderline_id: int
    row: int | None = None  # the row of the --accept/--cancel file that asked for it


def accept(settings: Settings, stores: Sequence[StoreSettings], state: StateStore,
           client_for: ClientFor, *, accept_file: Path | None = None,
           cancel_file: Path | None = None, catalog: Path | None = None,
           dry_run: bool = False) -> StepReport:
    """Cancel the lines of ``cancel_file``, accept those of ``accept_file``, and decide the
    other paid lines by the policy (``orders.accept_policy``). Lines are taken oldest
    payment first, so that scarce stock goes to the earliest orders."""
    report = StepReport()
    policy = settings.orders.accept_policy
    chosen: dict[tuple[str, int], dict[int, _LineTask]] = {}  # (store, order) -> line tasks
    excluded: set[tuple[tuple[str, int], int]] = set()  # lines listed twice: left alone
    orders: dict[tuple[str, int], dict[str, Any]] = {}
    for action, path in (("cancel", cancel_file), ("accept", accept_file)):
        if path is None:
            continue
        choices, problems = parse_line_choices(path)
        for problem in problems:
            report.add(problem)
        for choice in choices:
            _choose(choice, action, stores, state, chosen, excluded, orders, report)

    stock = None
    for store in stores:
        paid = state.orders.orders_in_state([store.name], ORDER_PAID)
        for order in paid:
            orders.setdefault((store.name, order["order_id"]), order)
        pending = [(order, line) for order in paid for line in order["lines"].values()
                   if line["state"] == LINE_PAID
                   and line["orderline_id"] not in chosen.get((store.name, order["order_id"]),
                                                              {})
                   and ((store.name, order["order_id"]), line["orderline_id"]) not in excluded]
        if policy == "stock" and pending and stock is None:
            stock = catalog_stock(settings, catalog)
        taken = _accepted_not_shipped(settings, store, state) if policy == "stock" else {}
        for order, line in pending:
            reason = _hold_reason(policy, line, stock or {}, taken)
            key = (store.name, order["order_id"])
            if reason is None:
                chosen.setdefault(key, {})[line["orderline_id"]] = _LineTask(
                    "accept", line["sku"], line["orderline_id"])
                continue
            report.add(Outcome("would-hold" if dry_run else "held", store.name,
                               order["order_id"], line["sku"], message=reason))
            if not dry_run:
                before = state.orders.line_actions(store.account, order["order_id"]).get(
                    line["orderline_id"])
                if before is None or (before["action"], before["reason"]) != ("hold", reason):
                    state.orders.record_line_action(store.account, line["orderline_id"],
                                                    order["order_id"], line["sku"], "hold", "held",
                                                    reason)

    by_name = {store.name: store for store in stores}
    for (name, order_id), tasks in sorted(chosen.items(), key=lambda item: _payment_order(
            orders.get(item[0]))):
        store = by_name[name]
        ordered = sorted(tasks.values(), key=lambda t: (t.action != "cancel", t.orderline_id))
        if dry_run:
            for task in ordered:
                report.add(Outcome(f"would-{task.action}", name, order_id, task.sku,
                                   row=task.row))
            continue
        _apply_line_tasks(store, client_for(store), state, order_id, ordered, report)
    return report


def _choose(choice: LineChoice, action: str, stores: Sequence[StoreSettings],
            state: StateStore, chosen: dict[tuple[str, int], dict[int, _LineTask]],
            excluded: set[tuple[tuple[str, int], int]],
            orders: dict[tuple[str, int], dict[str, Any]], report: StepReport) -> None:
    """Check one row of an --accept/--cancel file against the state and queue its task."""
    found = find_order(stores, state, choice.order_id)
    if found is None:
        report.add(Outcome("failed", None, choice.order_id, choice.sku, choice.row, "order_id",
                           f"order {choice.order_id} is not in the state of these stores; run "
                           "`syncer orders pull` first"))
        return
    store, order = found
    key = (store.name, choice.order_id)
    orders.setdefault(key, order)
    line = next((line for line in order["lines"].values()
                 if sku_key(line["sku"]) == sku_key(choice.sku)), None)
    if line is None:
        skus = ", ".join(line["sku"] for line in order["lines"].values())
        report.add(Outcome("failed", store.name, choice.order_id, choice.sku, choice.row, "sku",
                           f"order {choice.order_id} has no line with this SKU (it has {skus})"))
        return
    earlier = chosen.get(key, {}).get(line["orderline_id"])
    if earlier is not None or (key, line["orderline_id"]) in excluded:
        where = f" (row {earlier.row})" if earlier is not None else ""
        report.add(Outcome("failed", store.name, choice.order_id, line["sku"], choice.row,
                           "sku", f"this line is listed more than once{where}; nothing is "
                                  "sent for it"))
        chosen.get(key, {}).pop(line["orderline_id"], None)
        excluded.add((key, line["orderline_id"]))
        return
    done = LINE_CANCELLED if action == "cancel" else LINE_ACCEPTED
    if line["state"] == done or (action == "accept" and line["state"] in ACCEPTED_OR_LATER):
        report.add(Outcome("skipped", store.name, choice.order_id, line["sku"], choice.row,
                           message=f"already {LINE_STATE_NAMES[line['state']]}"))
        return
    if line["state"] != LINE_PAID:
        done_name = "cancelled" if action == "cancel" else "accepted"
        report.add(Outcome("failed", store.name, choice.order_id, line["sku"], choice.row,
                           "sku", f"the line is {line_state_name(line['state'])}; only a paid "
                                  f"line can be {done_name}"))
        return
    chosen.setdefault(key, {})[line["orderline_id"]] = _LineTask(
        action, line["sku"], line["orderline_id"], choice.row)


def _accepted_not_shipped(settings: Settings, store: StoreSettings, state: StateStore
                          ) -> dict[str, int]:
    """Units of each SKU in lines accepted and not shipped yet, over every store of the
    account (stock is global): still on the shelf, so still counted in the catalog's stock,
    but promised to a buyer."""
    names = [s.name for s in settings.stores if s.account == store.account]
    taken: dict[str, int] = {}
    for order_state in (ORDER_PAID, ORDER_TO_SHIP):
        for order in state.orders.orders_in_state(names, order_state):
            for line in order["lines"].values():
                if line["state"] == LINE_ACCEPTED:
                    key = sku_key(line["sku"])
                    taken[key] = taken.get(key, 0) + int(line["quantity"])
    return taken


def _hold_reason(policy: str, line: Mapping[str, Any], stock: Mapping[str, CatalogStock],
                 taken: dict[str, int]) -> str | None:
    """Why the policy leaves a paid line for the seller, or None to accept it."""
    if policy == "all":
        return None
    if policy == "manual":
        return "accept policy is manual: list the line in --accept FILE to accept it"
    key = sku_key(line["sku"])
    entry = stock.get(key)
    if entry is None:
        return "the SKU is not in the catalog"
    if entry.stock is None:
        return entry.problem or "the catalog gives no stock for the SKU"
    used = taken.get(key, 0)
    if entry.stock - used < line["quantity"]:
        earlier = f" ({used} already promised to accepted, unshipped lines)" if used else ""
        return (f"catalog stock is {entry.stock}{earlier}, the line needs {line['quantity']}; "
                "accept it with --accept FILE or cancel it with --cancel FILE")
    taken[key] = used + line["quantity"]
    return None


def _apply_line_tasks(store: StoreSettings, client: BackMarketClient, state: StateStore,
                      order_id: int, tasks: Sequence[_LineTask], report: StepReport) -> None:
    """Read the order afresh, then send each line's change that has not landed yet."""
    try:
        order = client.get_order(order_id)
    except OfferError as exc:
        for task in tasks:
            _line_failed(store, state, order_id, task, report, exc, "order_id")
        return
    save_order(state, store, order)
    for task in tasks:
        target = LINE_CANCELLED if task.action == "cancel" else LINE_ACCEPTED
        landed = {LINE_CANCELLED} if task.action == "cancel" else ACCEPTED_OR_LATER
        current = line_state(order, task.sku)
        status = "cancelled" if task.action == "cancel" else "accepted"
        if current in landed:
            state.orders.record_line_action(store.account, task.orderline_id, order_id, task.sku,
                                            task.action, "confirmed", "already done on Back Market")
            report.add(Outcome("skipped", store.name, order_id, task.sku, task.row,
                               message=f"already {LINE_STATE_NAMES.get(current or 0, '')}"))
            continue
        if current != LINE_PAID:
            message = (f"the line is now {line_state_name(current)} on Back Market; it can no "
                       f"longer be {status}")
            state.orders.record_line_action(store.account, task.orderline_id, order_id, task.sku,
                                            task.action, "failed", message)
            report.add(Outcome("failed", store.name, order_id, task.sku, task.row, "state",
                               message))
            continue
        try:
            order = client.update_order(order_id, {"new_state": target, "sku": task.sku},
                                        applied=_landed(task.sku, landed))
        except OfferError as exc:
            _line_failed(store, state, order_id, task, report, exc, "sku")
            continue
        save_order(state, store, order)
        state.orders.record_line_action(store.account, task.orderline_id, order_id, task.sku,
                                        task.action, "confirmed")
        report.add(Outcome(status, store.name, order_id, task.sku, task.row))


def _landed(sku: str, states: frozenset[int] | set[int]) -> Callable[[dict[str, Any]], bool]:
    """Whether an order read back shows the line's change applied."""
    return lambda order: line_state(order, sku) in states


def _line_failed(store: StoreSettings, state: StateStore, order_id: int, task: _LineTask,
                 report: StepReport, exc: ApiError, field_name: str) -> None:
    message = f"Back Market refused: {exc.message}"
    if exc.status == 404 and field_name == "order_id":
        message = f"order {order_id} is unknown to Back Market ({exc.message})"
    state.orders.record_line_action(store.account, task.orderline_id, order_id, task.sku,
                                    task.action, "failed", message, exc.request_id)
    report.add(Outcome("failed", store.name, order_id, task.sku, task.row, field_name, message,
                       exc.request_id))


def _payment_order(order: Mapping[str, Any] | None) -> tuple[datetime, int]:
    if order is None:
        return datetime.max.replace(tzinfo=UTC), 0
    paid = order.get("date_payment") or datetime.max.replace(tzinfo=UTC)
    return paid, int(order["order_id"])
