"""`syncer apply`: publish the plan (made now, or saved with `plan --out`), with progress on
a terminal, the alerts told of each store's outcome, and (``--results``) a run-results file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from syncer.cli.context import (
    Context,
    catalog_option,
    format_option,
    handle_errors,
    new_run_id,
    publish_exit_code,
    results_option,
    store_option,
)
from syncer.cli.render import print_results
from syncer.cli.session import job_session
from syncer.errors import ConfigError, StalePlan, SyncerError

if TYPE_CHECKING:
    from syncer.planning.plan import Plan
    from syncer.publish.outcomes import PublishResult


@click.command()
@store_option("Publish this store only (default: every enabled store).")
@click.option("--plan", "plan_file", type=click.Path(path_type=Path, dir_okay=False,
                                                      exists=True),
              help="Apply a plan saved with `plan --format json --out FILE`.")
@click.option("--force", is_flag=True,
              help="Publish even if the plan zeroes more live offers than allowed.")
@catalog_option()
@format_option("text", "json", help="Format of the run summary on stdout.")
@results_option()
@click.pass_obj
@handle_errors
def apply(obj: Context, store: str | None, plan_file: Path | None, force: bool,
          catalog: Path | None, fmt: str, results_file: Path | None) -> None:
    """Publish the plan: zeros first, then stock, then other changes, then new listings.

    Every acknowledgement and error is recorded as it arrives. Exit code 0 when everything
    was confirmed, 3 when Back Market rejected some offers, 1 on error (or when Back Market
    could not be reached for some offers).
    """
    from syncer.alerts.events import StoreTurn
    from syncer.errors import SafetyStop
    from syncer.pipeline.jobs import check_zero_share, publish_store
    from syncer.pipeline.planner import catalog_source, make_plan
    from syncer.pipeline.progress import ProgressDisplay
    from syncer.reports.run_results import recording

    settings = obj.settings()
    saved = load_plan(plan_file) if plan_file is not None else None
    if saved is not None:
        if store is not None:
            saved.stores = [s for s in saved.stores if s.store == store]
        stores = [settings.store(s.store) for s in saved.stores]
    else:
        stores = settings.selected_stores(store)
    results: list[PublishResult] = []
    run_id = new_run_id()
    display = ProgressDisplay.for_terminal(obj.quiet)
    with recording(results_file, "apply", run_id) as recorder, \
            job_session(settings, lock=stores, run_id=run_id, results=recorder,
                        display=display) as ctx:
        state = ctx.state
        if saved is not None:
            for store_plan in saved.stores:
                current = state.offers.revision(store_plan.store)
                if current != store_plan.revision:
                    raise StalePlan(
                        f"store {store_plan.store}: the snapshot changed since the plan was "
                        f"made (revision {store_plan.revision}, now {current}); plan again")
            the_plan = saved
        else:
            the_plan = make_plan(settings, stores,
                                 display.rows(catalog_source(settings, catalog)), state)
        try:
            check_zero_share(settings, the_plan, force)
        except SafetyStop as exc:
            if exc.store is not None:
                ctx.finished(StoreTurn(settings.store(exc.store), exc))
            raise
        for store_plan in the_plan.stores:
            try:
                results.append(publish_store(ctx, store_plan))
            except SyncerError as exc:
                ctx.finished(StoreTurn(settings.store(store_plan.store), exc))
                raise
            ctx.finished(StoreTurn(settings.store(store_plan.store),
                                   publications=results[-1:], ran=("offers",)))
            if ctx.stop():
                break
    print_results(results, fmt)
    sys.exit(publish_exit_code(results))


def load_plan(path: Path) -> Plan:
    from syncer.planning.plan import Plan

    try:
        return Plan.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a plan saved with `syncer plan --format json`: "
                          f"{exc}") from None

