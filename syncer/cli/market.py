"""`syncer market`: per listing and country, the BackBox and the suggested price, from the
state or read now (--refresh), and the public shop's view of chosen products."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from syncer.cli.context import (
    EXIT_ERROR,
    Context,
    catalog_option,
    format_option,
    handle_errors,
    store_option,
)
from syncer.cli.session import job_session
from syncer.errors import ConfigError


@click.command(name="market")
@store_option()
@click.option("--refresh", is_flag=True,
              help="Read the BackBox of the store's listings now, then show them: one "
                   "request per listing, 2 a second per token, at most market.pass_seconds "
                   "(and market.max_reads) per store; with stock and losing first.")
@format_option("text", "markdown", "json", "csv",
               help="Output format (csv: for a spreadsheet, formulas are neutralised).")
@catalog_option("Catalog file to use instead of the configured one (for the suggestions).")
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
    from syncer.pipeline.market import market_store, report_for
    from syncer.state.schema import utcnow
    from syncer.state.store import StateStore

    settings = obj.settings()
    stores = settings.selected_stores(store)
    if products and settings.market.shop is None:
        raise ConfigError("--product needs the public-shop view: set [market.shop] base_url")
    failed = False
    if refresh:
        started = utcnow()
        with job_session(settings, alerts=False) as ctx:
            state = ctx.state
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
