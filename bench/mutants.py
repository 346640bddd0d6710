"""The mutation gate: plausible bugs in the invariants, each of which the suite must catch.

Every mutant in ``bench/mutants.toml`` replaces one exact piece of ``syncer/`` (it must occur
exactly once: a mutant that no longer applies is an error, so the list follows the code) and
names the tests that guard it. Each is applied to a scratch copy of the project and those
tests are run against it; the mutant is killed when they fail. Prints killed/survived per
mutant and the wall time; exits 1 if one survives or no longer applies.

    make mutants                      # every mutant, two at a time
    python bench/mutants.py --only snapshot   # those whose name contains "snapshot"
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from queue import Queue

ROOT = Path(__file__).resolve().parents[1]
LIST = ROOT / "bench" / "mutants.toml"
COPIED = ("syncer", "tests", "mappings", "examples", "bench", "pyproject.toml", "README.md")
SPEC = "../shared/reference/backmarket-openapi.yml"  # Back Market's spec, beside the checkout
TIMEOUT = 600.0  # seconds per mutant: a hang is a failure to converge, so it counts as killed


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Outcome:
    mutant: Mutant
    status: str  # "killed", "survived", "timeout" (killed), "does not apply"
    seconds: float
    detail: str = ""


def load(path: Path = LIST) -> list[Mutant]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    mutants = []
    for item in data["mutant"]:
        mutants.append(Mutant(item["name"], item["file"], item["old"], item["new"],
                              tuple(item["tests"]), item.get("why", "")))
    names = [m.name for m in mutants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"{path}: mutant names used twice: {', '.join(duplicates)}")
    return mutants


def scratch_copy(into: Path) -> Path:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, into / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, into / name)
    return into


def environment(scratch: Path) -> dict[str, str]:
    """The scratch copy first on the path (subprocesses too); the spec the contract checks
    read, from beside this checkout, as the tests find it."""
    spec = Path(os.environ.get("BACKMARKET_OPENAPI") or SPEC)  # as tests/contract.py
    return {**os.environ, "PYTHONPATH": str(scratch), "PYTHONDONTWRITEBYTECODE": "1",
            "BACKMARKET_OPENAPI": str(spec if spec.is_absolute() else (ROOT / spec).resolve())}


def pytest(scratch: Path, tests: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
        cwd=scratch, env=environment(scratch), capture_output=True, text=True, timeout=timeout)


def baseline(scratch: Path, mutants: Sequence[Mutant]) -> str | None:
    """The guarding tests, unmutated, must pass: otherwise a "killed" would prove nothing.
    Returns what failed, or None."""
    tests = sorted({test for mutant in mutants for test in mutant.tests})
    done = pytest(scratch, tests, TIMEOUT * 2)
    if done.returncode == 0:
        return None
    return (done.stdout[-3000:] + done.stderr[-2000:]).strip()


def run_one(mutant: Mutant, scratch: Path) -> Outcome:
    target = scratch / mutant.file
    original = target.read_text(encoding="utf-8")
    count = original.count(mutant.old)
    if count != 1:
        return Outcome(mutant, "does not apply", 0.0,
                       f"the replaced text occurs {count} times in {mutant.file}")
    target.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    started = time.monotonic()
    try:
        done = pytest(scratch, mutant.tests, TIMEOUT)
    except subprocess.TimeoutExpired:
        return Outcome(mutant, "timeout", time.monotonic() - started)
    finally:
        target.write_text(original, encoding="utf-8")
    seconds = time.monotonic() - started
    if done.returncode == 0:
        return Outcome(mutant, "survived", seconds)
    if done.returncode not in (1,):  # 2: interrupted/usage, 4: bad arguments, 5: no tests
        return Outcome(mutant, "error", seconds, done.stdout[-2000:] + done.stderr[-2000:])
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return Outcome(mutant, "killed", seconds, failed[0] if failed else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the mutants whose name contains this")
    parser.add_argument("--jobs", type=int, default=2, help="mutants run at once (2)")
    args = parser.parse_args()
    mutants = [m for m in load() if not args.only or args.only in m.name]
    if not mutants:
        print("no mutant matches", file=sys.stderr)
        return 2
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mutants-") as tmp:
        scratches: Queue[Path] = Queue()
        for index in range(max(1, args.jobs)):
            scratches.put(scratch_copy(Path(tmp) / str(index)))
        print(f"baseline: the guarding tests of {len(mutants)} mutants, unmutated", flush=True)
        failed = baseline(scratches.queue[0], mutants)
        if failed is not None:
            print(f"the tests fail without any mutant; fix them first:\n{failed}",
                  file=sys.stderr)
            return 1
        print(f"baseline green in {time.monotonic() - started:.0f} s", flush=True)

        def work(mutant: Mutant) -> Outcome:
            scratch = scratches.get()
            try:
                outcome = run_one(mutant, scratch)
            finally:
                scratches.put(scratch)
            mark = {"killed": "killed  ", "timeout": "killed  "}.get(outcome.status,
                                                                   outcome.status.upper())
            detail = outcome.detail.splitlines()[0] if outcome.detail else ""
            if outcome.status == "killed":  # the first test that failed, without its message
                detail = detail.removeprefix("FAILED ").split(" - ")[0]
            print(f"{mark} {outcome.seconds:6.1f} s  {mutant.name}"
                  + (f"  [{detail[:110]}]" if detail else ""), flush=True)
            return outcome

        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            outcomes = list(pool.map(work, mutants))
    bad = [o for o in outcomes if o.status not in ("killed", "timeout")]
    wall = time.monotonic() - started
    print(f"\nmutants: {len(outcomes)}, killed {len(outcomes) - len(bad)}, "
          f"not killed {len(bad)}; wall time {wall:.0f} s")
    for outcome in bad:
        print(f"  {outcome.status}: {outcome.mutant.name} ({outcome.mutant.file}): "
              f"{outcome.mutant.why}")
        if outcome.status == "error":
            print("    " + outcome.detail.replace("\n", "\n    ")[-1500:])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
