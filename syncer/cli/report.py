"""`syncer report`: one self-contained HTML page of a saved plan or of the last run (the page
itself: ``syncer.reports.html``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import click

from syncer.cli.apply import load_plan
from syncer.cli.context import Context, handle_errors
from syncer.cli.plan import write_with
from syncer.errors import ConfigError

if TYPE_CHECKING:
    from syncer.config.settings import Settings


@click.command()
@click.option("--plan", "plan_file", type=click.Path(path_type=Path, dir_okay=False,
                                                      exists=True),
              help="Report this plan, saved with `plan --format json --out FILE` (default: "
                   "the last run in the state).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the page to this file instead of stdout.")
@click.pass_obj
@handle_errors
def report(obj: Context, plan_file: Path | None, out: Path | None) -> None:
    """One self-contained HTML page (no file or network needed to open it) of a saved plan
    or of the last run: the summary per store, the changes (a plan's, old -> new), the
    rejected rows with the seller's column, what waits behind the hourly budget and when
    it should be sent, and charts. Tables sort on a header click and filter as you type.
    """
    from syncer.reports.html import load_run, plan_report, write_run_html

    if plan_file is None:
        last = load_run(obj.settings())  # read before the file is opened: no empty page

        def write(text: TextIO) -> None:
            write_run_html(text, last)
    else:
        saved = load_plan(plan_file)
        try:
            settings: Settings | None = obj.settings()
        except ConfigError:
            settings = None  # a plan read without its configuration: the default budget

        def write(text: TextIO) -> None:
            plan_report(settings, saved, text)

    if out is not None:
        write_with(out, write)
        click.echo(f"report written to {out}", err=True)
    else:
        write(sys.stdout)
