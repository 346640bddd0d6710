"""What a command opens around the engine's work: the state, the stores' locks, one paced
limiter per account, the stop signals, and the ``JobContext`` the jobs share; for the orders
commands, their own locks, a client per store, and one recorded run per store.

The engine is imported when a session opens, never at import time (`syncer --help`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from syncer.cli.context import log, new_run_id

if TYPE_CHECKING:
    from syncer.backmarket.limits import ApiLimits
    from syncer.config.settings import Settings
    from syncer.config.stores import StoreSettings
    from syncer.pipeline.jobs import JobContext
    from syncer.pipeline.progress import ProgressDisplay
    from syncer.reports.run_results import RunResults
    from syncer.state.locks import StoreLease
    from syncer.state.store import StateStore


@contextmanager
def stop_on_signals() -> Iterator[Callable[[], bool]]:
    """SIGTERM or Ctrl-C ask the run to stop: the request in flight finishes and is
    recorded, nothing more is sent, and the command exits cleanly."""
    stopping = threading.Event()
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: object) -> None:
        if stopping.is_set():
            raise KeyboardInterrupt  # a second signal: stop now
        stopping.set()
        log().warning("stop requested: finishing the request in flight",
                      signal=signal.Signals(signum).name)

    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, handler)
    try:
        yield stopping.is_set
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


@contextmanager
def open_state(settings: Settings) -> Iterator[StateStore]:
    """The state, opened for writing, knowing each store's siblings (the stores sharing its
    listings, whose stock a confirmation updates too)."""
    from syncer.pipeline.planner import siblings
    from syncer.state.store import StateStore

    with StateStore.open(settings.state_database_url()) as state:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        yield state


def job_context(settings: Settings, state: StateStore,
                limiter_for: Callable[[StoreSettings], ApiLimits], *, run_id: str | None = None,
                leases: dict[str, StoreLease] | None = None,
                stop: Callable[[], bool] | None = None, alerts: bool = True,
                results: RunResults | None = None,
                display: ProgressDisplay | None = None) -> JobContext:
    """A run's context (a new run id unless given), telling the alerts (with ``alerts``)
    when a store's work is over, the run-results file (``results``) of each offer and the
    progress display (``display``) of each step."""
    from syncer.alerts.events import notifier
    from syncer.pipeline.jobs import JobContext

    ctx = JobContext(settings, state, run_id or new_run_id(), limiter_for, leases or {},
                     results=results)
    if display is not None:
        ctx.display = display
    if stop is not None:
        ctx.stop = stop
    if alerts:
        ctx.finished = notifier(ctx)
    return ctx


@contextmanager
def job_session(settings: Settings, *, lock: Sequence[StoreSettings] = (),
                signals: bool = True, alerts: bool = True, run_id: str | None = None,
                results: RunResults | None = None,
                display: ProgressDisplay | None = None) -> Iterator[JobContext]:
    """One run of apply, run, reconcile or market --refresh: the state, the lock of each
    store in ``lock``, one paced limiter per account, and (with ``signals``) SIGTERM or
    Ctrl-C asking the run to stop."""
    from syncer.pipeline.jobs import paced

    with open_state(settings) as state, ExitStack() as stack:
        run_id = run_id or new_run_id()
        leases = {s.name: stack.enter_context(
            state.locks.lock(s.name, settings.limits.lock_lease_seconds, run_id)) for s in lock}
        limiter_for = stack.enter_context(paced(settings, state))
        stop = stack.enter_context(stop_on_signals()) if signals else None
        yield job_context(settings, state, limiter_for, run_id=run_id, leases=leases,
                          stop=stop, alerts=alerts, results=results, display=display)


# --- the orders commands ----------------------------------------------------------------------

@contextmanager
def orders_session(settings: Settings, stores: list[StoreSettings], run_id: str, *,
                   locked: bool = True
                   ) -> Iterator[tuple[StateStore, Callable[[StoreSettings], Any]]]:
    """The state (with each store's orders lock) and a client per store, made when first
    needed, sharing one paced limiter per account."""
    from syncer.pipeline.jobs import build_client, paced
    from syncer.state.store import StateStore

    with StateStore.open(settings.state_database_url()) as state, ExitStack() as stack:
        leases = {s.name: stack.enter_context(state.locks.lock(
            f"orders:{s.name}", settings.limits.lock_lease_seconds, run_id))
            for s in stores} if locked else {}
        with paced(settings, state) as limiter_for:
            clients: dict[str, Any] = {}

            def client_for(s: StoreSettings) -> Any:
                if s.name not in clients:
                    clients[s.name] = stack.enter_context(
                        build_client(settings, s, limiter_for(s), leases.get(s.name)))
                return clients[s.name]

            yield state, client_for


def recorded_orders_step(state: StateStore, stores: list[StoreSettings], run_id: str,
                         kind: str, dry_run: bool, step: Callable[[], Any]) -> Any:
    """Run an accept, ship, invoice or serials step, recorded in the run log per store (rows
    that match no store's order are counted as `unmatched` in the first store's record)."""
    if dry_run:
        return step()
    records = {s.name: state.runs.start(run_id, s.name, kind) for s in stores}
    try:
        report = step()
    except BaseException as exc:
        for record in records.values():
            state.runs.finish(record, "failed", {}, str(exc) or type(exc).__name__)
        raise
    unmatched = sum(1 for o in report.outcomes if o.store is None)
    for i, (name, record) in enumerate(records.items()):
        counts = report.counts(name)
        if i == 0 and unmatched:
            counts["unmatched"] = unmatched
        failed = counts.get("failed", 0) + counts.get("unmatched", 0)
        state.runs.finish(record, "partial" if failed else "ok", counts)
        log().info("orders summary", store=name, kind=kind, **counts)
    return report
