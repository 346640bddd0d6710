"""The ``syncer`` command line: a thin layer over the library.

Data goes to stdout, diagnostics to stderr. Library errors become one line on stderr and an
exit code. Exit codes: 0 success (``plan``: nothing to send), 1 error, 2 ``plan`` has changes
to send, 3 ``apply`` finished but some offers were rejected by Back Market.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import structlog

from syncer import __version__
from syncer.client import BackMarketClient
from syncer.config import Settings, StoreSettings, load_settings
from syncer.errors import ConfigError, SafetyStop, StalePlan, SyncerError
from syncer.limits import ApiLimits, RateLimiter, SkuBudget
from syncer.logs import configure
from syncer.plan import Plan
from syncer.planner import catalog_source, make_plan, siblings
from syncer.publish import Publisher, PublishResult
from syncer.state import StateStore

EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_PARTIAL = 3

log = structlog.get_logger("syncer")
F = TypeVar("F", bound=Callable[..., Any])


class Context:
    def __init__(self, config: Path | None, quiet: bool) -> None:
        self.config = config
        self.quiet = quiet

    def settings(self) -> Settings:
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
      syncer plan                  what would be sent, and why (writes nothing)
      syncer apply                 publish it
      syncer status / errors       what the state says
    """
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
@click.pass_obj
@handle_errors
def plan(obj: Context, store: str | None, fmt: str, out: Path | None,
         catalog: Path | None) -> None:
    """Show what would be sent to Back Market, and why. Writes nothing anywhere.

    Exit code 0 when there is nothing to send, 2 when there are changes, 1 on error.
    """
    settings = obj.settings()
    stores = settings.selected_stores(store)
    with StateStore.open_readonly(settings.state_database_url()) as state:
        result = make_plan(settings, stores, catalog_source(settings, catalog), state)
    text = result.render(fmt)
    if out is not None:
        _write(out, text)
        click.echo(f"plan written to {out}: {_brief(result)}", err=True)
    else:
        click.echo(text, nl=False)
    sys.exit(EXIT_CHANGES if result.has_changes else 0)


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
    was confirmed, 3 when Back Market rejected some offers, 1 on error.
    """
    settings = obj.settings()
    saved = _load_plan(plan_file) if plan_file is not None else None
    if saved is not None:
        if store is not None:
            saved.stores = [s for s in saved.stores if s.store == store]
        stores = [settings.store(s.store) for s in saved.stores]
    else:
        stores = settings.selected_stores(store)
    run_id = uuid.uuid4().hex[:12]
    structlog.contextvars.bind_contextvars(run_id=run_id)
    results: list[PublishResult] = []
    with StateStore.open(settings.state_database_url()) as state, ExitStack() as locks:
        state.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        leases = {s.name: locks.enter_context(
            state.lock(s.name, settings.limits.lock_lease_seconds, run_id)) for s in stores}
        if saved is not None:
            for store_plan in saved.stores:
                current = state.revision(store_plan.store)
                if current != store_plan.revision:
                    raise StalePlan(
                        f"store {store_plan.store}: the snapshot changed since the plan was "
                        f"made (revision {store_plan.revision}, now {current}); plan again")
            the_plan = saved
        else:
            the_plan = make_plan(settings, stores, catalog_source(settings, catalog), state)
        _check_zero_share(settings, the_plan, force)
        total = len(the_plan.changes)
        with _progress(total, obj.quiet) as advance, paced(settings, state) as limiter_for:
            for store_plan in the_plan.stores:
                store_settings = settings.store(store_plan.store)
                record = state.start_run(run_id, store_plan.store, "offers")
                try:
                    with build_client(settings, store_settings,
                                      limiter_for(store_settings)) as client:
                        budget = SkuBudget(state, store_settings.budget_key,
                                           settings.limits.sku_lines_per_hour)
                        publisher = Publisher(
                            store_settings, client, state, budget=budget,
                            siblings=siblings(settings, store_settings),
                            batch_rows=settings.api.batch_rows,
                            poll_seconds=settings.api.task_poll_seconds,
                            task_timeout=settings.api.task_timeout_seconds,
                            renew=leases[store_plan.store].renew, progress=advance)
                        result = publisher.apply(store_plan)
                        result.counts.update(requests=client.stats.requests,
                                             retries=client.stats.retries,
                                             rate_limited=client.stats.rate_limited)
                        counts = {**result.counts, "planned": len(store_plan.changes),
                                  "rejected_rows": store_plan.rejected}
                except BaseException as exc:
                    state.finish_run(record, "failed", {}, str(exc) or type(exc).__name__)
                    raise
                state.finish_run(record, result.outcome, counts, result.stopped)
                log.info("run summary", store=store_plan.store, outcome=result.outcome,
                         **counts)
                results.append(result)
    _print_results(results, fmt)
    if any(r.stopped for r in results):
        sys.exit(EXIT_ERROR)
    if any(r.counts["failed"] for r in results):
        sys.exit(EXIT_PARTIAL)


def _check_zero_share(settings: Settings, the_plan: Plan, force: bool) -> None:
    """Invariant 5: an empty or truncated catalog must not take the shop offline."""
    for store_plan in the_plan.stores:
        store = settings.store(store_plan.store)
        limit = store.max_zero_share if store.max_zero_share is not None else \
            settings.limits.max_zero_share
        zeros = store_plan.count("zero")
        if zeros and store_plan.zero_share() > limit and not force:
            raise SafetyStop(
                f"store {store.name}: the plan would zero {zeros} of {store_plan.live} live "
                f"offers ({store_plan.zero_share():.0%}, limit {limit:.0%}); nothing was sent. "
                "Check the catalog (empty, truncated, wrong file?) or rerun with --force")


def build_limits(settings: Settings) -> ApiLimits:
    limits = settings.limits
    return ApiLimits(RateLimiter(limits.requests_per_window, limits.window_seconds),
                     RateLimiter(limits.catalog_requests_per_window, limits.window_seconds),
                     limits.catalog_routes)


def build_client(settings: Settings, store: StoreSettings,
                 limiter: ApiLimits | None = None) -> BackMarketClient:
    """A client for one store. Stores of one account must share one ``limiter``: Back
    Market counts their requests together."""
    return BackMarketClient(
        store.base_url(), settings.token(store), store.locale, settings.api.user_agent(),
        store=store.name, timeout=settings.api.timeout_seconds,
        max_retries=settings.api.max_retries,
        rate_block_seconds=settings.limits.rate_block_seconds,
        backoff_base=settings.api.backoff_base_seconds,
        backoff_cap=settings.api.backoff_cap_seconds,
        limiter=limiter or build_limits(settings))


@contextmanager
def paced(settings: Settings, state: StateStore) -> Iterator[Callable[[StoreSettings],
                                                                       ApiLimits]]:
    """One limiter per account for the whole command, starting from the pace of the
    account's previous run (kept in the state) so that back-to-back runs do not burst."""
    limiters: dict[str, ApiLimits] = {}

    def limiter_for(store: StoreSettings) -> ApiLimits:
        key = store.budget_key
        if key not in limiters:
            limiters[key] = build_limits(settings)
            limiters[key].seed(state.load_pace(key), time.time())
        return limiters[key]

    try:
        yield limiter_for
    finally:
        for key, limiter in limiters.items():
            state.save_pace(key, limiter.history(time.time()))


def _print_results(results: list[PublishResult], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([
            {"store": r.store, "outcome": r.outcome, "counts": r.counts, "stopped": r.stopped,
             "failures": [{"sku": f.sku, "error": f.message, "code": f.code,
                           "request_id": f.request_id} for f in r.failures]}
            for r in results], indent=2))
        return
    for r in results:
        c = r.counts
        line = (f"Store {r.store}: {c['created']} created, {c['updated']} updated, "
                f"{c['zeroed']} zeroed, {c['retried']} retried, {c['failed']} failed")
        if c["already_published"]:
            line += f", {c['already_published']} already published"
        if c["in_flight"]:
            line += f", {c['in_flight']} in flight (checked next run)"
        if c["queued"]:
            line += f", {c['queued']} queued for the next run (hourly budget)"
        line += f" ({c.get('requests', 0)} requests, {c.get('retries', 0)} retries)"
        click.echo(line)
        for failure in r.failures[:50]:
            rid = f" [request {failure.request_id}]" if failure.request_id else ""
            click.echo(f"  FAILED {failure.sku}: {failure.message}{rid}")
        if len(r.failures) > 50:
            click.echo(f"  ... and {len(r.failures) - 50} more (see `syncer errors`)")
        if r.stopped:
            click.echo(f"  STOPPED: {r.stopped}")


# --- status and errors ------------------------------------------------------------------------

@cli.command()
@click.option("--store", help="This store only.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.pass_obj
@handle_errors
def status(obj: Context, store: str | None, fmt: str) -> None:
    """Per store: live, zeroed, failed and pending offers, and the last runs."""
    settings = obj.settings()
    names = [store] if store else [s.name for s in settings.stores]
    report: list[dict[str, Any]] = []
    with StateStore.open_readonly(settings.state_database_url()) as state:
        for name in names:
            report.append({
                "store": name,
                "offers": state.status_counts(name),
                "revision": state.revision(name),
                "in_flight": state.offers_in_flight(name),
                "last_runs": [
                    {"run_id": r["run_id"], "kind": r["kind"], "outcome": r["outcome"],
                     "started_at": _iso(r["started_at"]), "finished_at": _iso(r["finished_at"]),
                     "counts": r["counts"], "message": r["message"]}
                    for r in state.runs(name, limit=5)
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
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.pass_obj
@handle_errors
def errors(obj: Context, store: str | None, fmt: str) -> None:
    """Offers Back Market rejected last time, with its message and request id."""
    settings = obj.settings()
    with StateStore.open_readonly(settings.state_database_url()) as state:
        rows = state.failures(store)
    if fmt == "json":
        click.echo(json.dumps([{**r, "updated_at": _iso(r["updated_at"]),
                                "confirmed_at": _iso(r["confirmed_at"])} for r in rows],
                              indent=2))
        return
    if not rows:
        click.echo("No failed offers.")
        return
    for r in rows:
        rid = f" [request {r['request_id']}]" if r["request_id"] else ""
        click.echo(f"{r['store']}  {r['sku']}: {r['last_error']}{rid} "
                   f"({r['attempts']} attempt{'s' if r['attempts'] != 1 else ''}, "
                   f"last {_iso(r['updated_at'])})")


# --- check ------------------------------------------------------------------------------------

@cli.command()
@click.option("--store", help="This store only (default: every enabled store).")
@click.pass_obj
@handle_errors
def check(obj: Context, store: str | None) -> None:
    """Validate each store's token and settings with one cheap call to Back Market."""
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
              show_default=True)
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
def emulator(host: str, port: int, tokens: tuple[str, ...], platform: str, task_delay: float,
             budget: int, state_path: Path | None, reject_skus: tuple[str, ...],
             fault_429: float, fault_5xx: float, fault_drop: float, fault_slow: float,
             slow_seconds: float, fault_reject: float, waf_block: bool, rate: int,
             seed: int | None) -> None:
    """Serve a local emulator of the Back Market seller API (listings, tasks) over HTTP.

    It follows Back Market's published spec, limits and failures included; faults can also
    be changed while it runs through POST /_emulator/faults.
    """
    from syncer.emulator import EmulatorConfig, Faults, serve

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
        state_path=None if state_path is None else str(state_path))
    serve(config, host, port)


# --- helpers ----------------------------------------------------------------------------------

def _load_plan(path: Path) -> Plan:
    try:
        return Plan.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a plan saved with `syncer plan --format json`: "
                          f"{exc}") from None


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _brief(result: Plan) -> str:
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
