"""The ``syncer`` command line: a thin layer over the library.

Data goes to stdout, diagnostics to stderr. Library errors become one line on stderr and an
exit code. Exit codes: 0 success (``plan``: nothing to send), 1 error, 2 ``plan`` has changes
to send, 3 ``apply`` finished but some offers were rejected by Back Market (1 when some could
not be sent because Back Market could not be reached: the run did not do its job), 4 ``plan
--fail-on-rejections N`` found more than N rejected catalog rows.
"""

from __future__ import annotations

import io
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import click

from syncer import __version__
from syncer.core.offers import visible
from syncer.errors import ConfigError, StalePlan, SyncerError
from syncer.reports.tables import write_csv

# The engine (config, state database, client, planner) is imported by the commands that use
# it: `syncer --help` and a small `plan` must not pay for SQLAlchemy, pydantic and the rest.
if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from syncer.config.settings import Settings, StoreSettings
    from syncer.pipeline.jobs import JobContext
    from syncer.pipeline.schedule import StoreRun
    from syncer.planning.plan import Plan
    from syncer.publish.products import ProductPlan
    from syncer.publish.publisher import PublishResult
    from syncer.state.store import StateStore

EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_PARTIAL = 3
EXIT_REJECTIONS = 4



def _log() -> FilteringBoundLogger:
    import structlog

    return structlog.get_logger("syncer")  # type: ignore[no-any-return]

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, config: Path | None, quiet: bool) -> None:
        self.config = config
        self.quiet = quiet

    def settings(self) -> Settings:
        from syncer.config.settings import load_settings

        return load_settings(self.config)


def handle_errors(func: F) -> F:
    """Domain errors become one clear line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SyncerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", type=click.Path(path_type=Path, dir_okay=False),
              envvar="SYNCER_CONFIG",
              help="Configuration file (default: ./syncer.toml, or $SYNCER_CONFIG).")
@click.option("--log-format", type=click.Choice(["auto", "console", "json"]), default="auto",
              show_default=True, help="Logs on stderr: readable, JSON lines, or auto-detect.")
@click.option("--quiet", "-q", is_flag=True, help="Only warnings and errors; no progress bar.")
@click.option("--verbose", "-v", is_flag=True, help="Debug logs.")
@click.version_option(__version__, prog_name="syncer")
@click.pass_context
def cli(ctx: click.Context, config: Path | None, log_format: str, quiet: bool,
        verbose: bool) -> None:
    """Publish a merchant catalog to Back Market in update mode: only what changed.

    \b
    Typical use:
      syncer init CATALOG          a configuration and mapping from your export
      syncer plan                  what would be sent, and why (writes nothing)
      syncer apply                 publish it
      syncer status / errors       what the state says
    """
    from syncer.core.logs import configure

    configure(log_format, "warning" if quiet else "debug" if verbose else "info")
    ctx.obj = Context(config, quiet)


# --- plan -------------------------------------------------------------------------------------

@cli.command()
@click.option("--store", help="Plan this store only (default: every enabled store).")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]),
              default="text", show_default=True, help="Output format.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the plan to this file instead of stdout (JSON can be applied later).")
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False),
              help="Catalog file to use instead of the configured one.")
@click.option("--kind", type=click.Choice(["offers", "products"]), default="offers",
              show_default=True,
              help="Offers to publish, or products to propose to Back Market.")
@click.option("--rejections", "rejections_file",
              type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the rejected catalog rows, as read plus the reason and the "
                   "column at fault, to this .csv or .xlsx file (for the catalog team).")
@click.option("--fail-on-rejections", "fail_on", type=click.IntRange(min=0), is_flag=False,
              flag_value=0, default=None, metavar="[N]",
              help="For CI: exit 4 when more than N catalog rows are rejected (N = 0 when "
                   "given bare). Quarantined offers are not counted.")
@click.pass_obj
@handle_errors
def plan(obj: Context, store: str | None, fmt: str, out: Path | None,
         catalog: Path | None, kind: str, rejections_file: Path | None,
         fail_on: int | None) -> None:
    """Show what would be sent to Back Market, and why. Writes nothing anywhere (but the
    files asked for with --out and --rejections).

    Exit code 0 when there is nothing to send, 2 when there are changes, 4 when more rows
    are rejected than --fail-on-rejections allows, 1 on error.
    """
    settings = obj.settings()
    sys.exit(_plan(settings, settings.selected_stores(store), fmt, out, catalog, kind,
                   rejections_file, fail_on))


def _plan(settings: Settings, stores: list[StoreSettings], fmt: str, out: Path | None,
          catalog: Path | None, kind: str = "offers", rejections_file: Path | None = None,
          fail_on: int | None = None) -> int:
    """The plan command's work (also the dry run of `syncer init`); returns its exit code."""
    from syncer.catalog.files import CatalogSource
    from syncer.pipeline.planner import catalog_source, make_plan
    from syncer.planning.plan import Plan
    from syncer.publish.products import plan_products
    from syncer.reports.rejections import (
        Fingerprinted,
        check_format,
        count_rejections,
        write_rejections,
    )
    from syncer.state.store import StateStore

    source: CatalogSource = catalog_source(settings, catalog)
    recorded = None
    if rejections_file is not None:
        check_format(rejections_file)  # before the plan, not after a long one
        source = recorded = Fingerprinted(source)
    result: Plan | ProductPlan
    with StateStore.open_readonly(settings.state_database_url()) as state:
        if kind == "products":
            result = plan_products(settings, stores, source, state)
        else:
            result = make_plan(settings, stores, source, state)
    if isinstance(result, Plan) and fmt == "json":
        # Written change by change: a million-change plan never sits in memory as text.
        if out is not None:
            _write_with(out, result.write_json)
        else:
            result.write_json(sys.stdout)
    elif out is not None:
        _write(out, result.render(fmt))
    else:
        click.echo(result.render(fmt), nl=False)
    if out is not None:
        click.echo(f"plan written to {out}: {_brief(result)}", err=True)
    counts = count_rejections(result.rejections,
                              result.notices if isinstance(result, Plan) else ())
    if rejections_file is not None and recorded is not None:
        write_rejections(rejections_file, recorded, result.rejections)
        click.echo(f"rejected rows written to {rejections_file}: {counts.line()}", err=True)
    if fail_on is not None:
        failing = counts.rows > fail_on
        click.echo(("FAIL: " if failing else "ok: ") + counts.line(fail_on), err=True)
        if failing:
            return EXIT_REJECTIONS
    return EXIT_CHANGES if result.has_changes else 0


# --- init -------------------------------------------------------------------------------------

@cli.command()
@click.argument("catalog", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--locale", "locales", multiple=True,
              help="A market to sell on, e.g. fr-fr (repeatable; default: the countries of "
                   "the price columns, or the header's language).")
@click.option("--force", is_flag=True, help="Replace an existing syncer.toml and mapping.toml.")
@click.option("--no-plan", is_flag=True, help="Write the files only; do not plan.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]),
              default="text", show_default=True, help="Format of the plan on stdout.")
@click.pass_obj
@handle_errors
def init(obj: Context, catalog: Path | None, locales: tuple[str, ...], force: bool,
         no_plan: bool, fmt: str) -> None:
    """Start from a catalog export: propose a mapping, write syncer.toml, plan once.

    Reads CATALOG's header (or the only .csv file in the folder), matches its columns by
    their usual French, German, English and Spanish names (SKU/Référence/Artikelnummer,
    EAN, état/Zustand/estado, quantité/Bestand/cantidad, prix_fr/Preis/precio_es,
    garantie, commentaire...), writes syncer.toml (one store per country of the price
    columns; tokens stay in environment variables) and mapping.toml beside it (or where
    --config says), never replacing them without --force, and then shows the dry-run plan
    of `syncer plan`. Non-interactive. Exit code 0 when the files were written, 1 on error.
    """
    from syncer.catalog.onboarding import propose, read_header, write_files
    from syncer.config.settings import DEFAULT_CONFIG, load_settings

    config = obj.config if obj.config is not None else Path(DEFAULT_CONFIG)
    if catalog is None:
        found = sorted(config.parent.glob("*.csv"))
        if len(found) != 1:
            raise ConfigError("pass the catalog file: syncer init CATALOG.csv ("
                              + (f"{len(found)} .csv files" if found else "no .csv file")
                              + f" in {config.parent.resolve()})")
        catalog = found[0]
    proposal = propose(read_header(catalog), locales)
    for line in proposal.report():
        click.echo(line, err=True)
    profile = write_files(proposal, config, force)
    tokens = [f"{name} ({'set' if os.environ.get(name) else 'not set yet'})"
              for name in proposal.token_variables()]
    click.echo(f"Wrote {config} and {profile}. Before `syncer apply`: set api.contact_email, "
               "and the token in " + ", ".join(tokens) + " (environment or .env beside "
               "syncer.toml; never in the file).", err=True)
    if no_plan:
        return
    settings = load_settings(config)
    click.echo("Plan (dry run: nothing is sent, nothing is written):", err=True)
    _plan(settings, settings.selected_stores(None), fmt, None, None)


# --- apply ------------------------------------------------------------------------------------

@cli.command()
@click.option("--store", help="Publish this store only (default: every enabled store).")
@click.option("--plan", "plan_file", type=click.Path(path_type=Path, dir_okay=False,
                                                      exists=True),
              help="Apply a plan saved with `plan --format json --out FILE`.")
@click.option("--force", is_flag=True,
              help="Publish even if the plan zeroes more live offers than allowed.")
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False),
              help="Catalog file to use instead of the configured one.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of the run summary on stdout.")
@click.pass_obj
@handle_errors
def apply(obj: Context, store: str | None, plan_file: Path | None, force: bool,
          catalog: Path | None, fmt: str) -> None:
    """Publish the plan: zeros first, then stock, then other changes, then new listings.

    Every acknowledgement and error is recorded as it arrives. Exit code 0 when everything
    was confirmed, 3 when Back Market rejected some offers, 1 on error (or when Back Market
    could not be reached for some offers).
    """
    from syncer.alerts.events import StoreTurn, notifier
    from syncer.errors import SafetyStop
    from syncer.pipeline.jobs import JobContext, check_zero_share, paced, publish_store
    from syncer.pipeline.planner import catalog_source, make_plan, siblings
    from syncer.state.store import StateStore

    settings = obj.settings()
    saved = _load_plan(plan_file) if plan_file is not None else None
    if saved is not None:
        if store is not None:
            saved.stores = [s for s in saved.stores if s.store == store]
        stores = [settings.store(s.store) for s in saved.stores]
    else:
        stores = settings.selected_stores(store)
    run_id = _run_id()
    results: list[PublishResult] = []
    with StateStore.open(settings.state_database_url()) as state, ExitStack() as locks, \
            paced(settings, state) as limiter_for, stop_on_signals() as stop:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        leases = {s.name: locks.enter_context(
            state.locks.lock(s.name, settings.limits.lock_lease_seconds, run_id)) for s in stores}
        if saved is not None:
            for store_plan in saved.stores:
                current = state.offers.revision(store_plan.store)
                if current != store_plan.revision:
                    raise StalePlan(
                        f"store {store_plan.store}: the snapshot changed since the plan was "
                        f"made (revision {store_plan.revision}, now {current}); plan again")
            the_plan = saved
        else:
            the_plan = make_plan(settings, stores, catalog_source(settings, catalog), state)
        ctx = JobContext(settings, state, run_id, limiter_for, leases, stop=stop)
        ctx.finished = notifier(ctx)
        try:
            check_zero_share(settings, the_plan, force)
        except SafetyStop as exc:
            if exc.store is not None:
                ctx.finished(StoreTurn(settings.store(exc.store), exc))
            raise
        with _progress(the_plan.change_count(), obj.quiet) as advance:
            ctx.progress = advance
            for store_plan in the_plan.stores:
                try:
                    results.append(publish_store(ctx, store_plan))
                except SyncerError as exc:
                    ctx.finished(StoreTurn(settings.store(store_plan.store), exc))
                    raise
                ctx.finished(StoreTurn(settings.store(store_plan.store),
                                       publications=results[-1:], ran=("offers",)))
                if stop():
                    break
    _print_results(results, fmt)
    sys.exit(_exit_code(results))


def _exit_code(results: list[PublishResult]) -> int:
    if any(r.stopped and not r.interrupted for r in results):
        return EXIT_ERROR
    if any(r.counts["unreachable"] for r in results):
        return EXIT_ERROR  # an outage is not "refused by Back Market"
    if any(r.counts["failed"] for r in results):
        return EXIT_PARTIAL
    return 0


def _run_id() -> str:
    import structlog

    run_id = uuid.uuid4().hex[:12]
    structlog.contextvars.bind_contextvars(run_id=run_id)
    return run_id


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGTERM or Ctrl-C ask the run to stop: the request in flight finishes and is
    recorded, nothing more is sent, and the command exits cleanly."""
    stopping = threading.Event()
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt  # a second signal: stop now
        stopping.set()
        _log().warning("stop requested: finishing the request in flight",
                    signal=signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield stopping.is_set
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _print_results(results: list[PublishResult], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([_result_dict(r) for r in results], indent=2))
        return
    for r in results:
        click.echo(_result_line(r))


def _result_dict(r: PublishResult) -> dict[str, Any]:
    return {"store": r.store, "outcome": r.outcome, "counts": r.counts, "stopped": r.stopped,
            "failures": [{"sku": f.sku, "error": f.message, "code": f.code,
                          "request_id": f.request_id} for f in r.failures],
            "notices": r.notices}


def _result_line(r: PublishResult, prefix: str = "") -> str:
    c = r.counts
    line = (f"{prefix}Store {r.store}: {c['created']} created, {c['updated']} updated, "
            f"{c['zeroed']} zeroed, {c['retried']} retried, {c['failed']} failed")
    if c["unreachable"]:
        line += f" ({c['unreachable']} of them not sent: Back Market unreachable)"
    if c["already_published"]:
        line += f", {c['already_published']} already published"
    if c["in_flight"]:
        line += f", {c['in_flight']} in flight (checked next run)"
    if c["queued"]:
        line += f", {c['queued']} queued for the next run (hourly budget)"
    line += f" ({c.get('requests', 0)} requests, {c.get('retries', 0)} retries)"
    lines = [line]
    lines += [f"  NOTE {visible(notice)}" for notice in r.notices[:50]]
    for failure in r.failures[:50]:
        rid = f" [request {failure.request_id}]" if failure.request_id else ""
        lines.append(f"  FAILED {visible(failure.sku)}: {visible(failure.message)}{rid}")
    if len(r.failures) > 50:
        lines.append(f"  ... and {len(r.failures) - 50} more (see `syncer errors`)")
    if r.stopped:
        lines.append(f"  {'INTERRUPTED' if r.interrupted else 'STOPPED'}: {r.stopped}")
    return "\n".join(lines)


# --- run, daemon, reconcile --------------------------------------------------------------------

@cli.command()
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False),
              help="Catalog file to use instead of the configured one.")
@click.option("--force", is_flag=True,
              help="Publish even if a plan zeroes more live offers than allowed.")
@click.pass_obj
@handle_errors
def run(obj: Context, store: str | None, catalog: Path | None, force: bool) -> None:
    """Do whatever is due for each store, and nothing else: reconciliation, products,
    offers (every 2 h by default) and the stock lane (every 15 min). With nothing due, say
    when each job is next due. Meant for cron, systemd timers, Kubernetes CronJobs.

    Exit code 0 when all went well (or nothing was due), 3 when Back Market rejected some
    offers, 1 on error (or when Back Market could not be reached for some offers).
    """
    from syncer.alerts.events import notifier
    from syncer.pipeline.jobs import JobContext, paced
    from syncer.pipeline.planner import siblings
    from syncer.state.store import StateStore

    settings = obj.settings()
    stores = settings.selected_stores(store)
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for, stop_on_signals() as stop:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        ctx = JobContext(settings, state, _run_id(), limiter_for, stop=stop)
        ctx.finished = notifier(ctx)
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
    code = _exit_code(results)
    if any(store_run.skipped or store_run.error for store_run in runs):
        code = EXIT_ERROR
    return code


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
        click.echo(_result_line(result, prefix="[stock lane] " if kind == "stock" else ""))
    if store_run.market is not None:
        click.echo(f"Store {store_run.store} market: "
                   + ", ".join(f"{v} {k}" for k, v in store_run.market.items()))


@cli.command()
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False),
              help="Catalog file to use instead of the configured one.")
@click.option("--max-sleep", type=float, default=60.0, show_default=True,
              help="Longest wait between two looks at what is due (seconds).")
@click.pass_obj
@handle_errors
def daemon(obj: Context, store: str | None, catalog: Path | None, max_sleep: float) -> None:
    """Run `syncer run` in a loop in the foreground, for hosts without a scheduler.

    On SIGTERM or Ctrl-C it finishes the request in flight, records it, and exits cleanly.
    """
    from syncer.alerts.events import notifier
    from syncer.pipeline.jobs import JobContext, paced
    from syncer.pipeline.planner import siblings
    from syncer.pipeline.schedule import job_states, run_due
    from syncer.state.store import StateStore

    settings = obj.settings()
    stores = settings.selected_stores(store)
    click.echo(f"syncer daemon: {', '.join(s.name for s in stores)}; Ctrl-C or SIGTERM "
               "stops it", err=True)
    with StateStore.open(settings.state_database_url()) as state, \
            stop_on_signals() as stop:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        while not stop():
            with paced(settings, state) as limiter_for:
                ctx = JobContext(settings, state, _run_id(), limiter_for, stop=stop)
                ctx.finished = notifier(ctx)
                for store_run in run_due(ctx, stores, catalog):
                    _print_store_run(store_run)
            now = ctx.now()
            soonest = min((j.next_at for s in stores for j in job_states(ctx, s, now)
                           if j.next_at is not None), default=None)
            wait = max_sleep if soonest is None else \
                min(max_sleep, max(1.0, (soonest - now).total_seconds()))
            deadline = time.monotonic() + wait
            while not stop() and time.monotonic() < deadline:
                time.sleep(min(0.5, deadline - time.monotonic()))
    click.echo("syncer daemon: stopped", err=True)


@cli.command(name="reconcile")
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False),
              help="Catalog file to use instead of the configured one.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Text for people, JSON for programs.")
@click.pass_obj
@handle_errors
def reconcile_command(obj: Context, store: str | None, catalog: Path | None,
                      fmt: str) -> None:
    """Compare every live listing with the snapshot: stock lowered by orders, prices or
    comments changed in the back office, listings missing, listings unknown to the snapshot
    (adopted when the catalog has their SKU). Drifted offers are sent again by the next
    offer run. Exit code 0 when nothing drifted, 2 when drift was found, 1 on error.
    """
    from syncer.pipeline.jobs import JobContext, paced, reconcile_store
    from syncer.pipeline.planner import catalog_source, siblings
    from syncer.state.store import StateStore

    settings = obj.settings()
    stores = settings.selected_stores(store)
    reports = []
    with StateStore.open(settings.state_database_url()) as state, ExitStack() as locks, \
            paced(settings, state) as limiter_for:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        run_id = _run_id()
        leases = {s.name: locks.enter_context(
            state.locks.lock(s.name, settings.limits.lock_lease_seconds, run_id)) for s in stores}
        ctx = JobContext(settings, state, run_id, limiter_for, leases)
        for store_settings in stores:
            reports.append(reconcile_store(ctx, store_settings,
                                           catalog_source(settings, catalog)))
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False))
    else:
        for report in reports:
            click.echo(report.to_text(), nl=False)
    sys.exit(EXIT_CHANGES if any(r.has_drift for r in reports) else 0)


# --- status and errors ------------------------------------------------------------------------

@cli.command()
@click.option("--store", help="This store only.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Text for people, JSON for programs.")
@click.pass_obj
@handle_errors
def status(obj: Context, store: str | None, fmt: str) -> None:
    """Per store: live, zeroed, failed and pending offers, and the last runs."""
    from syncer.state.store import StateStore

    settings = obj.settings()
    names = [settings.store(store).name] if store else [s.name for s in settings.stores]
    if not names:
        raise ConfigError("no store is configured ([[stores]] in the TOML file)")
    report: list[dict[str, Any]] = []
    with StateStore.open_readonly(settings.state_database_url()) as state:
        for name in names:
            report.append({
                "store": name,
                "offers": state.status.counts(name),
                "revision": state.offers.revision(name),
                "in_flight": state.batches.offers_in_flight(name),
                "last_runs": [
                    {"run_id": r["run_id"], "kind": r["kind"], "outcome": r["outcome"],
                     "started_at": _iso(r["started_at"]), "finished_at": _iso(r["finished_at"]),
                     "counts": r["counts"], "message": r["message"]}
                    for r in state.runs.latest(name, limit=5)
                ],
            })
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
        return
    for entry in report:
        o = entry["offers"]
        click.echo(f"Store {entry['store']}: {o['live']} live, {o['zeroed']} zeroed, "
                   f"{o['failed']} failed, {o['never_confirmed']} never confirmed, "
                   f"{entry['in_flight']} pending in batches in flight")
        for run in entry["last_runs"]:
            c = run["counts"]
            click.echo(f"  {run['started_at']}  {run['kind']:<7} {run['outcome']:<8} "
                       + ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if v)
                       + (f"  ({run['message']})" if run["message"] else ""))
        if not entry["last_runs"]:
            click.echo("  no run yet")


@cli.command()
@click.option("--store", help="This store only.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "csv"]), default="text",
              show_default=True, help="csv: for a spreadsheet (formulas are neutralised).")
@click.pass_obj
@handle_errors
def errors(obj: Context, store: str | None, fmt: str) -> None:
    """Offers Back Market rejected last time, with its message and request id, and product
    proposals it rejected, with its reason. Offers refused too many runs in a row with the
    same error are marked QUARANTINED: `syncer retry SKU` sends them again."""
    from syncer.state.store import StateStore

    settings = obj.settings()
    if store is not None:
        settings.store(store)  # an unknown name is an error, not "No failed offers."
    elif not settings.stores:
        raise ConfigError("no store is configured ([[stores]] in the TOML file)")
    after = settings.limits.quarantine_after
    with StateStore.open_readonly(settings.state_database_url()) as state:
        rows = state.status.failures(store)
        products = state.products.rejected_products(store)
    for row in rows:
        row["quarantined"] = bool(after) and row["attempts"] >= after
    if fmt == "json":
        click.echo(json.dumps({
            "offers": [{**r, "updated_at": _iso(r["updated_at"]),
                        "confirmed_at": _iso(r["confirmed_at"])} for r in rows],
            "products": [{**p, "updated_at": _iso(p["updated_at"])} for p in products],
        }, indent=2))
        return
    if fmt == "csv":
        out = io.StringIO()
        write_csv(out, ["store", "kind", "sku", "ean", "error", "code", "request_id",
                        "attempts", "quarantined", "last_attempt"],
                  [*([r["store"], "offer", r["sku"], "", r["last_error"], r["error_code"],
                      r["request_id"], r["attempts"], "yes" if r["quarantined"] else "no",
                      _iso(r["updated_at"])] for r in rows),
                   *([p["store"], "product", p["sku"], p["ean"], p["reason"], "", "", "",
                      "", _iso(p["updated_at"])] for p in products)])
        click.echo(out.getvalue(), nl=False)
        return
    for p in products:
        click.echo(f"{p['store']}  product EAN {p['ean']} (SKU {visible(p['sku'])}) rejected: "
                   f"{visible(p['reason'] or '')}; not sent again until its content changes")
    if not rows and not products:
        click.echo("No failed offers.")
        return
    for r in rows:
        rid = f" [request {r['request_id']}]" if r["request_id"] else ""
        mark = "QUARANTINED " if r["quarantined"] else ""
        error = visible(r["last_error"] or "")
        count = (f"refused {r['attempts']} run{'s' if r['attempts'] != 1 else ''} in a row"
                 if r["attempts"] else "not a refusal, sent again next run")
        click.echo(f"{r['store']}  {mark}{visible(r['sku'])}: {error}{rid} "
                   f"({count}, last {_iso(r['updated_at'])})")


@cli.command()
@click.argument("skus", nargs=-1, required=True)
@click.option("--store", help="This store only (default: every store).")
@click.pass_obj
@handle_errors
def retry(obj: Context, skus: tuple[str, ...], store: str | None) -> None:
    """Send quarantined offers again at the next run, without waiting for their content to
    change (for example once Back Market support fixed what refused them)."""
    from syncer.state.store import StateStore

    settings = obj.settings()
    names = [settings.store(store).name] if store else [s.name for s in settings.stores]
    if not names:
        raise ConfigError("no store is configured ([[stores]] in the TOML file)")
    missing = []
    with StateStore.open(settings.state_database_url()) as state:
        for sku in skus:
            released = [name for name in names if state.offers.release(name, sku)]
            if released:
                click.echo(f"{sku}: will be sent again by the next run ({', '.join(released)})")
            else:
                missing.append(sku)
    for sku in missing:
        click.echo(f"error: {sku} has no failed offer in "
                   f"{'store ' + store if store else 'any store'}", err=True)
    if missing:
        sys.exit(EXIT_ERROR)


# --- check ------------------------------------------------------------------------------------

@cli.command()
@click.option("--store", help="This store only (default: every enabled store).")
@click.pass_obj
@handle_errors
def check(obj: Context, store: str | None) -> None:
    """Validate each store's token and settings with one cheap call to Back Market."""
    from syncer.pipeline.jobs import build_client

    settings = obj.settings()
    failed = False
    for store_settings in settings.selected_stores(store):
        try:
            with build_client(settings, store_settings) as client:
                count = client.check()
        except SyncerError as exc:
            click.echo(f"{store_settings.name}: FAILED: {exc}")
            failed = True
        else:
            click.echo(f"{store_settings.name}: OK ({store_settings.locale} on "
                       f"{store_settings.base_url()}, {count} listings)")
    if failed:
        sys.exit(EXIT_ERROR)


# --- emulator ---------------------------------------------------------------------------------

@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, help="Port (0: any free port).")
@click.option("--token", "tokens", multiple=True,
              help="Accepted token (repeatable; default: emulator-token).")
@click.option("--platform", type=click.Choice(["EU", "US", "AP"]), default="EU",
              show_default=True, help="Platform whose markets are served.")
@click.option("--task-delay", type=float, default=2.0, show_default=True,
              help="Seconds before a batch task is processed.")
@click.option("--budget", type=int, default=2000, show_default=True,
              help="SKU lines per hour on listing updates (0: unlimited).")
@click.option("--state", "state_path", type=click.Path(path_type=Path, dir_okay=False),
              help="SQLite file to keep the emulator's data across restarts.")
@click.option("--reject-sku", "reject_skus", multiple=True,
              help="Always reject this SKU (repeatable), as Back Market would a bad offer.")
@click.option("--fault-429", type=float, default=0.0, help="Share of requests answered 429.")
@click.option("--fault-5xx", type=float, default=0.0, help="Share answered with a 5xx.")
@click.option("--fault-drop", type=float, default=0.0,
              help="Share of dropped connections (half of them after the change applied).")
@click.option("--fault-slow", type=float, default=0.0, help="Share of slow answers.")
@click.option("--slow-seconds", type=float, default=2.0, show_default=True,
              help="How slow a slow answer is.")
@click.option("--fault-reject", type=float, default=0.0, help="Share of per-SKU rejections.")
@click.option("--waf-block", is_flag=True, help="Answer every request with a WAF 403 page.")
@click.option("--rate", type=int, default=200, show_default=True,
              help="Requests per 10 s per token before 429s (Back Market's limit).")
@click.option("--seed", type=int, help="Seed of the fault generator.")
@click.option("--realistic", is_flag=True,
              help="Behave as production integrations observed where the spec is silent: "
                   "listings of the same product and grade reused, products resolved within "
                   "their model family, task results keyed by row.")
@click.option("--result-key", type=click.Choice(["sku", "row"]),
              help="What keys a task result's entries (default: row if --realistic, else sku).")
@click.option("--strict-fields", is_flag=True,
              help="Refuse a single-listing update with a field the spec lacks (Back Market "
                   "ignores it): to check an integration sends only the spec's fields.")
def emulator(host: str, port: int, tokens: tuple[str, ...], platform: str, task_delay: float,
             budget: int, state_path: Path | None, reject_skus: tuple[str, ...],
             fault_429: float, fault_5xx: float, fault_drop: float, fault_slow: float,
             slow_seconds: float, fault_reject: float, waf_block: bool, rate: int,
             seed: int | None, realistic: bool, result_key: str | None,
             strict_fields: bool) -> None:
    """Serve a local emulator of the Back Market seller API (listings, tasks) over HTTP.

    It follows Back Market's published spec, limits and failures included; faults can also
    be changed while it runs through POST /_emulator/faults.
    """
    from syncer.emulator.server import EmulatorConfig, Faults, serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo("warning: the emulator is a test tool; it has no TLS", err=True)
    faults = Faults(share_429=fault_429, share_5xx=fault_5xx, share_drop=fault_drop,
                    share_slow=fault_slow, slow_seconds=slow_seconds, share_reject=fault_reject,
                    reject_skus={sku: "rejected by the emulator (--reject-sku)"
                                 for sku in reject_skus},
                    waf_block=waf_block, seed=seed)
    config = EmulatorConfig(
        tokens=tokens or ("emulator-token",), platform=platform, task_delay=task_delay,
        sku_lines_per_hour=budget, requests_per_window=rate, faults=faults,
        state_path=None if state_path is None else str(state_path), realistic=realistic,
        result_key=result_key, strict_fields=strict_fields)
    serve(config, host, port)


# --- orders -----------------------------------------------------------------------------------

@cli.group(name="orders")
def orders_group() -> None:
    """Orders: pull paid orders, accept or cancel their lines, ship them with tracking.

    \b
      syncer orders pull                  new and changed orders into the state, and an export
      syncer orders accept                accept paid lines by policy; --cancel FILE cancels
      syncer orders ship --from FILE      carrier, tracking and IMEI of each order, sent once
      syncer orders invoice --from FILE   the seller's PDF invoice of each order, sent once
      syncer orders serials --from FILE   IMEI or serial number of a line after shipping, once
    """


@orders_group.command(name="pull")
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--all-countries", is_flag=True,
              help="Pull every country's orders of the account, whatever the store's "
                   "order_pull_scope says.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of the summary on stdout.")
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
    from syncer.orders import steps

    settings = obj.settings()
    stores = settings.selected_stores(store)
    run_id = uuid.uuid4().hex[:12]
    results: list[steps.PullResult] = []
    with _orders_session(settings, stores, run_id) as (state, client_for):
        for s in stores:
            scope = steps.pull_scope(settings, s, all_countries)
            record = state.runs.start(run_id, s.name, "orders-pull")
            try:
                results.append(steps.pull(settings, s, client_for(s), state, scope=scope))
            except BaseException as exc:
                state.runs.finish(record, "failed", {}, str(exc) or type(exc).__name__)
                raise
            state.runs.finish(record, "ok", results[-1].counts())
        # Exported before stored: a crash in between exports an order twice, never zero times.
        files = steps.export(results, _orders_export_dir(settings), run_id)
        for result in results:
            steps.save_pull(state, result)
            _log().info("orders pull summary", store=result.store, scope=result.scope,
                     **result.counts())
    if fmt == "json":
        click.echo(json.dumps({
            "stores": [{"store": r.store, "scope": r.scope, "since": _iso(r.since),
                        "counts": r.counts()} for r in results],
            "files": [str(f) for f in files]}, indent=2))
        return
    for r in results:
        where = "own country" if r.scope == "store" else "all countries"
        foreign = (f"; {r.other_countries} of other countries left out"
                   if r.other_countries else "")
        click.echo(f"Store {r.store} ({where}): {r.fetched} orders since {_iso(r.since)}: "
                   f"{r.new} new, {r.changed} changed, {r.unchanged} unchanged "
                   f"({r.lines} lines stored{foreign})")
    click.echo("Exported: " + ", ".join(str(f) for f in files) if files
               else "Nothing new to export.")


@orders_group.command(name="accept")
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--accept", "accept_file", type=click.Path(path_type=Path, dir_okay=False,
                                                         exists=True),
              help="CSV (order_id,sku) of lines to accept, whatever the policy.")
@click.option("--cancel", "cancel_file", type=click.Path(path_type=Path, dir_okay=False,
                                                         exists=True),
              help="CSV (order_id,sku) of paid lines to cancel (new_state 4).")
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False),
              help="Catalog file to read the stock from instead of the configured one.")
@click.option("--dry-run", is_flag=True, help="Say what would be accepted, held or "
                                              "cancelled; send and record nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of the report on stdout.")
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
    from syncer.orders import steps

    settings = obj.settings()
    stores = settings.selected_stores(store)
    run_id = uuid.uuid4().hex[:12]
    with _orders_session(settings, stores, run_id, locked=not dry_run) as (state, client_for):
        report = _orders_step(state, stores, run_id, "orders-accept", dry_run, lambda: (
            steps.accept(settings, stores, state, client_for, accept_file=accept_file,
                         cancel_file=cancel_file, catalog=catalog, dry_run=dry_run)))
    _print_order_report(report, fmt)
    if report.failed:
        sys.exit(EXIT_PARTIAL)


@orders_group.command(name="ship")
@click.option("--from", "from_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Shipments CSV: order_id, carrier, tracking_number, tracking_url, imei, "
                   "serial_number, and optionally shipper (';' or ',' separated).")
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--dry-run", is_flag=True, help="Check every row and say what would be sent; "
                                              "send and record nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of the report on stdout.")
@click.pass_obj
@handle_errors
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
    from syncer.orders import steps
    from syncer.planning.mapping import load_profile

    settings = obj.settings()
    stores = settings.selected_stores(store)
    profile = load_profile(settings.mapping_path())
    run_id = uuid.uuid4().hex[:12]
    with _orders_session(settings, stores, run_id, locked=not dry_run) as (state, client_for):
        report = _orders_step(state, stores, run_id, "orders-ship", dry_run, lambda: (
            steps.ship(settings, stores, state, client_for, profile, from_file,
                       dry_run=dry_run)))
    _print_order_report(report, fmt)
    if report.failed:
        sys.exit(EXIT_PARTIAL)


@orders_group.command(name="invoice")
@click.option("--from", "from_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Invoices CSV: order_id, path (the PDF, relative to the CSV's folder; "
                   "';' or ',' separated).")
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--dry-run", is_flag=True, help="Check every row and say what would be sent; "
                                              "send and record nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of the report on stdout.")
@click.pass_obj
@handle_errors
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
    from syncer.orders import steps

    settings = obj.settings()
    stores = settings.selected_stores(store)
    run_id = uuid.uuid4().hex[:12]
    with _orders_session(settings, stores, run_id, locked=not dry_run) as (state, client_for):
        report = _orders_step(state, stores, run_id, "orders-invoice", dry_run, lambda: (
            steps.invoice(stores, state, client_for, from_file, dry_run=dry_run)))
    _print_order_report(report, fmt)
    if report.failed:
        sys.exit(EXIT_PARTIAL)


@orders_group.command(name="serials")
@click.option("--from", "from_file", required=True,
              type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Serials CSV: order_id, sku, imei, serial_number (';' or ',' separated; "
                   "sku may stay empty for an order of one line).")
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--dry-run", is_flag=True, help="Check every row and say what would be sent; "
                                              "send and record nothing.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Format of the report on stdout.")
@click.pass_obj
@handle_errors
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
    from syncer.orders import steps

    settings = obj.settings()
    stores = settings.selected_stores(store)
    run_id = uuid.uuid4().hex[:12]
    with _orders_session(settings, stores, run_id, locked=not dry_run) as (state, client_for):
        report = _orders_step(state, stores, run_id, "orders-serials", dry_run, lambda: (
            steps.serials(stores, state, client_for, from_file, dry_run=dry_run)))
    _print_order_report(report, fmt)
    if report.failed:
        sys.exit(EXIT_PARTIAL)


@contextmanager
def _orders_session(settings: Settings, stores: list[StoreSettings], run_id: str, *,
                    locked: bool = True
                    ) -> Iterator[tuple[StateStore, Callable[[StoreSettings], Any]]]:
    """The state (with each store's orders lock) and a client per store, made when first
    needed, sharing one paced limiter per account."""
    import structlog

    from syncer.pipeline.jobs import build_client, paced
    from syncer.state.store import StateStore

    structlog.contextvars.bind_contextvars(run_id=run_id)
    with StateStore.open(settings.state_database_url()) as state, ExitStack() as stack:
        leases = {s.name: stack.enter_context(state.locks.lock(
            f"orders:{s.name}", settings.limits.lock_lease_seconds, run_id))
            for s in stores} if locked else {}
        with paced(settings, state) as limiter_for:
            clients: dict[str, Any] = {}

            def client_for(s: StoreSettings) -> Any:
                if s.name not in clients:
                    clients[s.name] = stack.enter_context(
                        build_client(settings, s, limiter_for(s), leases.get(s.name)))
                return clients[s.name]

            yield state, client_for


def _orders_step(state: StateStore, stores: list[StoreSettings], run_id: str, kind: str,
                 dry_run: bool, step: Callable[[], Any]) -> Any:
    """Run an accept or ship step, recorded in the run log per store (rows that match no
    store's order are counted as `unmatched` in the first store's record)."""
    if dry_run:
        return step()
    records = {s.name: state.runs.start(run_id, s.name, kind) for s in stores}
    try:
        report = step()
    except BaseException as exc:
        for record in records.values():
            state.runs.finish(record, "failed", {}, str(exc) or type(exc).__name__)
        raise
    unmatched = sum(1 for o in report.outcomes if o.store is None)
    for i, (name, record) in enumerate(records.items()):
        counts = report.counts(name)
        if i == 0 and unmatched:
            counts["unmatched"] = unmatched
        failed = counts.get("failed", 0) + counts.get("unmatched", 0)
        state.runs.finish(record, "partial" if failed else "ok", counts)
        _log().info("orders summary", store=name, kind=kind, **counts)
    return report


def _print_order_report(report: Any, fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps({"counts": report.counts(),
                               "outcomes": [o.to_dict() for o in report.outcomes]}, indent=2))
        return
    for outcome in report.outcomes:
        click.echo(outcome.describe())
    counts = report.counts()
    click.echo("Total: " + (", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
                            or "nothing to do"))


def _orders_export_dir(settings: Settings) -> Path:
    folder = settings.orders.export_dir
    return settings.state_dir() / "orders" if folder is None else settings.resolve(folder)


# --- alerts -----------------------------------------------------------------------------------

@cli.group(name="alerts")
def alerts_group() -> None:
    """Alerts: the events that need a person, sent to a webhook, Slack or e-mail.

    \b
      syncer alerts test   a test message through every configured channel
    """


@alerts_group.command(name="test")
@click.option("--store", help="This store's channels only (default: every store's).")
@click.pass_obj
@handle_errors
def alerts_test(obj: Context, store: str | None) -> None:
    """Send a test message through every alert channel configured ([alerts] and each
    store's [stores.alerts]); a channel several stores share gets one message. Records
    nothing. Exit code 0 when every channel took it, 1 otherwise."""
    from syncer.alerts.events import send_test

    settings = obj.settings()
    stores = [settings.store(store)] if store else settings.stores
    if not stores:
        raise ConfigError("no store is configured ([[stores]] in the TOML file)")
    outcomes = send_test(settings, stores, _run_id())
    if not outcomes:
        raise ConfigError("no alert channel is configured: add [alerts.webhook], "
                          "[alerts.slack] or [alerts.email] to the TOML file")
    for o in outcomes:
        state = "OK" if o.error is None else f"FAILED: {o.error}"
        click.echo(f"{o.channel} ({o.where}) for {', '.join(o.stores)}: {state}")
    if any(o.error for o in outcomes):
        sys.exit(EXIT_ERROR)


# --- market -----------------------------------------------------------------------------------

@cli.command(name="market")
@click.option("--store", help="This store only (default: every enabled store).")
@click.option("--refresh", is_flag=True,
              help="Read the BackBox of the store's listings now, then show them: one "
                   "request per listing, 2 a second per token, at most market.pass_seconds "
                   "(and market.max_reads) per store; with stock and losing first.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json", "csv"]),
              default="text", show_default=True,
              help="Output format (csv: for a spreadsheet, formulas are neutralised).")
@click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False),
              help="Catalog file to use instead of the configured one (for the suggestions).")
@click.option("--product", "products", multiple=True,
              help="Also show the public shop's view of this product (a UUID or a product "
                   "URL; repeatable), through [market.shop]; read with --refresh, 1 credit "
                   "each.")
@click.pass_obj
@handle_errors
def market(obj: Context, store: str | None, refresh: bool, fmt: str, catalog: Path | None,
           products: tuple[str, ...]) -> None:
    """Per listing and country: our price, the price to win the BackBox, the winner's price,
    winning or not, our floor and ceiling, the suggested price and why; per store the
    BackBoxes held and lost, and the margin winning the lost ones would cost.

    Without --refresh it shows what the state holds, with its age, and writes nothing.
    Exit code 0, or 1 on error (with --refresh: also when some answers could not be read).
    """
    from syncer.market.shop import refresh_shop, shop_views
    from syncer.market.view import market_store, report_for
    from syncer.state.schema import utcnow
    from syncer.state.store import StateStore

    settings = obj.settings()
    stores = settings.selected_stores(store)
    if products and settings.market.shop is None:
        raise ConfigError("--product needs the public-shop view: set [market.shop] base_url")
    failed = False
    if refresh:
        from syncer.pipeline.jobs import JobContext, paced

        started = utcnow()
        with StateStore.open(settings.state_database_url()) as state, \
                paced(settings, state) as limiter_for, stop_on_signals() as stop:
            ctx = JobContext(settings, state, _run_id(), limiter_for, stop=stop)
            for s in stores:
                # A listing read by this command for another store of its account is not
                # read again: one read answers every market.
                result = market_store(ctx, s, every=ctx.now() - started)
                for error in result.errors:
                    click.echo(f"error: {error}", err=True)
                failed = failed or bool(result.failed)
                if result.left:
                    click.echo(f"store {s.name}: {result.left} listings left for the next "
                               "pass (market.pass_seconds, market.max_reads)", err=True)
            shop_errors = refresh_shop(settings, state, products) if products else {}
            report = report_for(settings, stores, state, catalog=catalog)
            report.shop = shop_views(settings, state, products, report.now, shop_errors)
            failed = failed or bool(shop_errors)
    else:
        with StateStore.open_readonly(settings.state_database_url()) as state:
            report = report_for(settings, stores, state, catalog=catalog)
            report.shop = shop_views(settings, state, products, report.now)
    click.echo(report.render(fmt), nl=False)
    if failed:
        sys.exit(EXIT_ERROR)


# --- helpers ----------------------------------------------------------------------------------

def _load_plan(path: Path) -> Plan:
    from syncer.planning.plan import Plan

    try:
        return Plan.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a plan saved with `syncer plan --format json`: "
                          f"{exc}") from None


def _write_with(path: Path, writer: Callable[[TextIO], None]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            writer(out)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _brief(result: Plan | ProductPlan) -> str:
    s = result.summary()
    return ", ".join(f"{s[k]} {k}" for k in s)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr, only on a terminal and only when not quiet."""
    if quiet or total < 1 or not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("publishing", total=total)
        yield lambda n: bar.advance(task, n)


def main() -> None:
    cli(prog_name="syncer")
