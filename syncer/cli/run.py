"""`syncer run` and `syncer daemon`: whatever is due for each store (reconciliation,
products, offers, the stock lane, the market pass), once or in a loop."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from syncer.cli.context import (
    EXIT_ERROR,
    Context,
    catalog_option,
    handle_errors,
    new_run_id,
    publish_exit_code,
    results_option,
    store_option,
)
from syncer.cli.render import result_line
from syncer.cli.session import job_context, job_session, open_state, stop_on_signals

if TYPE_CHECKING:
    from syncer.config.stores import StoreSettings
    from syncer.pipeline.jobs import JobContext
    from syncer.pipeline.schedule import StoreRun


@click.command()
@store_option()
@catalog_option()
@click.option("--force", is_flag=True,
              help="Publish even if a plan zeroes more live offers than allowed.")
@results_option()
@click.pass_obj
@handle_errors
def run(obj: Context, store: str | None, catalog: Path | None, force: bool,
        results_file: Path | None) -> None:
    """Do whatever is due for each store, and nothing else: reconciliation, products,
    offers (every 2 h by default) and the stock lane (every 15 min). With nothing due, say
    when each job is next due. Meant for cron, systemd timers, Kubernetes CronJobs.

    Exit code 0 when all went well (or nothing was due), 3 when Back Market rejected some
    offers, 1 on error (or when Back Market could not be reached for some offers).
    """
    from syncer.pipeline.progress import ProgressDisplay
    from syncer.reports.run_results import recording

    settings = obj.settings()
    stores = settings.selected_stores(store)
    run_id = new_run_id()
    with recording(results_file, "run", run_id) as recorder, \
            job_session(settings, run_id=run_id, results=recorder,
                        display=ProgressDisplay.for_terminal(obj.quiet)) as ctx:
        code = _run_once(ctx, stores, catalog, force)
    sys.exit(code)


def _run_once(ctx: JobContext, stores: list[StoreSettings], catalog: Path | None,
              force: bool) -> int:
    from syncer.pipeline.schedule import next_due_lines, run_due

    runs = run_due(ctx, stores, catalog, force)
    for store_run in runs:
        _print_store_run(store_run)
    if not runs:
        click.echo("Nothing due. Next:")
        for line in next_due_lines(ctx, stores, ctx.now()):
            click.echo(f"  {line}")
    results = [r for store_run in runs for _, r in store_run.publications]
    code = publish_exit_code(results)
    if any(store_run.skipped or store_run.error for store_run in runs):
        code = EXIT_ERROR
    return code


@click.command()
@store_option()
@catalog_option()
@click.option("--max-sleep", type=float, default=60.0, show_default=True,
              help="Longest wait between two looks at what is due (seconds).")
@click.pass_obj
@handle_errors
def daemon(obj: Context, store: str | None, catalog: Path | None, max_sleep: float) -> None:
    """Run `syncer run` in a loop in the foreground, for hosts without a scheduler.

    With a store's `stock_watch_seconds` (20 by default; 0 turns it off) it also looks at
    the catalog that often and sends a stock-out or a lower stock at once, within the stock
    lane's share of the hourly budget.

    On SIGTERM or Ctrl-C it finishes the request in flight, records it, and exits cleanly.
    """
    from syncer.pipeline.jobs import paced
    from syncer.pipeline.watch import StockWatch, daemon_turn, daemon_wait, watched

    settings = obj.settings()
    stores = settings.selected_stores(store)
    watch = StockWatch(settings, catalog) if watched(stores) else None
    click.echo(f"syncer daemon: {', '.join(s.name for s in stores)}; Ctrl-C or SIGTERM "
               "stops it", err=True)
    with open_state(settings) as state, stop_on_signals() as stop:
        while not stop():
            with paced(settings, state) as limiter_for:
                ctx = job_context(settings, state, limiter_for, stop=stop)
                for store_run in daemon_turn(ctx, stores, catalog, watch):
                    _print_store_run(store_run)
            deadline = time.monotonic() + daemon_wait(ctx, stores, watch, max_sleep)
            while not stop() and time.monotonic() < deadline:
                time.sleep(max(0.0, min(0.5, deadline - time.monotonic())))
    click.echo("syncer daemon: stopped", err=True)


def _about(store: str, message: str) -> str:
    """A message about a store, naming it once ("store fr: ..."), whether or not the message
    already does."""
    return message if message.startswith((f"store {store}", f"store '{store}'")) else \
        f"store {store}: {message}"


def _print_store_run(store_run: StoreRun) -> None:
    if store_run.skipped:
        click.echo(f"error: {_about(store_run.store, store_run.skipped)} (skipped)", err=True)
        return
    if store_run.error:
        click.echo(f"error: {_about(store_run.store, store_run.error)}", err=True)
    if store_run.reconciliation is not None:
        click.echo(store_run.reconciliation.to_text(limit=50), nl=False)
    if store_run.products is not None:
        click.echo(f"Store {store_run.store} products: "
                   + ", ".join(f"{v} {k}" for k, v in store_run.products.items()))
    for kind, result in store_run.publications:
        click.echo(result_line(result, prefix={"stock": "[stock lane] ",
                                               "watch": "[stock watch] ",
                                               "queue": "[queue] "}.get(kind, "")))
    if store_run.market is not None:
        click.echo(f"Store {store_run.store} market: "
                   + ", ".join(f"{v} {k}" for k, v in store_run.market.items()))
