"""`make bench`: planning speed and memory, as ratios against a baseline measured in the same
run (these machines are noisy: absolute times mislead).

Baseline: a bare pass of Python's csv reader over the same catalog file. Each case runs in a
fresh subprocess so its peak resident memory is its own.

    python bench/run.py [--skus 200000] [--stores 5] [--churn 0.01]

200,000 SKUs x 5 stores = 1,000,000 offers. Cases:
  plan/empty     plan the whole catalog against an empty snapshot (everything is a create)
  plan/churn     plan version 2 (the churn applied) against a full snapshot of version 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.generate import COUNTRIES, LOCALES, generate  # noqa: E402

TARGET_RATIO = 3.0
TARGET_SECONDS = 20.0
TARGET_MB = 600.0

CASE = textwrap.dedent("""
    import csv, json, resource, sys, time
    kind, config, catalog = sys.argv[1:4]
    started = time.perf_counter()
    if kind == "csv":
        with open(catalog, newline="", encoding="utf-8") as fh:
            for _ in csv.reader(fh, delimiter=";"):
                pass
        result = {}
    elif kind == "snapshot":
        from syncer.config import load_settings
        from syncer.planner import catalog_source, make_plan, siblings
        from syncer.state import Ack, StateStore
        from itertools import islice
        settings = load_settings(config)
        with StateStore.open(settings.state_database_url()) as state:
            plan = make_plan(settings, settings.stores, catalog_source(settings), state)
            for store in plan.stores:
                changes = iter(store.changes)
                while chunk := list(islice(changes, 20_000)):
                    state.record_acks(store.store, [
                        Ack(c.sku, c.target, f"id-{c.sku}", c.source_hash) for c in chunk])
        result = {"offers": plan.change_count()}
    else:
        from pathlib import Path
        from syncer.config import load_settings
        from syncer.planner import catalog_source, make_plan
        from syncer.state import StateStore
        settings = load_settings(config)
        with StateStore.open_readonly(settings.state_database_url()) as state:
            plan = make_plan(settings, settings.stores, catalog_source(settings, Path(catalog)),
                             state)
        result = {"changes": plan.change_count(), "unchanged": plan.summary()["unchanged"]}
    result["seconds"] = time.perf_counter() - started
    result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(result))
""")


def run_case(kind: str, config: Path, catalog: Path) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", CASE, kind, str(config), str(catalog)],
                          capture_output=True, text=True, cwd=ROOT, check=False)
    if done.returncode != 0:
        sys.exit(f"benchmark case {kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def write_config(folder: Path, stores: int, catalog: Path) -> Path:
    config = folder / "syncer.toml"
    tables = "".join(
        f'\n[[stores]]\nname = "{c}"\nlocale = "{LOCALES[c]}"\n' for c in COUNTRIES[:stores])
    config.write_text(
        f'state_url = "sqlite:///{folder / "state.db"}"\n[catalog]\npath = "{catalog}"\n'
        f'[api]\ncontact_email = "bench@example.com"\n{tables}', encoding="utf-8")
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=200_000)
    parser.add_argument("--stores", type=int, default=5)
    parser.add_argument("--churn", type=float, default=0.01)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="syncer-bench-") as tmp:
        folder = Path(tmp)
        print(f"generating {args.skus:,} SKUs x {args.stores} stores "
              f"= {args.skus * args.stores:,} offers, churn {args.churn:.0%} ...", flush=True)
        v1, v2 = generate(folder, args.skus, args.stores, args.churn)
        config = write_config(folder, args.stores, v1)
        rows: list[tuple[str, dict[str, float], dict[str, float]]] = []
        base1 = run_case("csv", config, v1)
        rows.append(("plan/empty", run_case("plan", config, v1), base1))
        started = time.perf_counter()
        filled = run_case("snapshot", config, v1)
        print(f"snapshot of {filled['offers']:,.0f} offers written in "
              f"{time.perf_counter() - started:.1f} s", flush=True)
        base2 = run_case("csv", config, v2)
        rows.append(("plan/churn", run_case("plan", config, v2), base2))
    print()
    print(f"{'case':<12} {'offers':>10} {'csv pass':>9} {'plan':>8} {'ratio':>6} "
          f"{'peak MB':>8}  targets: ratio <= {TARGET_RATIO:g} (churn), "
          f"< {TARGET_SECONDS:g} s, < {TARGET_MB:g} MB")
    for name, case, base in rows:
        ratio = case["seconds"] / base["seconds"]
        offers = case["changes"] + case.get("unchanged", 0)
        misses = []
        if name == "plan/churn" and ratio > TARGET_RATIO:
            misses.append("ratio")
        if case["seconds"] >= TARGET_SECONDS:
            misses.append("time")
        if case["peak_mb"] >= TARGET_MB:
            misses.append("memory")
        verdict = "ok" if not misses else "MISSED: " + ", ".join(misses)
        print(f"{name:<12} {offers:>10,.0f} {base['seconds']:>8.2f}s {case['seconds']:>7.2f}s "
              f"{ratio:>5.1f}x {case['peak_mb']:>8.0f}  {verdict}")


if __name__ == "__main__":
    main()
