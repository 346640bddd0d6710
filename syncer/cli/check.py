"""`syncer check`: each store's token and settings, tried with one cheap call."""

from __future__ import annotations

import sys

import click

from syncer.cli.context import EXIT_ERROR, Context, handle_errors, store_option
from syncer.errors import SyncerError


@click.command()
@store_option()
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
