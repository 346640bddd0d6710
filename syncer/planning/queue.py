"""What waits behind the hourly budget, per store, and when it will have gone.

Back Market takes about 2,000 SKU lines an hour per account (``limits.sku_lines_per_hour``),
counted over a sliding hour: the lines spent at 10:20 are free again at 11:20. The estimate
replays that: the lines the budget has left now go at once, each earlier spending frees its
lines an hour after it was made, and from then on the budget sends ``lines_per_hour`` an
hour. Stores with one token on one host share one budget (``StoreSettings.budget_key``), so a
store's queue has gone only when its account's has: the estimate is the account's.

Product proposals wait for Back Market's review, which the reference gives as "typically
within 12 h" (reference/BACKMARKET.md); nothing tells the engine more, so the expected time
is the proposal's date plus that delay, said to be an estimate.

Pure but for ``status_queues`` and ``plan_queues``, which read the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from syncer.config.settings import Settings
    from syncer.config.stores import StoreSettings
    from syncer.planning.changes import StorePlan
    from syncer.planning.plan import Plan
    from syncer.state.store import StateStore

# Change.priority -> its name in reports (None: queued by an older version of the syncer).
PRIORITIES: Final[tuple[tuple[int | None, str], ...]] = (
    (0, "zero"), (1, "stock"), (2, "update"), (3, "create"), (None, "unknown"))
# Back Market's review of a product proposal, "typically within 12 h" (the reference).
REVIEW_DELAY: Final = timedelta(hours=12)
HOUR: Final = timedelta(hours=1)
# The queue job waits this long after its last run, whatever the budget says: work Back
# Market refused before processing (a 429 on a batch) is queued again with its lines given
# back, and must not be re-sent in a loop.
QUEUE_PAUSE: Final = timedelta(minutes=5)


def drain_time(lines: int, per_hour: int, spent: Sequence[tuple[datetime, int]],
               now: datetime) -> timedelta | None:
    """How long until ``lines`` more SKU lines have gone at ``per_hour`` a sliding hour,
    with ``spent`` (when, lines; refunds negative) the budget's spending of the last hour.
    0 when they fit now; None when nothing is to go or the budget is unlimited (0)."""
    if lines <= 0:
        return None
    if per_hour <= 0:
        return timedelta(0)
    live = [(at, n) for at, n in spent if at > now - HOUR]
    used = sum(n for _, n in live)
    # The first hour: what is left now, then each spending as it frees. After it, the
    # lines sent in this hour free in turn: per_hour an hour.
    hours, rest = divmod(lines - 1, per_hour)
    rest += 1  # 1..per_hour lines to go within the last hour
    left = per_hour - used
    if rest <= left:
        return timedelta(hours=hours)
    for at, n in sorted(live):
        left += n
        if rest <= left:
            return timedelta(hours=hours) + max(timedelta(0), at + HOUR - now)
    return timedelta(hours=hours + 1)


def duration(delta: timedelta | None) -> str:
    """'now', '45 min', '9 h 36 min'."""
    if delta is None or delta <= timedelta(0):
        return "now"
    minutes = int(-(-delta.total_seconds() // 60))  # rounded up: never sooner than said
    hours, minutes = divmod(minutes, 60)
    if not hours:
        return f"{minutes} min"
    return f"{hours} h {minutes:02d} min" if minutes else f"{hours} h"


@dataclass(frozen=True)
class StoreQueue:
    """One store's queue: SKU lines waiting by priority, and when its account's budget will
    have sent them; product proposals waiting for review."""

    store: str
    waiting: dict[str, int]  # priority name -> lines, in sending order
    account_stores: tuple[str, ...]  # the stores sharing the budget, this one included
    account_waiting: int  # lines waiting in every store of the account
    lines_per_hour: int  # 0: unlimited
    used: int  # lines spent in the last hour on the account
    drain: timedelta | None  # until the account's waiting lines have gone (None: nothing)
    now: datetime
    oldest: datetime | None = None  # the oldest line an earlier run queued: its date
    sending: int | None = None  # plan: lines the plan would send; None for status
    proposals: int = 0  # product proposals waiting for review
    review_by: datetime | None = None  # the last one expected reviewed by then (estimate)
    notes: list[str] = field(default_factory=list)
    # plan: apply would stop before sending this store's changes (a safety or price stop)
    stopped: bool = False

    @property
    def total(self) -> int:
        return sum(self.waiting.values())

    @property
    def drained_at(self) -> datetime | None:
        return None if self.drain is None else self.now + self.drain

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "waiting": self.total,
            "by_priority": dict(self.waiting),
            "to_send": self.sending,
            "budget": {"lines_per_hour": self.lines_per_hour or None,
                       "used_last_hour": self.used,
                       "shared_with": [s for s in self.account_stores if s != self.store],
                       "account_waiting": self.account_waiting},
            "drain_seconds": None if self.drain is None else int(self.drain.total_seconds()),
            "drained_at": _iso(self.drained_at),
            "oldest_queued_at": _iso(self.oldest),
            "products_in_review": self.proposals,
            "review_expected_by": _iso(self.review_by),
            "stopped": self.stopped,
        }

    def line(self) -> str:
        """One line of text: 'queue: 18000 lines waiting (0 zero, ...); drained in 9 h'."""
        if self.sending is not None:
            head = f"{self.sending} SKU line{_s(self.sending)} to send"
            if self.total:
                head += f", {self.total} of them beyond this hour's budget"
        else:
            head = f"{self.total} SKU line{_s(self.total)} waiting"
        if self.total:
            head += " (" + ", ".join(f"{n} {name}" for name, n in self.waiting.items() if n) \
                + ")"
        if self.lines_per_hour:
            head += f"; budget {self.lines_per_hour}/h, {self.used} used in the last hour"
        else:
            head += "; no hourly budget configured"
        if self.stopped:
            head += "; nothing is sent while the STOP above holds (apply --force sends it)"
        elif self.drain is not None and (self.total or self.sending):
            shared = [s for s in self.account_stores if s != self.store]
            what = f" (the account's {self.account_waiting} lines, shared with " \
                f"{', '.join(shared)})" if shared else ""
            head += f"; drained {_when(self.drain, self.drained_at)}{what}"
        if self.proposals:
            head += (f"; {self.proposals} product proposal{_s(self.proposals)} in Back "
                     f"Market's review (typically within 12 h: by about "
                     f"{_iso(self.review_by)})")
        return head


def _when(drain: timedelta, at: datetime | None) -> str:
    if drain <= timedelta(0):
        return "in this run"
    return f"in about {duration(drain)} ({_iso(at)})"


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else \
        value.isoformat(timespec="minutes").replace("+00:00", "Z")


def by_priority(counts: Mapping[int | None, int]) -> dict[str, int]:
    return {name: counts.get(priority, 0) for priority, name in PRIORITIES
            if priority is not None or counts.get(None)}


def _accounts(settings: Settings, stores: Iterable[StoreSettings]
              ) -> dict[str, tuple[str, ...]]:
    """budget key -> every configured store spending from it."""
    keys = {s.budget_key for s in stores}
    return {key: tuple(s.name for s in settings.stores if s.budget_key == key) for key in keys}


def _review(state: StateStore, store: str) -> tuple[int, datetime | None]:
    waiting = [r for r in state.products.proposals(store).values() if r.get("status") == "proposed"]
    if not waiting:
        return 0, None
    latest = max(_aware(r["updated_at"]) for r in waiting)
    return len(waiting), latest + REVIEW_DELAY


def _aware(value: datetime) -> datetime:
    from datetime import UTC

    return value if value.tzinfo else value.replace(tzinfo=UTC)


def status_queues(settings: Settings, stores: Sequence[StoreSettings], state: StateStore,
                  now: datetime) -> list[StoreQueue]:
    """The queue each store's last runs left (what `syncer status` shows)."""
    per_hour = settings.limits.sku_lines_per_hour
    accounts = _accounts(settings, stores)
    counts = {s.name: state.queue.counts(s.name) for s in settings.stores
              if s.budget_key in accounts}
    queues = []
    for store in stores:
        mine = counts[store.name]
        sharing = accounts[store.budget_key]
        account_waiting = sum(n for name in sharing for n, _ in counts[name].values())
        spent = state.budget.spent(store.budget_key, now)
        proposals, review_by = _review(state, store.name)
        queues.append(StoreQueue(
            store.name, by_priority({p: n for p, (n, _) in mine.items()}), sharing,
            account_waiting, per_hour, sum(n for _, n in spent),
            drain_time(account_waiting, per_hour, spent, now), now,
            oldest=min((at for _, at in mine.values()), default=None),
            proposals=proposals, review_by=review_by))
    return queues


def plan_queues(settings: Settings, plan: Plan, state: StateStore,
                now: datetime) -> list[StoreQueue]:
    """What a plan's changes would leave waiting: each change is one SKU line; the lines
    the account's budget has left now go, in the order the plan sends them (store after
    store, each by priority), the rest waits."""
    per_hour = settings.limits.sku_lines_per_hour
    planned = {s.store: s for s in plan.stores}
    stores = [settings.store(name) for name in planned]
    accounts = _accounts(settings, stores)
    left: dict[str, int] = {}
    spent_of: dict[str, list[tuple[datetime, int]]] = {}
    for key in accounts:
        spent_of[key] = state.budget.spent(key, now)
        left[key] = max(0, per_hour - sum(n for _, n in spent_of[key])) if per_hour else -1
    account_lines = {key: sum(len(planned[n].changes) for n in names if n in planned)
                     for key, names in accounts.items()}
    queues = []
    for store in stores:
        store_plan = planned[store.name]
        key = store.budget_key
        waiting: dict[int | None, int] = {}
        for priority, count in enumerate(store_plan.changes.priorities):
            fits = count if left[key] < 0 else min(count, left[key])
            if left[key] >= 0:
                left[key] -= fits
            if count - fits:
                waiting[priority] = count - fits
        spent = spent_of[key]
        proposals, review_by = _review(state, store.name)
        # What earlier runs queued waits in the state, as for status: the plan sends it first.
        oldest = min((at for _, at in state.queue.counts(store.name).values()), default=None)
        queues.append(StoreQueue(
            store.name, by_priority(waiting), accounts[key], account_lines[key], per_hour,
            sum(n for _, n in spent), drain_time(account_lines[key], per_hour, spent, now),
            now, oldest=oldest, sending=len(store_plan.changes), proposals=proposals,
            review_by=review_by,
            stopped=bool(store_plan.safety_stop or store_plan.price_stop)))
    return queues


def render(queues: Sequence[StoreQueue], fmt: str) -> str:
    """The queue section of a report: text lines, or a Markdown table."""
    if not queues:
        return ""
    if fmt == "markdown":
        lines = ["", "### Queue (hourly budget)", "",
                 "| store | to send | waiting | " + " | ".join(n for _, n in PRIORITIES[:4])
                 + " | drained | in review |",
                 "| --- | ---: | ---: | " + "---: | " * 4 + "--- | ---: |"]
        for q in queues:
            drained = "stopped (see STOP)" if q.stopped else "—" if not (q.total or q.sending) \
                else "now" if not q.drain else f"{duration(q.drain)} ({_iso(q.drained_at)})"
            lines.append(f"| {q.store} | {'' if q.sending is None else q.sending} | "
                         f"{q.total} | " + " | ".join(str(q.waiting.get(n, 0))
                                                      for _, n in PRIORITIES[:4])
                         + f" | {drained} | {q.proposals} |")
        return "\n".join(lines) + "\n"
    return "".join(f"Queue {q.store}: {q.line()}\n" for q in queues)



# --- the queue job of `syncer run` -------------------------------------------------------------

def queue_due_at(state: StateStore, store: StoreSettings, lines_per_hour: int,
                 now: datetime) -> datetime | None:
    """When the store's queue can next go out: now when the account's budget has a line
    left, else when its oldest spending of the hour frees, and not within ``QUEUE_PAUSE``
    of the last queue run; None when nothing is queued."""
    if not any(n for n, _ in state.queue.counts(store.name).values()):
        return None
    wait = drain_time(1, lines_per_hour, state.budget.spent(store.budget_key, now), now)
    due = now + (wait or timedelta(0))
    last = state.runs.finished(store.name, ("queue",), limit=1)
    if last:
        due = max(due, _aware(last[0]["started_at"]) + QUEUE_PAUSE)
    return due


def queued_only(plan: StorePlan, state: StateStore | None = None) -> StorePlan:
    """The queue job's share of a plan: the changes an earlier run queued (with what the
    catalog says now), in sending order; new changes wait for the offer run's cadence.
    With ``state``, queued offers the plan no longer changes (the catalog went back to what
    is published, the row is rejected now...) leave the queue: nothing waits for them."""
    from syncer.planning.changes import StorePlan

    share = StorePlan(plan.store, plan.locale, plan.revision, unchanged=plan.unchanged,
                      rejected=plan.rejected, quarantined=plan.quarantined, live=plan.live,
                      notices=list(plan.notices))
    share.changes.extend(c for c in plan.changes if c.queued_since is not None)
    if state is not None:
        sent = {c.key for c in share.changes}
        queued = state.queue.queued(plan.store)
        state.queue.remove(plan.store, [sku for key, (sku, _, _) in queued.items()
                                        if key not in sent])
    return share
