"""`syncer init`: from a catalog export's header to syncer.toml, a mapping profile and a first
dry run."""

from __future__ import annotations

import os
from pathlib import Path

import click

from syncer.cli.context import Context, format_option, handle_errors
from syncer.cli.plan import show_plan
from syncer.errors import ConfigError


@click.command()
@click.argument("catalog", required=False, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--locale", "locales", multiple=True,
              help="A market to sell on, e.g. fr-fr (repeatable; default: the countries of "
                   "the price columns, or the header's language).")
@click.option("--force", is_flag=True, help="Replace an existing syncer.toml and mapping.toml.")
@click.option("--no-plan", is_flag=True, help="Write the files only; do not plan.")
@format_option("text", "markdown", "json", help="Format of the plan on stdout.")
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
    the global option says: `syncer --config DIR/syncer.toml init`), never replacing them
    without --force, and then shows the dry-run plan of `syncer plan`. Non-interactive.
    Exit code 0 when the files were written, 1 on error.
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
    show_plan(settings, settings.selected_stores(None), fmt, None, None)
