"""`syncer reconcile`: every live listing compared with the snapshot, the drift recorded for
the next offer run to send again."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from syncer.cli.context import (
    EXIT_CHANGES,
    Context,
    catalog_option,
    format_option,
    handle_errors,
    store_option,
)
from syncer.cli.session import job_session


@click.command(name="reconcile")
@store_option()
@catalog_option()
@format_option("text", "json")
@click.pass_obj
@handle_errors
def reconcile(obj: Context, store: str | None, catalog: Path | None, fmt: str) -> None:
    """Compare every live listing with the snapshot: stock lowered by orders, prices or
    comments changed in the back office, listings missing, listings unknown to the snapshot
    (adopted when the catalog has their SKU). Drifted offers are sent again by the next
    offer run. Exit code 0 when nothing drifted, 2 when drift was found, 1 on error.
    """
    from syncer.pipeline.jobs import reconcile_store
    from syncer.pipeline.planner import catalog_source
    from syncer.pipeline.progress import ProgressDisplay

    settings = obj.settings()
    stores = settings.selected_stores(store)
    reports = []
    with job_session(settings, lock=stores, signals=False, alerts=False,
                     display=ProgressDisplay.for_terminal(obj.quiet)) as ctx:
        for store_settings in stores:
            reports.append(reconcile_store(ctx, store_settings,
                                           catalog_source(settings, catalog)))
    if fmt == "json":
        click.echo(json.dumps([r.to_dict() for r in reports], indent=2, ensure_ascii=False))
    else:
        for report in reports:
            click.echo(report.to_text(), nl=False)
    sys.exit(EXIT_CHANGES if any(r.has_drift for r in reports) else 0)
