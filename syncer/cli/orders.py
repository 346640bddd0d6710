"""`syncer orders`: pull paid orders, accept or cancel their lines, ship them, upload their
invoices and add their devices' serial numbers; each row checked before anything is sent."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from syncer.cli.context import (
    EXIT_PARTIAL,
    Context,
    F,
    catalog_option,
    format_option,
    handle_errors,
    log,
    new_run_id,
    store_option,
)
from syncer.cli.render import iso
from syncer.cli.session import orders_session, recorded_orders_step

if TYPE_CHECKING:
    from syncer.config.settings import Settings
    from syncer.config.stores import StoreSettings
    from syncer.state.store import StateStore

    # A step, given the settings and the stores, and then the state and a client per store.
    Step = Callable[[Settings, list[StoreSettings]],
                    Callable[[StateStore, Callable[[StoreSettings], Any]], Any]]


@click.group(name="orders")
def orders() -> None:
    """Orders: pull paid orders, accept or cancel their lines, ship them with tracking.

    \b
      syncer orders pull                  new and changed orders into the state, and an export
      syncer orders accept                accept paid lines by policy; --cancel FILE cancels
      syncer orders ship --from FILE      carrier, tracking and IMEI of each order, sent once
      syncer orders invoice --from FILE   the seller's PDF invoice of each order, sent once
      syncer orders serials --from FILE   IMEI or serial number of a line after shipping, once
    """


@orders.command(name="pull")
@store_option()
@click.option("--all-countries", is_flag=True,
              help="Pull every country's orders of the account, whatever the store's "
                   "order_pull_scope says.")
@format_option("text", "json", help="Format of the summary on stdout.")
@click.pass_obj
@handle_errors
def orders_pull(obj: Context, store: str | None, all_countries: bool, fmt: str) -> None:
    """Fetch new and changed orders, store them in the state and export them.

    Reads the orders modified since the store's last pull minus `orders.overlap_minutes`
    (so none is missed), page by page: the store's own country, or every country when its
    scope is "all". New and changed orders go to the state database and to one CSV and one
    JSON lines file per run in `orders.export_dir` (default: orders/ beside the state).
    Exit code 0, or 1 on error.
    """
    from syncer.orders.export import export
    from syncer.orders.pull import PullResult, pull, pull_scope, save_pull

    settings = obj.settings()
    stores = settings.selected_stores(store)
    run_id = new_run_id()
    results: list[PullResult] = []
    with orders_session(settings, stores, run_id) as (state, client_for):
        for s in stores:
            scope = pull_scope(settings, s, all_countries)
            record = state.runs.start(run_id, s.name, "orders-pull")
            try:
                results.append(pull(settings, s, client_for(s), state, scope=scope))
            except BaseException as exc:
                state.runs.finish(record, "failed", {}, str(exc) or type(exc).__name__)
                raise
            state.runs.finish(record, "ok", results[-1].counts())
        # Exported before stored: a crash in between exports an order twice, never zero times.
        files = export(results, _export_dir(settings), run_id)
        for result in results:
            save_pull(state, result)
            log().info("orders pull summary", store=result.store, scope=result.scope,
                       **result.counts())
    if fmt == "json":
        click.echo(json.dumps({
            "stores": [{"store": r.store, "scope": r.scope, "since": iso(r.since),
                        "counts": r.counts()} for r in results],
            "files": [str(f) for f in files]}, indent=2))
        return
    for r in results:
        where = "own country" if r.scope == "store" else "all countries"
        foreign = (f"; {r.other_countries} of other countries left out"
                   if r.other_countries else "")
        click.echo(f"Store {r.store} ({where}): {_count(r.fetched, 'order')} since "
                   f"{iso(r.since)}: {r.new} new, {r.changed} changed, {r.unchanged} "
                   f"unchanged ({_count(r.lines, 'line')} stored{foreign})")
    click.echo("Exported: " + ", ".join(str(f) for f in files) if files
               else "Nothing new to export.")


def _count(n: int, noun: str) -> str:
    """'1 order', '3 orders'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


@orders.command(name="accept")
@store_option()
@click.option("--accept", "accept_file", type=click.Path(path_type=Path, dir_okay=False,
                                                         exists=True),
              help="CSV (order_id,sku) of lines to accept, whatever the policy.")
@click.option("--cancel", "cancel_file", type=click.Path(path_type=Path, dir_okay=False,
                                                         exists=True),
              help="CSV (order_id,sku) of paid lines to cancel (new_state 4).")
@catalog_option("Catalog file to read the stock from instead of the configured one.")
@click.option("--dry-run", is_flag=True, help="Say what would be accepted, held or "
                                              "cancelled; send and record nothing.")
@format_option("text", "json", help="Format of the report on stdout.")
@click.pass_obj
@handle_errors
def orders_accept(obj: Context, store: str | None, accept_file: Path | None,
                  cancel_file: Path | None, catalog: Path | None, dry_run: bool,
                  fmt: str) -> None:
    """Accept the paid lines of pulled orders, and cancel the lines the seller lists.

    `orders.accept_policy` decides: "stock" accepts a line when the catalog's stock of its
    SKU covers it (after lines accepted and not shipped yet), else leaves it for the seller
    and says why; "all" accepts every paid line; "manual" only those of --accept FILE.
    Lines already accepted are skipped. Exit code 0, 3 when some lines or rows failed (the
    others went on), 1 on error.
    """
    from syncer.orders.accept import accept

    _run_step(obj, store, "orders-accept", dry_run, fmt, lambda settings, stores: (
        lambda state, client_for: accept(
            settings, stores, state, client_for, accept_file=accept_file,
            cancel_file=cancel_file, catalog=catalog, dry_run=dry_run)))


def _rows_command(name: str, rows: str) -> Callable[[F], click.Command]:
    """An orders command sending what a CSV file's rows say (``rows``: its columns)."""
    def decorate(func: F) -> click.Command:
        for option in reversed((
                click.option("--from", "from_file", required=True,
                             type=click.Path(path_type=Path, dir_okay=False, exists=True),
                             help=rows),
                store_option(),
                click.option("--dry-run", is_flag=True,
                             help="Check every row and say what would be sent; send and "
                                  "record nothing."),
                format_option("text", "json", help="Format of the report on stdout."),
                click.pass_obj, handle_errors)):
            func = option(func)
        return orders.command(name=name)(func)

    return decorate


@_rows_command("ship", "Shipments CSV: order_id, carrier, tracking_number, tracking_url, "
                       "imei, serial_number, and optionally shipper (';' or ',' separated).")
def orders_ship(obj: Context, from_file: Path, store: str | None, dry_run: bool,
                fmt: str) -> None:
    """Ship orders: carrier, tracking number and the device's IMEI or serial number.

    Each row is checked before anything is sent for it: a known order with all its paid
    lines decided, a tracking number, a carrier mapped to a Back Market shipper by the
    carrier table (or its fallback) or a `shipper` cell sent as written (free text, at most
    200 characters), an IMEI with a valid check digit, and an IMEI or serial
    number only for an order of one line of quantity 1. A bad row is reported with its row
    number and field; the others go on. A confirmed shipment is never sent again.
    Exit code 0, 3 when some rows failed, 1 on error.
    """
    from syncer.orders.ship import ship
    from syncer.planning.mapping import load_profile

    def prepare(settings: Settings, stores: list[StoreSettings]
                ) -> Callable[[StateStore, Callable[[StoreSettings], Any]], Any]:
        profile = load_profile(settings.mapping_path())  # a bad profile locks and sends nothing
        return lambda state, client_for: ship(settings, stores, state, client_for,
                                                    profile, from_file, dry_run=dry_run)

    _run_step(obj, store, "orders-ship", dry_run, fmt, prepare)


@_rows_command("invoice", "Invoices CSV: order_id, path (the PDF, relative to the CSV's "
                          "folder; ';' or ',' separated).")
def orders_invoice(obj: Context, from_file: Path, store: str | None, dry_run: bool,
                   fmt: str) -> None:
    """Upload the seller's invoice (a PDF) of each order to Back Market.

    Each row is checked before anything is sent for it: an order in the state (pulled) and
    paid, and a PDF file (starting with %PDF-, at most 10 MiB) at the given path. Each PDF
    goes to POST /ws/orders/{order_id}/invoice; Back Market then shows the order's
    date_bill_provided. An order whose invoice was sent (recorded in the state) or that
    Back Market already shows with one is never sent again. A bad row is reported with its
    row number and column; the others go on. Exit code 0, 3 when some rows failed, 1 on
    error.
    """
    from syncer.orders.invoice import invoice

    _run_step(obj, store, "orders-invoice", dry_run, fmt, lambda _settings, stores: (
        lambda state, client_for: invoice(stores, state, client_for, from_file,
                                                dry_run=dry_run)))


@_rows_command("serials", "Serials CSV: order_id, sku, imei, serial_number (';' or ',' "
                          "separated; sku may stay empty for an order of one line).")
def orders_serials(obj: Context, from_file: Path, store: str | None, dry_run: bool,
                   fmt: str) -> None:
    """Add the device's IMEI or serial number to an order line, typically after shipping.

    For orders shipped without them (several lines, or the identifier not known yet): each
    row names a line by order_id and sku and gives an imei, a serial_number or both, checked
    as `orders ship` checks them: an IMEI of 15 digits with a valid check digit, a serial
    number of at most 50 characters on one line, and only for a line of quantity 1 that is
    accepted or shipped (an identifier names one device). Sent with PATCH
    /ws/orderlines/{id}. Back Market never lets an identifier be corrected: one already
    registered (recorded in the state, or shown by Back Market) is never sent again, and a
    different value for it is refused before sending. A bad row is reported with its row
    number and column; the others go on. Exit code 0, 3 when some rows failed, 1 on error.
    """
    from syncer.orders.serials import serials

    _run_step(obj, store, "orders-serials", dry_run, fmt, lambda _settings, stores: (
        lambda state, client_for: serials(stores, state, client_for, from_file,
                                                dry_run=dry_run)))


def _run_step(obj: Context, store: str | None, kind: str, dry_run: bool, fmt: str,
              step: Step) -> None:
    """Run one step of ``kind`` over the stores (locked and recorded unless ``dry_run``),
    print its report, and exit 3 when some rows or lines failed."""
    settings = obj.settings()
    stores = settings.selected_stores(store)
    work = step(settings, stores)
    run_id = new_run_id()
    with orders_session(settings, stores, run_id, locked=not dry_run) as (state, client_for):
        report = recorded_orders_step(state, stores, run_id, kind, dry_run,
                                      lambda: work(state, client_for))
    _print_report(report, fmt)
    if report.failed:
        sys.exit(EXIT_PARTIAL)


def _print_report(report: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({"counts": report.counts(),
                               "outcomes": [o.to_dict() for o in report.outcomes]}, indent=2))
        return
    for outcome in report.outcomes:
        click.echo(outcome.describe())
    counts = report.counts()
    click.echo("Total: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                            or "nothing to do"))


def _export_dir(settings: Settings) -> Path:
    folder = settings.orders.export_dir
    return settings.state_dir() / "orders" if folder is None else settings.resolve(folder)
