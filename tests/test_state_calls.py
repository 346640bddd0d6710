"""tools/state_calls.py: code written against the one-class StateStore, rewritten into its parts
(what the lead runs on feature branches merged after issue 14)."""
# state_calls: skip (this file's examples of old-style code are the tool's input)

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

from syncer.state.store import StateStore
from tools.state_calls import OLD_METHODS, leftovers, rewrite

REPO = Path(__file__).resolve().parent.parent

OLD = '''from syncer.state.store import Ack, StateStore, StoreLease, utcnow


def publish(state: StateStore, ctx: Context) -> None:
    state.siblings = {"fr": ("de",)}
    stale = state.record_acks("fr", [Ack("A", target, "L1")],
                              sent_at=utcnow())
    granted = self.state.spend_budget(account, 10, 100)
    with ctx.state.lock("fr", 60, run_id) as lease:
        runs = state.runs("fr", limit=3)
    state.frobnicate("fr")
    budget = SkuBudget(ctx.state, account, 100)
    StoreLease(state, "fr", 60, "holder").acquire()
'''
NEW = '''from syncer.core.snapshot import Ack
from syncer.state.locks import StoreLease
from syncer.state.schema import utcnow
from syncer.state.store import StateStore


def publish(state: StateStore, ctx: Context) -> None:
    state.offers.siblings = {"fr": ("de",)}
    stale = state.offers.record_acks("fr", [Ack("A", target, "L1")],
                                     sent_at=utcnow())
    granted = self.state.budget.spend(account, 10, 100)
    with ctx.state.locks.lock("fr", 60, run_id) as lease:
        runs = state.runs.latest("fr", limit=3)
    state.frobnicate("fr")
    budget = SkuBudget(ctx.state.budget, account, 100)
    StoreLease(state.db, "fr", 60, "holder").acquire()
'''


def test_old_calls_and_imports_are_rewritten_once() -> None:
    assert rewrite(OLD) == NEW
    assert rewrite(NEW) == NEW  # a second run changes nothing


def test_check_lists_old_calls_and_methods_no_part_has() -> None:
    found = leftovers(OLD)
    assert "1: import from syncer.state.store of a moved name" in found
    assert "5: old-style state.siblings" in found and "6: old-style state.record_acks" in found
    assert "11: state.frobnicate( is not a part of StateStore" in found
    assert leftovers(NEW) == ["14: state.frobnicate( is not a part of StateStore"]


def test_another_receiver_is_rewritten_when_named() -> None:
    code = 'with other.lock("fr", 900, "r"):\n'
    assert rewrite(code) == code
    assert rewrite(code, ["other"]) == 'with other.locks.lock("fr", 900, "r"):\n'


def test_every_rewrite_names_a_method_of_a_part(tmp_path: Path) -> None:
    state = StateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        for old, (part, method) in OLD_METHODS.items():
            assert inspect.ismethod(getattr(getattr(state, part), method)), (old, part, method)
    finally:
        state.close()


def test_the_tree_has_no_old_style_call_left() -> None:
    result = subprocess.run([sys.executable, "tools/state_calls.py", "--check"], cwd=REPO,
                            capture_output=True, text=True, check=False, timeout=120)
    assert "old-style" not in result.stdout and "moved name" not in result.stdout, result.stdout
