"""`syncer plan`: what would be sent to Back Market, and why, written nowhere but where asked;
also the dry run `syncer init` ends with."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from syncer.cli.context import (
    EXIT_CHANGES,
    EXIT_REJECTIONS,
    Context,
    catalog_option,
    format_option,
    handle_errors,
    store_option,
)
from syncer.errors import ConfigError

if TYPE_CHECKING:
    from syncer.config.settings import Settings
    from syncer.config.stores import StoreSettings
    from syncer.planning.plan import Plan
    from syncer.publish.products import ProductPlan


@click.command()
@store_option("Plan this store only (default: every enabled store).")
@format_option("text", "markdown", "json", "html",
               help="Output format (html: one self-contained page, as `syncer report`).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the plan to this file instead of stdout (JSON can be applied later).")
@catalog_option()
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
    sys.exit(show_plan(settings, settings.selected_stores(store), fmt, out, catalog, kind,
                       rejections_file, fail_on, quiet=obj.quiet))


def show_plan(settings: Settings, stores: list[StoreSettings], fmt: str, out: Path | None,
              catalog: Path | None, kind: str = "offers", rejections_file: Path | None = None,
              fail_on: int | None = None, *, quiet: bool = False) -> int:
    """The plan command's work (also the dry run of `syncer init`); returns its exit code."""
    from syncer.catalog.files import CatalogSource
    from syncer.pipeline.planner import catalog_source, make_plan
    from syncer.pipeline.progress import ProgressDisplay
    from syncer.planning.plan import Plan
    from syncer.publish.products import plan_products
    from syncer.reports.rejections import (
        Fingerprinted,
        check_format,
        count_rejections,
        write_rejections,
    )
    from syncer.state.store import StateStore

    if fmt == "html" and kind == "products":
        raise ConfigError("--format html shows offer plans (--kind offers)")
    source: CatalogSource = ProgressDisplay.for_terminal(quiet).rows(
        catalog_source(settings, catalog))
    recorded = None
    if rejections_file is not None:
        check_format(rejections_file)  # before the plan, not after a long one
        source = recorded = Fingerprinted(source)
    result: Plan | ProductPlan
    with StateStore.open_readonly(settings.state_database_url()) as state:
        if kind == "products":
            result = plan_products(settings, stores, source, state)
        else:
            from syncer.planning.queue import plan_queues
            from syncer.state.schema import utcnow

            result = make_plan(settings, stores, source, state)
            result.queue = plan_queues(settings, result, state, utcnow())
    if fmt == "html":
        from syncer.reports.html import plan_report

        assert isinstance(result, Plan)  # products: refused before planning
        page = result
        if out is not None:
            write_with(out, lambda text: plan_report(settings, page, text))
        else:
            plan_report(settings, page, sys.stdout)
    elif isinstance(result, Plan) and fmt == "json":
        # Written change by change: a million-change plan never sits in memory as text.
        if out is not None:
            write_with(out, result.write_json)
        else:
            result.write_json(sys.stdout)
    elif out is not None:
        text = result.render(fmt)
        write_with(out, lambda f: f.write(text))
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


def write_with(path: Path, writer: Callable[[TextIO], object]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as out:
            writer(out)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _brief(result: Plan | ProductPlan) -> str:
    s = result.summary()
    return ", ".join(f"{s[k]} {k}" for k in s)
