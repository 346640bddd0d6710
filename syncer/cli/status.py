"""`syncer status`, `errors` and `retry`: what the state says of each store, the offers and
products Back Market refused, and quarantined offers released for the next run."""

from __future__ import annotations

import io
import json
import sys
from typing import Any

import click

from syncer.cli.context import (
    EXIT_ERROR,
    Context,
    configured_stores,
    format_option,
    handle_errors,
    store_option,
)
from syncer.cli.render import iso


@click.command()
@store_option("This store only.")
@format_option("text", "json")
@click.pass_obj
@handle_errors
def status(obj: Context, store: str | None, fmt: str) -> None:
    """Per store: live, zeroed, failed and pending offers, the queue behind the hourly
    budget (by priority, with the time to drain it) and the last runs."""
    from syncer.planning.queue import status_queues
    from syncer.state.schema import utcnow
    from syncer.state.store import StateStore

    settings = obj.settings()
    stores = configured_stores(settings, store)
    names = [s.name for s in stores]
    report: list[dict[str, Any]] = []
    with StateStore.open_readonly(settings.state_database_url()) as state:
        queues = status_queues(settings, stores, state, utcnow())
        for name, queue in zip(names, queues, strict=True):
            report.append({
                "store": name,
                "offers": state.status.counts(name),
                "revision": state.offers.revision(name),
                "in_flight": state.batches.offers_in_flight(name),
                "queue": queue.to_dict(),
                "last_runs": [
                    {"run_id": r["run_id"], "kind": r["kind"], "outcome": r["outcome"],
                     "started_at": iso(r["started_at"]), "finished_at": iso(r["finished_at"]),
                     "counts": r["counts"], "message": r["message"]}
                    for r in state.runs.latest(name, limit=5)
                ],
            })
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))
        return
    queue_of = {q.store: q for q in queues}
    for entry in report:
        o = entry["offers"]
        click.echo(f"Store {entry['store']}: {o['live']} live, {o['zeroed']} zeroed, "
                   f"{o['failed']} failed, {o['never_confirmed']} never confirmed, "
                   f"{entry['in_flight']} pending in batches in flight")
        click.echo(f"  queue: {queue_of[entry['store']].line()}")
        for run in entry["last_runs"]:
            c = run["counts"]
            click.echo(f"  {run['started_at']}  {run['kind']:<7} {run['outcome']:<8} "
                       + ", ".join(f"{k} {v}" for k, v in sorted(c.items()) if v)
                       + (f"  ({run['message']})" if run["message"] else ""))
        if not entry["last_runs"]:
            click.echo("  no run yet")


@click.command()
@store_option("This store only.")
@format_option("text", "json", "csv", help="csv: for a spreadsheet (formulas are neutralised).")
@click.pass_obj
@handle_errors
def errors(obj: Context, store: str | None, fmt: str) -> None:
    """Offers Back Market rejected last time, with its message and request id, and product
    proposals it rejected, with its reason. Offers refused too many runs in a row with the
    same error are marked QUARANTINED: `syncer retry SKU` sends them again."""
    from syncer.core.offers import visible
    from syncer.reports.tables import write_csv
    from syncer.state.store import StateStore

    settings = obj.settings()
    configured_stores(settings, store)  # an unknown name is an error, not "No failed offers."
    after = settings.limits.quarantine_after
    with StateStore.open_readonly(settings.state_database_url()) as state:
        rows = state.status.failures(store)
        products = state.products.rejected_products(store)
    for row in rows:
        row["quarantined"] = bool(after) and row["attempts"] >= after
    if fmt == "json":
        click.echo(json.dumps({
            "offers": [{**r, "updated_at": iso(r["updated_at"]),
                        "confirmed_at": iso(r["confirmed_at"])} for r in rows],
            "products": [{**p, "updated_at": iso(p["updated_at"])} for p in products],
        }, indent=2))
        return
    if fmt == "csv":
        out = io.StringIO()
        write_csv(out, ["store", "kind", "sku", "ean", "error", "code", "request_id",
                        "attempts", "quarantined", "last_attempt"],
                  [*([r["store"], "offer", r["sku"], "", r["last_error"], r["error_code"],
                      r["request_id"], r["attempts"], "yes" if r["quarantined"] else "no",
                      iso(r["updated_at"])] for r in rows),
                   *([p["store"], "product", p["sku"], p["ean"], p["reason"], "", "", "",
                      "", iso(p["updated_at"])] for p in products)])
        click.echo(out.getvalue(), nl=False)
        return
    for p in products:
        click.echo(f"{p['store']}  product EAN {p['ean']} (SKU {visible(p['sku'])}) rejected: "
                   f"{visible(p['reason'] or '')}; not sent again until its content changes")
    if not rows and not products:
        click.echo("No failed offers.")
        return
    for r in rows:
        rid = f" [request {r['request_id']}]" if r["request_id"] else ""
        mark = "QUARANTINED " if r["quarantined"] else ""
        error = visible(r["last_error"] or "")
        count = (f"refused {r['attempts']} run{'s' if r['attempts'] != 1 else ''} in a row"
                 if r["attempts"] else "not a refusal, sent again next run")
        click.echo(f"{r['store']}  {mark}{visible(r['sku'])}: {error}{rid} "
                   f"({count}, last {iso(r['updated_at'])})")


@click.command()
@click.argument("skus", nargs=-1, required=True)
@store_option("This store only (default: every store).")
@click.pass_obj
@handle_errors
def retry(obj: Context, skus: tuple[str, ...], store: str | None) -> None:
    """Send quarantined offers again at the next run, without waiting for their content to
    change (for example once Back Market support fixed what refused them)."""
    from syncer.state.store import StateStore

    settings = obj.settings()
    names = [s.name for s in configured_stores(settings, store)]
    missing = []
    with StateStore.open(settings.state_database_url()) as state:
        for sku in skus:
            released = [name for name in names if state.offers.release(name, sku)]
            if released:
                click.echo(f"{sku}: will be sent again by the next run ({', '.join(released)})")
            else:
                missing.append(sku)
    for sku in missing:
        click.echo(f"error: {sku} has no failed offer in "
                   f"{'store ' + store if store else 'any store'}", err=True)
    if missing:
        sys.exit(EXIT_ERROR)
