"""Output shared by several commands: a store's publication as a line or as JSON (apply, run,
daemon), timestamps as ISO text."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from syncer.publish.outcomes import PublishResult


def iso(value: Any) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


def print_results(results: list[PublishResult], fmt: str) -> None:
    if fmt == "json":
        click.echo(json.dumps([_result_dict(r) for r in results], indent=2))
        return
    for r in results:
        click.echo(result_line(r))


def _result_dict(r: PublishResult) -> dict[str, Any]:
    return {"store": r.store, "outcome": r.outcome, "counts": r.counts, "stopped": r.stopped,
            "failures": [{"sku": f.sku, "error": f.message, "code": f.code,
                          "request_id": f.request_id} for f in r.failures],
            "notices": r.notices}


def result_line(r: PublishResult, prefix: str = "") -> str:
    from syncer.core.offers import visible

    c = r.counts
    line = (f"{prefix}Store {r.store}: {c['created']} created, {c['updated']} updated, "
            f"{c['zeroed']} zeroed, {c['retried']} retried, {c['failed']} failed")
    if c["unreachable"]:
        line += f" ({c['unreachable']} of them not sent: Back Market unreachable)"
    if c["already_published"]:
        line += f", {c['already_published']} already published"
    if c["in_flight"]:
        line += f", {c['in_flight']} in flight (checked next run)"
        if c.get("unknown"):
            line += f" ({c['unknown']} of them in a batch whose answer was lost)"
    if c["queued"]:
        line += f", {c['queued']} queued for the next run (hourly budget)"
    line += f" ({c.get('requests', 0)} requests, {c.get('retries', 0)} retries)"
    lines = [line]
    lines += [f"  NOTE {visible(notice)}" for notice in r.notices[:50]]
    for failure in r.failures[:50]:
        rid = f" [request {failure.request_id}]" if failure.request_id else ""
        lines.append(f"  FAILED {visible(failure.sku)}: {visible(failure.message)}{rid}")
    if len(r.failures) > 50:
        lines.append(f"  ... and {len(r.failures) - 50} more (see `syncer errors`)")
    if r.stopped:
        lines.append(f"  {'INTERRUPTED' if r.interrupted else 'STOPPED'}: {r.stopped}")
    return "\n".join(lines)
