"""`make soak`: publish, kill, change the catalog, repeat, for a set time; then count what
went wrong. The figures that must be 0: duplicates created, lost updates, wrong zeros.

Each round changes the catalog (prices, stock, rows removed and added), then runs
`syncer apply` in a forked child that is killed (SIGKILL) at a random crash point, at a
random instant, or not at all, while the emulator injects 429s, 5xx, slow answers, dropped
connections and per-SKU rejections. Every few rounds the faults stop and runs are repeated
until nothing is left to send; then the emulator must show exactly the catalog.

    python bench/soak.py [--minutes 10] [--skus 300] [--seed 7]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import random
import signal
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from click.testing import CliRunner  # noqa: E402
from stdnum import ean as ean_check  # noqa: E402

from syncer import crashpoints  # noqa: E402
from syncer.cli import cli  # noqa: E402
from syncer.emulator import EmulatorConfig, EmulatorServer, Faults  # noqa: E402

TOKEN = "soak-token"
HEADER = ["sku", "ean", "grade", "stock", "price_fr", "price_de", "warranty_fr", "warranty_de"]
FAULTS = {"share_429": 0.05, "share_5xx": 0.05, "share_drop": 0.03, "share_slow": 0.02,
          "share_reject": 0.02}


def ean(n: int) -> str:
    base = f"{350000000000 + n:012d}"
    return base + ean_check.calc_check_digit(base)


class Catalog:
    def __init__(self, rnd: random.Random, skus: int) -> None:
        self.rnd = rnd
        self.next = 0
        self.rows: dict[str, list[str]] = {}
        for _ in range(skus):
            self.add()

    def add(self) -> None:
        n = self.next
        self.next += 1
        self.rows[f"S-{n:05d}"] = [f"S-{n:05d}", ean(n), "GOOD", str(self.rnd.randint(0, 9)),
                                   f"{self.rnd.randint(20, 900)}.00",
                                   f"{self.rnd.randint(20, 900)}.50", "12", "12"]

    def churn(self) -> None:
        skus = list(self.rows)
        for sku in self.rnd.sample(skus, max(1, len(skus) // 20)):
            row = self.rows[sku]
            what = self.rnd.random()
            if what < 0.4:
                row[4] = f"{self.rnd.randint(20, 900)}.{self.rnd.choice(['00', '90'])}"
            elif what < 0.8:
                row[3] = str(self.rnd.randint(0, 9))
            elif what < 0.9:
                del self.rows[sku]
            else:
                self.add()

    def write(self, path: Path) -> None:
        with path.open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, delimiter=";", lineterminator="\n")
            writer.writerow(HEADER)
            writer.writerows(self.rows.values())

    def expected(self) -> dict[str, tuple[int, Decimal, Decimal]]:
        return {sku.casefold(): (int(r[3]), Decimal(r[4]), Decimal(r[5]))
                for sku, r in self.rows.items()}


def set_faults(server: EmulatorServer, shares: dict[str, float]) -> None:
    for name, share in shares.items():
        setattr(server.emulator.faults, name, share)


def run_apply(config: Path, kill: str | None, rnd: random.Random) -> str:
    """One `syncer apply` in a forked child; returns how it ended."""
    point = rnd.choice(crashpoints.POINTS) if kill == "point" else None
    hit = rnd.randint(1, 4)
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            if point is not None:
                crashpoints.arm(point, hit)
            code = CliRunner().invoke(cli, ["--config", str(config), "--quiet",
                                            "apply"]).exit_code
        finally:
            os._exit(code)
    timer = None
    if kill == "instant":
        timer = threading.Timer(rnd.uniform(0.0, 0.6), _kill, (pid,))
        timer.start()
    _, status = os.waitpid(pid, 0)
    if timer is not None:
        timer.cancel()
    if os.WIFSIGNALED(status):
        return "killed"
    return f"exit {os.WEXITSTATUS(status)}"


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it finished first
        os.kill(pid, signal.SIGKILL)


def sent_zeros(server: EmulatorServer, since: int) -> set[str]:
    """SKUs for which a quantity of 0 was sent since that exchange."""
    ids = {item["id"]: item["sku"].casefold() for item in server.emulator.listings(TOKEN)}
    zeros: set[str] = set()
    for exchange in server.emulator.exchanges[since:]:
        body = exchange.request
        if exchange.method != "POST" or not isinstance(body, dict):
            continue
        if exchange.path == "/ws/listings" and "catalog" in body:
            reader = csv.DictReader(io.StringIO(body["catalog"]), delimiter=body["delimiter"])
            zeros.update(row["sku"].casefold() for row in reader if row.get("quantity") == "0")
        elif body.get("quantity") in (0, "0"):
            zeros.add(ids.get(exchange.path.rsplit("/", 1)[-1], "?"))
    return zeros


def verify(server: EmulatorServer, catalog: Catalog) -> tuple[int, int]:
    """Lost updates (offers not live as the catalog says) and duplicates created."""
    expected = catalog.expected()
    lost = 0
    for key, (stock, price_fr, price_de) in expected.items():
        for locale, price in (("fr-fr", price_fr), ("de-de", price_de)):
            live = server.emulator.listing(TOKEN, key, locale)
            if live is None or live["quantity"] != stock or Decimal(live["price"]) != price:
                lost += 1
    created = Counter(entry["sku"].casefold() for task in server.emulator.tasks(TOKEN)
                      for entry in task["result"].get("listings", [])
                      if entry["status"] == "created")
    duplicates = sum(count - 1 for count in created.values() if count > 1)
    return lost, duplicates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--skus", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rnd = random.Random(args.seed)
    os.environ["SOAK_TOKEN"] = TOKEN
    figures: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="syncer-soak-") as tmp, \
            EmulatorServer(EmulatorConfig(tokens=(TOKEN,), task_delay=0.05,
                                          sku_lines_per_hour=0, block_seconds=0.2,
                                          faults=Faults(seed=args.seed))) as server:
        folder = Path(tmp)
        config = folder / "syncer.toml"
        config.write_text(textwrap.dedent(f"""
            state_url = "sqlite:///{folder / 'state.db'}"
            [catalog]
            path = "{folder / 'catalog.csv'}"
            [api]
            contact_email = "soak@example.com"
            task_poll_seconds = 0.05
            backoff_base_seconds = 0.01
            backoff_cap_seconds = 0.2
            batch_rows = 40
            [limits]
            sku_lines_per_hour = 0
            rate_block_seconds = 0.2
            requests_per_window = 1000
            [[stores]]
            name = "fr"
            locale = "fr-fr"
            environment = "{server.base_url}"
            token_env = "SOAK_TOKEN"
            [[stores]]
            name = "de"
            locale = "de-de"
            environment = "{server.base_url}"
            token_env = "SOAK_TOKEN"
            """), encoding="utf-8")
        catalog = Catalog(rnd, args.skus)
        deadline = time.monotonic() + args.minutes * 60
        started = time.monotonic()
        while time.monotonic() < deadline:
            figures["rounds"] += 1
            catalog.churn()
            catalog.write(folder / "catalog.csv")
            offered = {key for key, (stock, _, _) in catalog.expected().items() if stock > 0}
            set_faults(server, FAULTS)
            kill = rnd.choice(["point", "point", "instant", None])
            since = len(server.emulator.exchanges)
            outcome = run_apply(config, kill, rnd)
            figures["runs"] += 1
            figures["kills"] += outcome == "killed"
            figures["wrong zeros"] += len(sent_zeros(server, since) & offered)
            if figures["rounds"] % 5 == 0 or time.monotonic() >= deadline:
                set_faults(server, dict.fromkeys(FAULTS, 0.0))
                for _ in range(6):
                    since = len(server.emulator.exchanges)
                    run_apply(config, None, rnd)
                    figures["runs"] += 1
                    figures["wrong zeros"] += len(sent_zeros(server, since) & offered)
                    plan = CliRunner().invoke(cli, ["--config", str(config), "--quiet", "plan"])
                    if plan.exit_code == 0:
                        break
                lost, duplicates = verify(server, catalog)
                figures["checks"] += 1
                figures["lost updates"] += lost
                figures["duplicates created"] = max(figures["duplicates created"], duplicates)
                figures["offers published"] = len(catalog.rows) * 2
                server.emulator.exchanges.clear()
            progress = f"{time.monotonic() - started:6.0f} s  " + ", ".join(
                f"{name} {value}" for name, value in figures.items())
            if sys.stdout.isatty():
                print("\r" + progress, end="", flush=True)
            elif figures["rounds"] % 5 == 0:
                print(progress, flush=True)
    print()
    print(f"soak: {figures['rounds']} rounds, {figures['runs']} runs, {figures['kills']} kills, "
          f"{figures['checks']} convergence checks, {figures['offers published']} offers "
          "published and verified live")
    for name in ("duplicates created", "lost updates", "wrong zeros"):
        print(f"  {name:<20} {figures[name]}  (must be 0)")
    if any(figures[name] for name in ("duplicates created", "lost updates", "wrong zeros")):
        sys.exit(1)


if __name__ == "__main__":
    main()
