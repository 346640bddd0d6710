"""`make demo`: the whole loop against the bundled Back Market emulator, on loopback.

1. start the emulator (it rejects one SKU, as Back Market would a bad offer);
2. plan and publish the bundled example catalog to two stores (France, Germany);
3. edit a copy of the catalog: one price, one stock, one row removed;
4. plan again: only the changed, disappeared and failed offers are in it;
5. publish that, and plan once more: nothing left to send.

Everything goes through the real `syncer` command line; the work folder is ./demo.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx

from syncer.emulator.config import EmulatorConfig, Faults
from syncer.emulator.server import EmulatorServer

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "demo"
TOKEN = "demo-token-not-a-real-one"
REJECTED = "GS21-128-GRY"      # the emulator refuses it on the first publication
PRICE_CHANGED = "IPH13-128-BLK"
STOCK_CHANGED = "PS5-DISC"
REMOVED = "SWOLED-WHT"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def syncer(*args: str, expect: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    print("$ syncer " + " ".join(args), flush=True)
    env = {**os.environ, "DEMO_BACKMARKET_TOKEN": TOKEN, "SYNCER_CONFIG": str(WORK / "syncer.toml")}
    done = subprocess.run([sys.executable, "-m", "syncer", "--quiet", *args], env=env,
                          text=True, capture_output=True, cwd=WORK)
    print(done.stdout, end="")
    if done.stderr.strip():
        print(textwrap.indent(done.stderr.rstrip(), "  (stderr) "))
    if done.returncode not in expect:
        sys.exit(f"demo failed: `syncer {' '.join(args)}` exited {done.returncode}")
    return done


def edit_catalog(source: Path, target: Path) -> None:
    with source.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    header, body = rows[0], rows[1:]
    col = {name: i for i, name in enumerate(header)}
    kept = []
    for row in body:
        if row[col["sku"]] == REMOVED:
            continue
        if row[col["sku"]] == PRICE_CHANGED:
            row[col["price_fr"]] = "209,00"
        if row[col["sku"]] == STOCK_CHANGED:
            row[col["stock"]] = "1"
        kept.append(row)
    with target.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter=";", lineterminator="\n")
        writer.writerows([header, *kept])


def main() -> None:
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    shutil.copy(ROOT / "examples" / "catalog.csv", WORK / "catalog.csv")

    # The realistic profile: Back Market as production integrations observed it (listings
    # reused, products resolved within their family, task results keyed by row).
    config = EmulatorConfig(tokens=(TOKEN,), task_delay=0.3, sku_lines_per_hour=0, realistic=True,
                            faults=Faults(reject_skus={REJECTED: "product is not sellable "
                                                                 "in this condition"}))
    with EmulatorServer(config) as server:
        (WORK / "syncer.toml").write_text(textwrap.dedent(f"""
            mapping = "default"
            state_url = "sqlite:///state/syncer.db"

            [catalog]
            path = "catalog.csv"

            [api]
            company = "DemoShop"
            integration = "syncer"
            contact_email = "demo@example.com"
            task_poll_seconds = 0.2

            [[stores]]
            name = "fr"
            locale = "fr-fr"
            environment = "{server.base_url}"
            token_env = "DEMO_BACKMARKET_TOKEN"
            send_deee = true

            [[stores]]
            name = "de"
            locale = "de-de"
            environment = "{server.base_url}"
            token_env = "DEMO_BACKMARKET_TOKEN"
            """), encoding="utf-8")
        banner(f"Back Market emulator on {server.base_url}; work folder {WORK}")
        syncer("check")

        banner("First plan: everything is new (two rows of the catalog are rejected)")
        syncer("plan", expect=(2,))
        banner("Publish it")
        syncer("apply", expect=(3,))  # 3: Back Market rejected one offer
        live = server.emulator.listings(TOKEN)
        print(f"The emulator now holds {len(live)} listings.")

        banner(f"Edit a copy of the catalog: {PRICE_CHANGED} price (fr), {STOCK_CHANGED} "
               f"stock, {REMOVED} removed")
        edit_catalog(WORK / "catalog.csv", WORK / "catalog-edited.csv")
        # The seller sorted it out with Back Market: the emulator stops refusing that SKU.
        httpx.post(f"{server.base_url}/_emulator/faults",
                   json={"reject_skus": {}}).raise_for_status()

        banner("Second plan: only the changed, disappeared and failed offers")
        syncer("plan", "--catalog", "catalog-edited.csv", "--format", "markdown", expect=(2,))
        syncer("plan", "--catalog", "catalog-edited.csv", "--format", "json",
               "--out", "plan.json", expect=(2,))
        check_second_plan(json.loads((WORK / "plan.json").read_text(encoding="utf-8")))
        banner("Publish the saved plan")
        syncer("apply", "--plan", "plan.json")
        banner("Plan again: nothing to send")
        syncer("plan", "--catalog", "catalog-edited.csv")
        syncer("status")
    banner("Demo done")


def check_second_plan(plan: dict[str, Any]) -> None:
    """The demo's claim, checked: nothing but the edits and the failed offer."""
    found = {(c["action"], c["sku"]) for c in plan["changes"]}
    expected = {("update", PRICE_CHANGED), ("update", STOCK_CHANGED), ("zero", REMOVED),
                ("retry", REJECTED)}
    if found != expected:
        sys.exit(f"demo failed: the second plan holds {sorted(found)}, expected "
                 f"{sorted(expected)}")
    print("Checked: the second plan holds only "
          + ", ".join(f"{action} {sku}" for action, sku in sorted(expected))
          + f" ({plan['summary']['unchanged']} offers unchanged).")


if __name__ == "__main__":
    main()
