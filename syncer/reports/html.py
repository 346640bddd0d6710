"""One self-contained HTML page per plan or run, for the people around a catalog.

A plan's page: the summary per store, every change with its old → new values, the rejected
catalog rows with the seller's column, the offers not sent and why, what waits behind the
hourly SKU budget with its estimated drain time, and three charts (changes by kind per store,
the budget queue draining hour by hour, price moves as a distribution). A run's page: the
run log's counts per store and job, the offers Back Market refused in that run, and what
waits in the queue.

Nothing is fetched: the style, the script (sort on a header click, filter with a text box)
and the SVG charts, drawn here, are all in the file. Every value from a catalog, a state or
Back Market is shown through ``visible`` (invisible characters as <U+XXXX>) and escaped; the
page's Content-Security-Policy runs its own script only (by hash), so a hostile catalog cell
that escaped the escaping would still not run.

Written as a stream of strings (``write_plan_html``): a plan of a million changes is never
one string in memory (the page is still as large as its tables).
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final, TextIO

from syncer.planning.queue import drain_time, duration
from syncer.reports.charts import (
    bar_chart,
    price_histogram,
    queue_chart,
)
from syncer.reports.page import escape, figure, foot, head, table

if TYPE_CHECKING:
    from syncer.config.settings import Settings
    from syncer.planning.changes import Change
    from syncer.planning.plan import Plan
    from syncer.state.store import StateStore

DEFAULT_LINES_PER_HOUR: Final = 2000  # limits.sku_lines_per_hour's default
KINDS: Final = ("create", "update", "zero", "retry")
RUN_KINDS: Final = ("created", "updated", "zeroed", "retried", "failed", "queued")
PRIORITIES: Final = ("zero", "stock", "other fields", "new offer")


# --- the budget and what waits behind it -----------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """A store's share of an hourly SKU budget: the account it is spent from (stores of one
    token share it), its lines an hour (0: unlimited), the lines spent in the last hour and
    when (``spent``: (when, lines), as the state's ledger has them; empty: all ``used``
    just now)."""

    account: str
    lines_per_hour: int = DEFAULT_LINES_PER_HOUR
    used: int = 0
    spent: tuple[tuple[datetime, int], ...] = ()

    def spending(self, now: datetime) -> list[tuple[datetime, int]]:
        return list(self.spent) if self.spent or not self.used else [(now, self.used)]


@dataclass
class Drain:
    """How a store's changes leave through the budget: ``waiting[h]`` lines still waiting
    after the send of hour ``h`` (h = 0: this run; the last is sent in the last hour)."""

    lines: int
    waiting: list[int] = field(default_factory=list)
    # Where each hour's sending starts in the store's sending order (for the "when" column).
    starts: list[int] = field(default_factory=list)

    @property
    def now(self) -> int:
        return self.lines - (self.waiting[0] if self.waiting else 0)

    @property
    def waits(self) -> int:
        return self.waiting[0] if self.waiting else 0

    def hour_of(self, position: int) -> int:
        """The hour (0: this run) in which the change at ``position`` is sent."""
        return max(0, bisect_right(self.starts, position) - 1)


def drain(stores: Sequence[tuple[str, int]], budgets: Mapping[str, Budget]) -> dict[str, Drain]:
    """Each store's lines through its account's budget, the stores of one account one after
    the other in the order given (as `apply` sends them), assuming a run as soon as the
    budget frees: this run gets what the last hour left, every later hour all of it."""
    result: dict[str, Drain] = {}
    accounts: dict[str, list[tuple[str, int]]] = {}
    for name, lines in stores:
        budget = budgets.get(name) or Budget(account=name)
        accounts.setdefault(budget.account, []).append((name, lines))
    for account_stores in accounts.values():
        first = budgets.get(account_stores[0][0]) or Budget(account=account_stores[0][0])
        per_hour = first.lines_per_hour
        free = max(0, per_hour - first.used)
        hour = 0
        for name, lines in account_stores:
            d = Drain(lines=lines)
            left = lines
            if per_hour <= 0:
                d.waiting, d.starts = [0], [0]
                result[name] = d
                continue
            # Hours before this store's turn: the account's earlier stores took them.
            d.waiting = [lines] * hour
            d.starts = [0] * hour
            while True:
                d.starts.append(lines - left)
                sent = min(left, free)
                left -= sent
                free -= sent
                d.waiting.append(left)
                if left == 0:
                    break
                hour += 1
                free = per_hour
            result[name] = d
    return result


def drained_in(stores: Sequence[tuple[str, int]], budgets: Mapping[str, Budget],
               now: datetime) -> dict[str, timedelta | None]:
    """Each store's drain estimate as `syncer plan` and `syncer status` give it
    (``syncer.planning.queue``, the sliding hour): the time until its account's lines have
    gone, the lines of every store of the account counted. None: nothing to send."""
    lines: Counter[str] = Counter()
    for name, count in stores:
        lines[(budgets.get(name) or Budget(account=name)).account] += count
    found: dict[str, timedelta | None] = {}
    for name, _ in stores:
        budget = budgets.get(name) or Budget(account=name)
        found[name] = drain_time(lines[budget.account], budget.lines_per_hour,
                                 budget.spending(now), now)
    return found


def budgets_for(settings: Settings, names: Iterable[str],
                state: StateStore | None, now: datetime | None = None) -> dict[str, Budget]:
    """The budget of each named store from the configuration (a store it does not know: the
    default budget of its own), with the lines the state says were spent in the last hour
    before ``now``, and when."""
    from syncer.errors import ConfigError

    per_hour = settings.limits.sku_lines_per_hour
    now = now or datetime.now(UTC)
    found: dict[str, Budget] = {}
    spent: dict[str, tuple[tuple[datetime, int], ...]] = {}
    for name in names:
        try:
            account = settings.store(name).budget_key
        except ConfigError:
            found[name] = Budget(account=f"store {name}")
            continue
        if account not in spent:
            spent[account] = tuple(state.budget.spent(account, now)) if state is not None \
                else ()
        found[name] = Budget(account=account, lines_per_hour=per_hour,
                             used=sum(n for _, n in spent[account]), spent=spent[account])
    return found


# --- a plan's page ------------------------------------------------------------------------------

def plan_html(plan: Plan, budgets: Mapping[str, Budget], now: datetime | None = None) -> str:
    return "".join(_plan_parts(plan, budgets, now or datetime.now(UTC)))


def write_plan_html(out: TextIO, plan: Plan, budgets: Mapping[str, Budget],
                    now: datetime | None = None) -> None:
    for part in _plan_parts(plan, budgets, now or datetime.now(UTC)):
        out.write(part)


def plan_report(settings: Settings | None, plan: Plan, out: TextIO) -> None:
    """Write the page of a plan, with the budget of the configuration and the state's
    spending (the default budget, nothing spent, without a configuration)."""
    names = [s.store for s in plan.stores]
    now = datetime.now(UTC)
    if settings is None:
        budgets = {n: Budget(account=f"store {n}") for n in names}
    else:
        from syncer.state.store import StateStore

        with StateStore.open_readonly(settings.state_database_url()) as state:
            budgets = budgets_for(settings, names, state, now)
    write_plan_html(out, plan, budgets, now)


def _drained_cell(store: str, drained: Mapping[str, timedelta | None],
                  budgets: Mapping[str, Budget]) -> tuple[str, int]:
    """'this run', or the estimate of plan and status: '1 h 20 min', and the stores of the
    plan that share the account (its estimate is theirs too)."""
    delta = drained[store]
    if delta is None or delta <= timedelta(0):
        return "this run", 0
    account = (budgets.get(store) or Budget(account=store)).account
    shared = [name for name in drained if name != store
              and (budgets.get(name) or Budget(account=name)).account == account]
    return (duration(delta) + (f" (shared with {', '.join(shared)})" if shared else ""),
            int(delta.total_seconds()))


def _plan_parts(plan: Plan, budgets: Mapping[str, Budget], now: datetime) -> Iterator[str]:
    sizes = [(s.store, len(s.changes)) for s in plan.stores]
    drains = drain(sizes, budgets)
    drained = drained_in(sizes, budgets, now)
    total = plan.summary()
    sending = sum(total[k] for k in KINDS)
    yield from head("Back Market publication plan")
    meta = [f"made {plan.created_at}"]
    if plan.catalog:
        meta.append(f"catalog {plan.catalog}")
    if plan.mapping:
        meta.append(f"mapping {plan.mapping}")
    yield f"<p class=meta>{escape(' · '.join(meta))}</p>\n"
    waiting = sum(d.waits for d in drains.values())
    longest = max((d for d in drained.values() if d is not None), default=None)
    rejected_rows = len({r.row for r in plan.rejections})
    yield (f"<p class=lead><b>{sending}</b> offers to send, <b>{total['unchanged']}</b> "
           f"unchanged, <b>{rejected_rows}</b> rejected catalog rows"
           + (f"; <b>{waiting}</b> wait behind the hourly budget, sent within about "
              f"<b>{duration(longest)}</b>" if waiting else "") + ".</p>\n")
    for store in plan.stores:
        if store.safety_stop:
            yield (f"<p class=stop><b>apply would stop</b> ({escape(store.store)}): "
                   f"{escape(store.safety_stop)}</p>\n")

    # Summary per store.
    yield "<h2>Summary per store</h2>\n"
    rows = []
    for store in plan.stores:
        s = store.summary()
        d = drains[store.store]
        budget = budgets.get(store.store) or Budget(account=store.store)
        rows.append([store.store, store.locale, *(s[k] for k in KINDS), s["unchanged"],
                     s["rejected"], store.live, d.now, d.waits,
                     _drained_cell(store.store, drained, budgets),
                     "unlimited" if budget.lines_per_hour <= 0 else
                     f"{budget.lines_per_hour}/h ({budget.used} used)"])
    yield from table("stores", ["store", "locale", "create", "update", "zero", "retry",
                                 "unchanged", "rejected", "live before", "sent now",
                                 "waiting", "drained in", "budget"], rows,
                      numeric={2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, filter_box=False)

    # Pictures.
    yield "<h2>Pictures</h2>\n<div class=charts>\n"
    yield figure("Changes by kind per store", bar_chart(
        [(s.store, [s.count(k) for k in KINDS]) for s in plan.stores], KINDS,
        "changes by kind per store"))
    yield figure("The budget queue draining", queue_chart(
        [(name, d.waiting) for name, d in drains.items()],
        "lines waiting after each hour's run"))
    moves, waiting_by_priority, queued_before = _scan(plan, drains)
    yield figure(f"Price moves ({len(moves)} prices changed)", price_histogram(moves))
    yield "</div>\n"

    # Every change.
    yield f"<h2>Changes ({sending})</h2>\n"
    yield from table("changes", ["store", "action", "SKU", "row", "old → new", "sent"],
                      _change_rows(plan, drains), numeric={3, 5}, raw={4})

    # What waits.
    yield "<h2>Queue: what waits behind the hourly budget</h2>\n"
    if waiting:
        queue_rows = []
        for store in plan.stores:
            d = drains[store.store]
            if not d.waits:
                continue
            by_priority = waiting_by_priority[store.store]
            queue_rows.append([store.store, d.waits, *(by_priority[p] for p in PRIORITIES),
                               queued_before[store.store],
                               _drained_cell(store.store, drained, budgets)])
        yield ("<p>Every SKU line sent takes one line of the hourly budget (stores of one "
               "token share it), free again an hour later. What does not fit this run is "
               "queued and goes first in the next one; the estimate, as `syncer plan` and "
               "`syncer status` give it, is when the account's lines have gone, assuming a "
               "run as soon as the budget frees.</p>\n")
        yield from table("queue", ["store", "waiting", *(f"waiting: {p}" for p in PRIORITIES),
                                    "queued by an earlier run", "drained in"], queue_rows,
                          numeric={1, 2, 3, 4, 5, 6, 7}, filter_box=False)
    else:
        yield "<p>Nothing waits: every change fits this run's budget.</p>\n"

    # Rejections and notices.
    count = len(plan.rejections)
    yield f"<h2>Rejected catalog rows ({count} problem{'' if count == 1 else 's'})</h2>\n"
    yield from table("rejections", ["row", "SKU", "store", "field", "seller's column",
                                     "value", "expected"],
                      ([r.row, r.sku or "", r.store or "all", r.field, r.column or "",
                        "" if r.value is None else r.value, r.expected]
                       for r in plan.rejections), numeric={0})
    notices = plan.notices
    yield f"<h2>Not sent ({len(notices)})</h2>\n"
    yield from table("notices", ["store", "kind", "SKU", "why"],
                      ([n.store, n.kind, n.sku, n.message] for n in notices))
    for note in plan.notes:
        yield f"<p class=note>{escape(note)}</p>\n"
    yield from foot()


def _scan(plan: Plan, drains: Mapping[str, Drain]
          ) -> tuple[list[Decimal], dict[str, Counter[str]], dict[str, int]]:
    """One read of the changes (a large plan's are on disk) for the charts and the queue:
    the price moves, what waits by priority and what an earlier run queued, per store."""
    moves: list[Decimal] = []
    waiting: dict[str, Counter[str]] = {}
    queued: dict[str, int] = {}
    for store in plan.stores:
        sent_now = drains[store.store].now
        by_priority = waiting[store.store] = Counter()
        queued[store.store] = 0
        for number, change in enumerate(store.changes):
            moves.extend(price_moves((change,)))
            if number >= sent_now:
                by_priority[PRIORITIES[change.priority]] += 1
            if change.queued_since:
                queued[store.store] += 1
    return moves, waiting, queued


def _change_rows(plan: Plan, drains: Mapping[str, Drain]) -> Iterator[list[Any]]:
    for store in plan.stores:
        d = drains[store.store]
        for position, change in enumerate(store.changes):
            hour = d.hour_of(position)
            cells = []
            if change.changes is None:  # a new offer: every field, on one line
                cells.append("<span class=f>new offer:</span> " + " · ".join(
                    f"<span class=f>{escape(name)}</span> <ins>{escape(str(new))}</ins>"
                    for name, _, new in change.field_changes if new is not None))
            for name, old, new in change.changes or ():
                shown = "none" if old is None else escape(str(old))
                old_text = f"<del>{shown}</del> → "
                cells.append(f"<span class=f>{escape(name)}</span> {old_text}"
                             f"<ins>{escape('none' if new is None else str(new))}</ins>")
            if change.previous_error:
                cells.append(f"<span class=err>last error: {escape(change.previous_error)}</span>")
            if change.queued_since:
                cells.append(f"<span class=q>queued since {escape(change.queued_since)}</span>")
            yield [store.store, change.action, change.sku, change.row or "",
                   "<br>".join(cells), ("now" if hour == 0 else f"+{hour} h", hour)]


def price_moves(changes: Iterable[Change]) -> list[Decimal]:
    """Each changed price's move in percent of the old price (Decimal: money stays exact)."""
    moves = []
    for change in changes:
        for name, old, new in change.field_changes:
            if name != "price" or old in (None, "") or new in (None, ""):
                continue
            try:
                before, after = Decimal(str(old)), Decimal(str(new))
            except InvalidOperation:
                continue
            if before > 0 and after.is_finite():
                moves.append((after - before) * 100 / before)
    return moves


# --- a run's page -------------------------------------------------------------------------------

@dataclass
class RunReport:
    """The last run as the state recorded it."""

    run_id: str
    runs: list[dict[str, Any]]  # run_log rows of that run, oldest first
    failures: list[dict[str, Any]]  # offers refused during it (as the snapshot has them)
    queues: dict[str, list[tuple[str, str, datetime]]]  # store -> (sku, reason, queued_at)
    budgets: dict[str, Budget]


def load_run(settings: Settings) -> RunReport:
    """The last run in the state: its run log rows, the offers refused since it started and
    the queue each of its stores has now."""
    from syncer.errors import StateError
    from syncer.state.store import StateStore

    with StateStore.open_readonly(settings.state_database_url()) as state:
        last = state.runs.latest(limit=1)
        if not last:
            raise StateError("the state has no run yet: nothing to report "
                             "(`syncer report --plan FILE` reports a saved plan)")
        run_id = last[0]["run_id"]
        runs = [r for r in state.runs.latest(limit=1000) if r["run_id"] == run_id]
        runs.reverse()
        stores = list(dict.fromkeys(r["store"] for r in runs))
        started = min(_aware(r["started_at"]) for r in runs)
        failures = [f for f in state.status.failures() if f["store"] in stores
                    and f["updated_at"] is not None and _aware(f["updated_at"]) >= started]
        queues = {s: sorted(state.queue.queued(s).values(), key=lambda q: q[2]) for s in stores}
        budgets = budgets_for(settings, stores, state, datetime.now(UTC))
    return RunReport(run_id, runs, failures, queues, budgets)


def write_run_html(out: TextIO, report: RunReport) -> None:
    for part in _run_parts(report):
        out.write(part)


def _run_parts(report: RunReport) -> Iterator[str]:
    drains = drain([(s, len(q)) for s, q in report.queues.items()], report.budgets)
    yield from head(f"syncer run {report.run_id}")
    first = min(_aware(r["started_at"]) for r in report.runs)
    ends = [_aware(r["finished_at"]) for r in report.runs if r["finished_at"] is not None]
    yield (f"<p class=meta>run {escape(report.run_id)} · started {escape(_iso(first))}"
           + (f" · finished {escape(_iso(max(ends)))}" if ends else " · still running") + "</p>\n")
    outcomes = Counter(r["outcome"] for r in report.runs)
    yield ("<p class=lead>" + ", ".join(f"<b>{n}</b> {escape(o)}" for o, n in outcomes.items())
           + f" job{'s' if len(report.runs) != 1 else ''}; <b>{len(report.failures)}</b> "
           f"offers refused by Back Market; <b>{sum(len(q) for q in report.queues.values())}"
           "</b> waiting in the queue.</p>\n")

    yield "<h2>Summary per store</h2>\n"
    yield from table("runs", ["store", "job", "outcome", *RUN_KINDS, "requests", "started",
                               "finished", "message"],
                      ([r["store"], r["kind"], r["outcome"],
                        *(r["counts"].get(k, 0) for k in RUN_KINDS),
                        r["counts"].get("requests", 0), _iso(_aware(r["started_at"])),
                        "" if r["finished_at"] is None else _iso(_aware(r["finished_at"])),
                        r["message"] or ""] for r in report.runs),
                      numeric={3, 4, 5, 6, 7, 8, 9}, filter_box=False)
    yield "<h2>Pictures</h2>\n<div class=charts>\n"
    per_store: dict[str, list[int]] = {}
    for r in report.runs:
        counts = per_store.setdefault(r["store"], [0] * len(RUN_KINDS))
        for i, k in enumerate(RUN_KINDS):
            counts[i] += int(r["counts"].get(k, 0))
    yield figure("Offers by outcome per store", bar_chart(list(per_store.items()), RUN_KINDS,
                                                           "offers by outcome per store"))
    yield figure("The budget queue draining", queue_chart(
        [(name, d.waiting) for name, d in drains.items()], "lines waiting after each hour"))
    yield "</div>\n<p class=note>A run keeps counts, not each offer's old and new values: " \
          "`syncer plan --format html` lists every change before it is sent.</p>\n"

    yield f"<h2>Refused by Back Market ({len(report.failures)})</h2>\n"
    yield from table("failures", ["store", "SKU", "error", "code", "request id",
                                   "failed runs in a row"],
                      ([f["store"], f["sku"], f["last_error"] or "", f["error_code"] or "",
                        f["request_id"] or "", f["attempts"]] for f in report.failures),
                      numeric={5})
    waiting = sum(len(q) for q in report.queues.values())
    yield f"<h2>Queue ({waiting} waiting)</h2>\n"
    rows = []
    for store, queue in report.queues.items():
        d = drains[store]
        for position, (sku, reason, at) in enumerate(queue):
            hour = d.hour_of(position)
            rows.append([store, sku, reason or "", _iso(at),
                         ("now" if hour == 0 else f"+{hour} h", hour)])
    yield from table("queue", ["store", "SKU", "why", "queued at", "sent"], rows,
                      numeric={4})
    yield from foot()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")
