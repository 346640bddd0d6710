"""`syncer alerts`: the alert channels (webhook, Slack, e-mail), tried with a test message."""

from __future__ import annotations

import sys

import click

from syncer.cli.context import (
    EXIT_ERROR,
    Context,
    configured_stores,
    handle_errors,
    new_run_id,
    store_option,
)
from syncer.errors import ConfigError


@click.group(name="alerts")
def alerts() -> None:
    """Alerts: the events that need a person, sent to a webhook, Slack or e-mail.

    \b
      syncer alerts test   a test message through every configured channel
    """


@alerts.command(name="test")
@store_option("This store's channels only (default: every store's).")
@click.pass_obj
@handle_errors
def alerts_test(obj: Context, store: str | None) -> None:
    """Send a test message through every alert channel configured ([alerts] and each
    store's [stores.alerts]); a channel several stores share gets one message. Records
    nothing. Exit code 0 when every channel took it, 1 otherwise."""
    from syncer.alerts.events import send_test

    settings = obj.settings()
    outcomes = send_test(settings, configured_stores(settings, store), new_run_id())
    if not outcomes:
        raise ConfigError("no alert channel is configured: add [alerts.webhook], "
                          "[alerts.slack] or [alerts.email] to the TOML file")
    for o in outcomes:
        state = "OK" if o.error is None else f"FAILED: {o.error}"
        click.echo(f"{o.channel} ({o.where}) for {', '.join(o.stores)}: {state}")
    if any(o.error for o in outcomes):
        sys.exit(EXIT_ERROR)
