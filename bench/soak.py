"""`make soak`: publish, kill, change the catalog, repeat, for a set time; then count what
went wrong. The figures that must be 0: duplicates created, lost updates, wrong zeros.

Each round changes the catalog (prices, stock, safety stock, comments, rows removed and
added), then runs `syncer apply` in a forked child that is killed (SIGKILL) at a random crash
point, at a random instant, or not at all, while the emulator injects 429s, 5xx, slow
answers, dropped connections and per-SKU rejections. Some rounds publish a damaged export of
the catalog instead (cut off mid-row, a column renamed, a row shifted, an invisible
character in a SKU, an empty price, a stock column all 0); some stretches of rounds are
network outages (every request fails). Every few rounds the faults stop, the true catalog is
written back and runs are repeated until nothing is left to send; then the emulator must
show exactly the catalog.

Figures that must be 0: wrong zeros (a quantity 0 sent for an offer the true catalog has in
stock), oversells (a quantity sent above the true stock minus safety), lost updates (after a
convergence check, an offer not live as the catalog says), duplicates created.

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

from syncer.cli.main import cli  # noqa: E402
from syncer.core import crashpoints  # noqa: E402
from syncer.emulator.config import EmulatorConfig, Faults  # noqa: E402
from syncer.emulator.server import EmulatorServer  # noqa: E402

TOKEN = "soak-token"
HEADER = ["sku", "ean", "grade", "stock", "safety_stock", "max_quantity", "price_fr",
          "price_de", "warranty_fr", "warranty_de", "comment_fr", "comment_de"]
STOCK, SAFETY, PRICE_FR, PRICE_DE, COMMENT_FR, COMMENT_DE = 3, 4, 6, 7, 10, 11
FAULTS = {"share_429": 0.05, "share_5xx": 0.05, "share_drop": 0.03, "share_slow": 0.02,
          "share_reject": 0.02}
OUTAGE = {**dict.fromkeys(FAULTS, 0.0), "outage": True}  # Back Market down: the same 503
NO_OUTAGE = {**FAULTS, "outage": False}
DAMAGE = ("cut", "rename", "shift", "invisible", "empty_price", "stock_all_zero")
COMMENTS = ("", "Très bon état, testé 30 points", "Batterie neuve · garantie 12 mois",
            "Écran remplacé")
MUST_BE_ZERO = ("duplicates created", "lost updates", "wrong zeros", "oversells")


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
                                   str(self.rnd.randint(0, 2)), "",
                                   f"{self.rnd.randint(20, 900)}.00",
                                   f"{self.rnd.randint(20, 900)}.50", "12", "12",
                                   self.rnd.choice(COMMENTS), self.rnd.choice(COMMENTS)]

    def churn(self) -> None:
        skus = list(self.rows)
        for sku in self.rnd.sample(skus, max(1, len(skus) // 20)):
            row = self.rows[sku]
            what = self.rnd.random()
            if what < 0.35:
                row[PRICE_FR] = f"{self.rnd.randint(20, 900)}.{self.rnd.choice(['00', '90'])}"
            elif what < 0.7:
                row[STOCK] = str(self.rnd.randint(0, 9))
            elif what < 0.75:
                row[SAFETY] = str(self.rnd.randint(0, 2))
            elif what < 0.8:
                row[COMMENT_FR] = self.rnd.choice(COMMENTS)
            elif what < 0.9:
                del self.rows[sku]
            else:
                self.add()

    def text(self, header: list[str] = HEADER, rows: list[list[str]] | None = None) -> str:
        out = io.StringIO()
        writer = csv.writer(out, delimiter=";", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(self.rows.values() if rows is None else rows)
        return out.getvalue()

    def write(self, path: Path) -> None:
        path.write_text(self.text(), encoding="utf-8")

    def write_damaged(self, path: Path, damage: str) -> None:
        """An export of this catalog that went wrong in one of the ways exports do."""
        rows = [list(row) for row in self.rows.values()]
        header = list(HEADER)
        row = self.rnd.choice(rows)
        if damage == "cut":  # an interrupted export: cut mid-row, no final line break
            text = self.text()
            cut = self.rnd.randint(len(text) // 2, len(text) - 2)
            while text[cut - 1] == "\n":
                cut -= 2
            path.write_bytes(text.encode("utf-8")[:len(text[:cut].encode("utf-8"))])
            return
        if damage == "rename":
            column = self.rnd.choice(["stock", "safety_stock", "max_quantity", "comment_fr",
                                      "price_de"])
            header[header.index(column)] = column.replace("_", " ").upper()
        elif damage == "shift":
            del row[self.rnd.randrange(1, len(row))]
        elif damage == "invisible":
            row[0] = row[0][:2] + self.rnd.choice("\u200b\ufeff\u00a0\u2060") + row[0][2:]
        elif damage == "empty_price":
            row[self.rnd.choice([PRICE_FR, PRICE_DE])] = ""
        elif damage == "stock_all_zero":
            for each in rows:
                each[STOCK] = "0"
        path.write_text(self.text(header, rows), encoding="utf-8")

    def expected(self) -> dict[str, tuple[int, Decimal, Decimal, str, str]]:
        return {sku.casefold(): (max(0, int(r[STOCK]) - int(r[SAFETY])), Decimal(r[PRICE_FR]),
                                 Decimal(r[PRICE_DE]), r[COMMENT_FR], r[COMMENT_DE])
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


def sent_quantities(server: EmulatorServer, since: int) -> list[tuple[str, int]]:
    """(SKU key, quantity) of every quantity sent since that exchange, by batch row or by
    single-listing update."""
    ids = {item["id"]: item["sku"].casefold() for item in server.emulator.listings(TOKEN)}
    sent: list[tuple[str, int]] = []
    for exchange in server.emulator.exchanges[since:]:
        body = exchange.request
        if exchange.method != "POST" or not isinstance(body, dict):
            continue
        if exchange.path == "/ws/listings" and "catalog" in body:
            reader = csv.DictReader(io.StringIO(body["catalog"]), delimiter=body["delimiter"])
            sent.extend((row["sku"].casefold(), int(row["quantity"])) for row in reader
                        if row.get("quantity"))
        elif "quantity" in body:
            sent.append((ids.get(exchange.path.rsplit("/", 1)[-1], "?"), int(body["quantity"])))
    return sent


def judge(figures: Counter[str], server: EmulatorServer, since: int,
          catalog: Catalog) -> None:
    """Count the wrong zeros and oversells among what a run sent, against the TRUE catalog
    (whatever damaged export the run was given)."""
    expected = {key: values[0] for key, values in catalog.expected().items()}
    for key, quantity in sent_quantities(server, since):
        wanted = expected.get(key, 0)
        figures["wrong zeros"] += quantity == 0 and wanted > 0
        figures["oversells"] += quantity > wanted


def verify(server: EmulatorServer, catalog: Catalog) -> tuple[int, int]:
    """Lost updates (offers not live as the catalog says) and duplicates created."""
    expected = catalog.expected()
    lost = 0
    for key, (quantity, price_fr, price_de, comment_fr, comment_de) in expected.items():
        for locale, price, comment in (("fr-fr", price_fr, comment_fr),
                                       ("de-de", price_de, comment_de)):
            live = server.emulator.listing(TOKEN, key, locale)
            if live is None or live["quantity"] != quantity or \
                    Decimal(live["price"]) != price or (live["comment"] or "") != comment:
                lost += 1
    created = Counter(entry["sku"].casefold() for task in server.emulator.tasks(TOKEN)
                      for entry in (task["result"].get("product_success") or {}).values()
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
        outage = 0  # rounds of network outage left
        while time.monotonic() < deadline:
            figures["rounds"] += 1
            catalog.churn()
            damage = rnd.choice(DAMAGE) if rnd.random() < 0.3 else None
            if damage is None:
                catalog.write(folder / "catalog.csv")
            else:
                catalog.write_damaged(folder / "catalog.csv", damage)
                figures[f"damaged ({damage})"] += 1
            if not outage and rnd.random() < 0.1:
                outage = rnd.randint(3, 5)  # longer than quarantine_after runs
                figures["outages"] += 1
            set_faults(server, OUTAGE if outage else NO_OUTAGE)
            outage = max(0, outage - 1)
            kill = rnd.choice(["point", "point", "instant", None])
            since = len(server.emulator.exchanges)
            outcome = run_apply(config, kill, rnd)
            figures["runs"] += 1
            figures["kills"] += outcome == "killed"
            judge(figures, server, since, catalog)
            if figures["rounds"] % 5 == 0 or time.monotonic() >= deadline:
                set_faults(server, {**dict.fromkeys(FAULTS, 0.0), "outage": False})
                outage = 0
                catalog.write(folder / "catalog.csv")
                for _ in range(6):
                    since = len(server.emulator.exchanges)
                    run_apply(config, None, rnd)
                    figures["runs"] += 1
                    judge(figures, server, since, catalog)
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
    damaged = {name: value for name, value in figures.items() if name.startswith("damaged")}
    print(f"  catalog damage: {sum(damaged.values())} rounds ("
          + ", ".join(f"{name[9:-1]} {value}" for name, value in sorted(damaged.items()))
          + f"); network outages: {figures['outages']}")
    for name in MUST_BE_ZERO:
        print(f"  {name:<20} {figures[name]}  (must be 0)")
    if any(figures[name] for name in MUST_BE_ZERO):
        sys.exit(1)


if __name__ == "__main__":
    main()
