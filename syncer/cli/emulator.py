"""`syncer emulator`: a local emulator of the Back Market seller API over HTTP, for tests,
demos and integrations (syncer/emulator/: it shares no code with the engine)."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, help="Port (0: any free port).")
@click.option("--token", "tokens", multiple=True,
              help="Accepted token (repeatable; default: emulator-token).")
@click.option("--platform", type=click.Choice(["EU", "US", "AP"]), default="EU",
              show_default=True, help="Platform whose markets are served.")
@click.option("--task-delay", type=float, default=2.0, show_default=True,
              help="Seconds before a batch task is processed.")
@click.option("--budget", type=int, default=2000, show_default=True,
              help="SKU lines per hour on listing updates (0: unlimited).")
@click.option("--state", "state_path", type=click.Path(path_type=Path, dir_okay=False),
              help="SQLite file to keep the emulator's data across restarts.")
@click.option("--reject-sku", "reject_skus", multiple=True,
              help="Always reject this SKU (repeatable), as Back Market would a bad offer.")
@click.option("--fault-429", type=float, default=0.0, help="Share of requests answered 429.")
@click.option("--fault-5xx", type=float, default=0.0, help="Share answered with a 5xx.")
@click.option("--fault-drop", type=float, default=0.0,
              help="Share of dropped connections (half of them after the change applied).")
@click.option("--fault-slow", type=float, default=0.0, help="Share of slow answers.")
@click.option("--slow-seconds", type=float, default=2.0, show_default=True,
              help="How slow a slow answer is.")
@click.option("--fault-reject", type=float, default=0.0, help="Share of per-SKU rejections.")
@click.option("--waf-block", is_flag=True, help="Answer every request with a WAF 403 page.")
@click.option("--rate", type=int, default=200, show_default=True,
              help="Requests per 10 s per token before 429s (Back Market's limit).")
@click.option("--seed", type=int, help="Seed of the fault generator.")
@click.option("--realistic", is_flag=True,
              help="Behave as production integrations observed where the spec is silent: "
                   "listings of the same product and grade reused, products resolved within "
                   "their model family, task results keyed by row.")
@click.option("--result-key", type=click.Choice(["sku", "row"]),
              help="What keys a task result's entries (default: row if --realistic, else sku).")
@click.option("--strict-fields", is_flag=True,
              help="Refuse a single-listing update with a field the spec lacks (Back Market "
                   "ignores it): to check an integration sends only the spec's fields.")
def emulator(host: str, port: int, tokens: tuple[str, ...], platform: str, task_delay: float,
             budget: int, state_path: Path | None, reject_skus: tuple[str, ...],
             fault_429: float, fault_5xx: float, fault_drop: float, fault_slow: float,
             slow_seconds: float, fault_reject: float, waf_block: bool, rate: int,
             seed: int | None, realistic: bool, result_key: str | None,
             strict_fields: bool) -> None:
    """Serve a local emulator of the Back Market seller API over HTTP: listings, tasks,
    products, orders and the BackBox competitors.

    It follows Back Market's published spec, limits and failures included; faults can also
    be changed while it runs through POST /_emulator/faults.
    """
    from syncer.emulator.config import EmulatorConfig, Faults
    from syncer.emulator.server import serve

    if host not in ("127.0.0.1", "localhost", "::1"):
        click.echo("warning: the emulator is a test tool; it has no TLS", err=True)
    faults = Faults(share_429=fault_429, share_5xx=fault_5xx, share_drop=fault_drop,
                    share_slow=fault_slow, slow_seconds=slow_seconds, share_reject=fault_reject,
                    reject_skus={sku: "rejected by the emulator (--reject-sku)"
                                 for sku in reject_skus},
                    waf_block=waf_block, seed=seed)
    config = EmulatorConfig(
        tokens=tokens or ("emulator-token",), platform=platform, task_delay=task_delay,
        sku_lines_per_hour=budget, requests_per_window=rate, faults=faults,
        state_path=None if state_path is None else str(state_path), realistic=realistic,
        result_key=result_key, strict_fields=strict_fields)
    try:
        serve(config, host, port)
    except OSError as exc:  # the listening socket: a port in use, an unknown address
        click.echo(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}; pick "
                   "another --port (0: any free port) or --host", err=True)
        sys.exit(1)
