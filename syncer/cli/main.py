"""The ``syncer`` command: the root group and its global options, with every command
registered on it from its own module (one module per command group, see ``syncer.cli``).

Data goes to stdout, diagnostics to stderr. Library errors become one line on stderr and an
exit code (the codes: ``syncer.cli.context``).
"""

from __future__ import annotations

from pathlib import Path

import click

from syncer import __version__
from syncer.cli.alerts import alerts
from syncer.cli.apply import apply
from syncer.cli.check import check
from syncer.cli.context import Context
from syncer.cli.emulator import emulator
from syncer.cli.init import init
from syncer.cli.market import market
from syncer.cli.orders import orders
from syncer.cli.plan import plan
from syncer.cli.reconcile import reconcile
from syncer.cli.report import report
from syncer.cli.run import daemon, run
from syncer.cli.status import errors, retry, status


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


for command in (plan, report, init, apply, run, daemon, reconcile, status, errors, retry,
                check, emulator, orders, alerts, market):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="syncer")
