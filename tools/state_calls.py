"""Rewrite code written against the old one-class ``StateStore`` into its parts (issue 14).

``StateStore`` was one class of ~80 methods; it is now a thin object whose parts share one
engine: ``state.offers``, ``state.queue``, ``state.budget``, ``state.pace``,
``state.products``, ``state.orders``, ``state.batches``, ``state.runs``, ``state.locks``,
``state.status``, ``state.alerts``, ``state.market`` (see ``syncer/state/store.py``). This
script rewrites, in place:

- calls ``<receiver>.<old_method>(`` into ``<receiver>.<part>.<method>(`` (``OLD_METHODS``
  below: mostly a prefix, a few names shortened where the part says it, e.g.
  ``state.spend_budget(`` -> ``state.budget.spend(``), and ``<receiver>.siblings`` into
  ``<receiver>.offers.siblings``;
- ``StoreSnapshot(state,`` -> ``StoreSnapshot(state.offers,``, ``StoreLease(state,`` ->
  ``StoreLease(state.db,``, ``SkuBudget(<x>state,`` -> ``SkuBudget(<x>state.budget,``;
- ``from syncer.state.store import ...`` of names that moved (``Ack``, ``Failure``,
  ``SnapshotEntry`` to ``syncer.core.snapshot``, ``StoreLease`` and ``holder_id`` to
  ``syncer.state.locks``, ...), into one import per module.

A receiver is a name ``state`` or an attribute chain ending in ``state`` or ``_state``
(``state``, ``self.state``, ``ctx.state``, ``self._state``); pass ``--receiver NAME`` for
others (e.g. ``--receiver other`` for ``other.lock(``). Running it twice changes nothing
the second time. Files: ``.py`` and ``.toml`` (``bench/mutants.toml`` holds code); a file
with the line ``# state_calls: skip`` is left alone (tests/test_state_calls.py).

Usage, from the repository root of a merged tree::

    python tools/state_calls.py                  # rewrite syncer/ tests/ bench/ examples/
    python tools/state_calls.py --check          # list what is left, exit 1 if anything
    python tools/state_calls.py PATH... [--receiver NAME]...

``--check`` also lists ``<receiver>.<name>(`` calls whose name is neither a part nor an old
method: methods a branch added to the old class, to be moved into a part by hand. After
rewriting, run ``ruff check --fix --select I`` on the changed files to sort imports.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

# old StateStore method -> (part, method)
OLD_METHODS: dict[str, tuple[str, str]] = {
    # state.offers: the snapshot, acknowledgements and failures
    **{name: ("offers", name) for name in (
        "snapshot", "snapshot_entries", "snapshot_index", "live_count", "revision",
        "record_acks", "record_observed", "forget", "record_failures", "release")},
    # state.queue
    "queued": ("queue", "queued"), "enqueue": ("queue", "enqueue"),
    # state.budget and state.pace
    "budget_used": ("budget", "used"), "spend_budget": ("budget", "spend"),
    "refund_budget": ("budget", "refund"),
    "load_pace": ("pace", "load"), "save_pace": ("pace", "save"),
    # state.products
    **{name: ("products", name) for name in (
        "proposals", "record_proposals", "rejected_products", "category_tree",
        "save_category_tree")},
    # state.orders
    **{name: ("orders", name) for name in (
        "save_orders", "order_hashes", "find_order", "orders_in_state", "order_line_units",
        "line_actions", "record_line_action", "shipment", "record_shipment", "invoice",
        "record_invoice", "line_identifier", "record_line_identifier", "order_watermark",
        "set_order_watermark")},
    # state.batches
    "add_pending_batch": ("batches", "add"), "set_batch_task": ("batches", "set_task"),
    "batch_sent_at": ("batches", "sent_at"), "pending_batches": ("batches", "pending"),
    "offers_in_flight": ("batches", "offers_in_flight"), "remove_batch": ("batches", "remove"),
    # state.runs and state.locks
    "start_run": ("runs", "start"), "finish_run": ("runs", "finish"),
    "last_success": ("runs", "last_success"), "runs": ("runs", "latest"),
    "finished_runs": ("runs", "finished"), "lock": ("locks", "lock"),
    # state.status
    "status_counts": ("status", "counts"), "failures": ("status", "failures"),
    "stores": ("status", "stores"),
    # state.alerts
    "alert_rows": ("alerts", "rows"), "save_alert_rows": ("alerts", "save_rows"),
    # state.market
    **{name: ("market", name) for name in (
        "save_competition", "competition", "shop_credits_spent", "spend_shop_credits",
        "save_shop_view", "shop_view", "market_listings")},
    # the database itself
    "_read": ("db", "read"), "_write": ("db", "write"),
}
# Attributes and methods StateStore keeps.
KEPT = frozenset({"open", "open_readonly", "close", "engine"})
# Names importable from syncer.state.store before, and the module that has them now.
MOVED_NAMES: dict[str, str] = {
    "Ack": "syncer.core.snapshot", "Failure": "syncer.core.snapshot",
    "SnapshotEntry": "syncer.core.snapshot",
    "StoreLease": "syncer.state.locks", "holder_id": "syncer.state.locks",
    "StoreSnapshot": "syncer.state.offers",
    "METADATA": "syncer.state.schema", "UTCDateTime": "syncer.state.schema",
    "utcnow": "syncer.state.schema",
    "SCHEMA_VERSION": "syncer.state.version",
    "SUCCESSFUL_OUTCOMES": "syncer.state.runs",
    "StateStore": "syncer.state.store",
}
DEFAULT_PATHS = ("syncer", "tests", "bench", "examples")
SKIP = "# state_calls: skip"
_RECEIVER = r"(?<![\w.])((?:\w+\.)*_?state)"
_IMPORT = re.compile(r"^(?P<indent>[ \t]*)from syncer\.state\.store import "
                     r"(?:\((?P<many>[^)]*)\)|(?P<one>[^\n(]+))", re.M)


def receiver_pattern(extra: list[str]) -> str:
    if not extra:
        return _RECEIVER
    names = "|".join(re.escape(name) for name in extra)
    return rf"(?<![\w.])((?:\w+\.)*_?state|{names})"


def rewrite(text: str, extra: list[str] | None = None) -> str:
    """The text with old-style calls rewritten; a call's continuation lines aligned with its
    opening bracket move with it."""
    out: list[str] = []
    shifts: list[tuple[int, int]] = []  # (old column, new column) of brackets left open
    depth = 0  # brackets still open since the last rewritten line
    for line in text.split("\n"):
        indent = len(line) - len(line.lstrip(" "))
        if depth > 0:
            for old, new in shifts:
                if line.strip() and indent == old:
                    line = " " * new + line[indent:]
                    break
        new_line = _rewrite_line(line, extra)
        if new_line != line:
            shifts = list(zip(_open_columns(line), _open_columns(new_line), strict=False))
            depth = len(shifts)
        elif depth > 0:
            depth += _balance(line)
        out.append(new_line)
    return _IMPORT.sub(_imports, "\n".join(out))


def _balance(line: str) -> int:
    """Brackets the line opens minus those it closes (strings skipped roughly)."""
    return len(_open_columns(line)) - _closed_unopened(line)


def _closed_unopened(line: str) -> int:
    depth = closed = 0
    for char in _code(line):
        if char in "([{":
            depth += 1
        elif char in ")]}":
            if depth:
                depth -= 1
            else:
                closed += 1
    return closed


def _code(line: str) -> str:
    """The line without its strings' contents and its comment (roughly)."""
    out, quote = [], ""
    for char in line:
        if quote:
            quote = "" if char == quote else quote
            out.append(" ")
        elif char in "'\"":
            quote = char
            out.append(" ")
        elif char == "#":
            break
        else:
            out.append(char)
    return "".join(out)


def _open_columns(line: str) -> list[int]:
    """Columns just after each bracket the line leaves open (strings skipped roughly)."""
    stack: list[int] = []
    for column, char in enumerate(_code(line)):
        if char in "([{":
            stack.append(column + 1)
        elif char in ")]}" and stack:
            stack.pop()
    return stack


def _rewrite_line(text: str, extra: list[str] | None) -> str:
    receiver = receiver_pattern(extra or [])
    methods = "|".join(sorted(OLD_METHODS, key=len, reverse=True))

    def call(match: re.Match[str]) -> str:
        part, method = OLD_METHODS[match.group(2)]
        return f"{match.group(1)}.{part}.{method}("

    text = re.sub(rf"{receiver}\.({methods})\(", call, text)
    text = re.sub(rf"{receiver}\.siblings\b", r"\1.offers.siblings", text)
    text = re.sub(rf"\bStoreSnapshot\({receiver},", r"StoreSnapshot(\1.offers,", text)
    text = re.sub(rf"\bStoreLease\({receiver},", r"StoreLease(\1.db,", text)
    text = re.sub(rf"\bSkuBudget\({receiver},", r"SkuBudget(\1.budget,", text)
    # References in prose: ``StateStore.record_acks`` -> ``OfferStore``-style part paths.
    text = re.sub(rf"\bStateStore\.({methods})\b(?!\.)",
                  lambda m: "StateStore.{}.{}".format(*OLD_METHODS[m.group(1)]), text)
    return text


def _imports(match: re.Match[str]) -> str:
    names = [n.strip() for n in (match.group("many") or match.group("one")).split(",")]
    by_module: dict[str, list[str]] = {}
    for name in filter(None, names):
        by_module.setdefault(MOVED_NAMES.get(name.split(" as ")[0], "syncer.state.store"),
                             []).append(name)
    indent = match.group("indent")
    return "\n".join(f"{indent}from {module} import {', '.join(sorted(found))}"
                     for module, found in sorted(by_module.items()))


def leftovers(text: str, extra: list[str] | None = None) -> list[str]:
    """Old-style calls left, and calls of names no part has (methods to place by hand)."""
    receiver = receiver_pattern(extra or [])
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in re.finditer(rf"{receiver}\.(\w+)\b(?!\.)", line):
            name, called = match.group(2), line[match.end():match.end() + 1] == "("
            if name == "siblings" or (called and name in OLD_METHODS):
                found.append(f"{number}: old-style {match.group(0)}")
            elif called and name not in KEPT:
                found.append(f"{number}: {match.group(0)}( is not a part of StateStore")
    found.extend(f"{text.count(chr(10), 0, m.start()) + 1}: import from syncer.state.store "
                 f"of a moved name" for m in _IMPORT.finditer(text)
                 if _imports(m) != m.group(0))
    return found


def files(paths: list[str]) -> list[Path]:
    out: list[Path] = []
    for path in map(Path, paths):
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        out.extend(p for p in candidates if p.suffix in (".py", ".toml")
                   and ".venv" not in p.parts and p.resolve() != Path(__file__).resolve())
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", nargs="*", default=list(DEFAULT_PATHS))
    parser.add_argument("--check", action="store_true", help="list, change nothing")
    parser.add_argument("--receiver", action="append", default=[],
                        help="another name that holds a StateStore (repeatable)")
    args = parser.parse_args(argv)
    problems = 0
    for path in files(args.paths):
        text = path.read_text(encoding="utf-8")
        if any(line.startswith(SKIP) for line in text.splitlines()):
            continue
        if args.check:
            for line in leftovers(text, args.receiver):
                print(f"{path}:{line}")
                problems += 1
            continue
        new = rewrite(text, args.receiver)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"rewrote {path}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
