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

import base64
import hashlib
import html
import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import TYPE_CHECKING, Any, Final, TextIO

from syncer.core.offers import visible

if TYPE_CHECKING:
    from syncer.config.settings import Settings
    from syncer.planning.diff import Change
    from syncer.planning.plan import Plan
    from syncer.state.store import StateStore

DEFAULT_LINES_PER_HOUR: Final = 2000  # limits.sku_lines_per_hour's default
KINDS: Final = ("create", "update", "zero", "retry")
RUN_KINDS: Final = ("created", "updated", "zeroed", "retried", "failed", "queued")
PRIORITIES: Final = ("zero", "stock", "other fields", "new offer")
# A kind of change or outcome keeps its colour in every chart.
KIND_COLOURS: Final = {"create": "#2b7bb9", "created": "#2b7bb9", "update": "#e3a21a",
                       "updated": "#e3a21a", "zero": "#555555", "zeroed": "#555555",
                       "retry": "#7d5ba6", "retried": "#7d5ba6", "failed": "#c0392b",
                       "queued": "#95a5a6"}
COLOURS: Final = ("#2b7bb9", "#e3a21a", "#c0392b", "#7d5ba6", "#3a9d5d", "#7f8c8d",
                  "#d35400", "#16a085")
# Price moves in percent: the lower edges of the histogram's bins (the last bin is open).
PRICE_BINS: Final = tuple(Decimal(x) for x in
                          ("-50", "-20", "-10", "-5", "-1", "0", "1", "5", "10", "20", "50"))
_HOURS_SHOWN: Final = 72  # the queue chart's longest x axis; a longer drain is summarised


# --- the budget and what waits behind it -----------------------------------------------------

@dataclass(frozen=True)
class Budget:
    """A store's share of an hourly SKU budget: the account it is spent from (stores of one
    token share it), its lines an hour (0: unlimited) and the lines spent in the last hour."""

    account: str
    lines_per_hour: int = DEFAULT_LINES_PER_HOUR
    used: int = 0


@dataclass
class Drain:
    """How a store's changes leave through the budget: ``waiting[h]`` lines still waiting
    after the send of hour ``h`` (h = 0: this run), ``hours`` until the last is sent."""

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

    @property
    def hours(self) -> int:
        return len(self.waiting) - 1 if self.waiting else 0

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


def budgets_for(settings: Settings, names: Iterable[str],
                state: StateStore | None) -> dict[str, Budget]:
    """The budget of each named store from the configuration (a store it does not know: the
    default budget of its own), with the lines the state says were spent in the last hour."""
    from syncer.errors import ConfigError

    per_hour = settings.limits.sku_lines_per_hour
    found: dict[str, Budget] = {}
    used: dict[str, int] = {}
    for name in names:
        try:
            account = settings.store(name).budget_key
        except ConfigError:
            found[name] = Budget(account=f"store {name}")
            continue
        if account not in used:
            used[account] = state.budget_used(account) if state is not None else 0
        found[name] = Budget(account=account, lines_per_hour=per_hour, used=used[account])
    return found


# --- a plan's page ------------------------------------------------------------------------------

def plan_html(plan: Plan, budgets: Mapping[str, Budget]) -> str:
    return "".join(_plan_parts(plan, budgets))


def write_plan_html(out: TextIO, plan: Plan, budgets: Mapping[str, Budget]) -> None:
    for part in _plan_parts(plan, budgets):
        out.write(part)


def plan_report(settings: Settings | None, plan: Plan, out: TextIO) -> None:
    """Write the page of a plan, with the budget of the configuration and the state's
    spending (the default budget, nothing spent, without a configuration)."""
    names = [s.store for s in plan.stores]
    if settings is None:
        budgets = {n: Budget(account=f"store {n}") for n in names}
    else:
        from syncer.state.store import StateStore

        with StateStore.open_readonly(settings.state_database_url()) as state:
            budgets = budgets_for(settings, names, state)
    write_plan_html(out, plan, budgets)


def _plan_parts(plan: Plan, budgets: Mapping[str, Budget]) -> Iterator[str]:
    drains = drain([(s.store, len(s.changes)) for s in plan.stores], budgets)
    total = plan.summary()
    sending = sum(total[k] for k in KINDS)
    yield from _head("Back Market publication plan")
    meta = [f"made {plan.created_at}"]
    if plan.catalog:
        meta.append(f"catalog {plan.catalog}")
    if plan.mapping:
        meta.append(f"mapping {plan.mapping}")
    yield f"<p class=meta>{_e(' · '.join(meta))}</p>\n"
    waiting = sum(d.waits for d in drains.values())
    longest = max((d.hours for d in drains.values()), default=0)
    rejected_rows = len({r.row for r in plan.rejections})
    yield (f"<p class=lead><b>{sending}</b> offers to send, <b>{total['unchanged']}</b> "
           f"unchanged, <b>{rejected_rows}</b> rejected catalog rows"
           + (f"; <b>{waiting}</b> wait behind the hourly budget, sent within about "
              f"<b>{_hours(longest)}</b>" if waiting else "") + ".</p>\n")
    for store in plan.stores:
        if store.safety_stop:
            yield (f"<p class=stop><b>apply would stop</b> ({_e(store.store)}): "
                   f"{_e(store.safety_stop)}</p>\n")

    # Summary per store.
    yield "<h2>Summary per store</h2>\n"
    rows = []
    for store in plan.stores:
        s = store.summary()
        d = drains[store.store]
        budget = budgets.get(store.store) or Budget(account=store.store)
        rows.append([store.store, store.locale, *(s[k] for k in KINDS), s["unchanged"],
                     s["rejected"], store.live, d.now, d.waits,
                     (_hours(d.hours), d.hours),
                     "unlimited" if budget.lines_per_hour <= 0 else
                     f"{budget.lines_per_hour}/h ({budget.used} used)"])
    yield from _table("stores", ["store", "locale", "create", "update", "zero", "retry",
                                 "unchanged", "rejected", "live before", "sent now",
                                 "waiting", "drained in", "budget"], rows,
                      numeric={2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, filter_box=False)

    # Pictures.
    yield "<h2>Pictures</h2>\n<div class=charts>\n"
    yield _figure("Changes by kind per store", bar_chart(
        [(s.store, [s.count(k) for k in KINDS]) for s in plan.stores], KINDS,
        "changes by kind per store"))
    yield _figure("The budget queue draining", queue_chart(
        [(name, d.waiting) for name, d in drains.items()],
        "lines waiting after each hour's run"))
    moves, waiting_by_priority, queued_before = _scan(plan, drains)
    yield _figure(f"Price moves ({len(moves)} prices changed)", price_histogram(moves))
    yield "</div>\n"

    # Every change.
    yield f"<h2>Changes ({sending})</h2>\n"
    yield from _table("changes", ["store", "action", "SKU", "row", "old → new", "sent"],
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
                               queued_before[store.store], (_hours(d.hours), d.hours)])
        yield ("<p>Every SKU line sent takes one line of the hourly budget (stores of one "
               "token share it). What does not fit this run is queued and goes first in the "
               "next one; the estimate assumes a run as soon as the budget frees.</p>\n")
        yield from _table("queue", ["store", "waiting", *(f"waiting: {p}" for p in PRIORITIES),
                                    "queued by an earlier run", "drained in"], queue_rows,
                          numeric={1, 2, 3, 4, 5, 6, 7}, filter_box=False)
    else:
        yield "<p>Nothing waits: every change fits this run's budget.</p>\n"

    # Rejections and notices.
    yield f"<h2>Rejected catalog rows ({len(plan.rejections)} problems)</h2>\n"
    yield from _table("rejections", ["row", "SKU", "store", "field", "seller's column",
                                     "value", "expected"],
                      ([r.row, r.sku or "", r.store or "all", r.field, r.column or "",
                        "" if r.value is None else r.value, r.expected]
                       for r in plan.rejections), numeric={0})
    notices = plan.notices
    yield f"<h2>Not sent ({len(notices)})</h2>\n"
    yield from _table("notices", ["store", "kind", "SKU", "why"],
                      ([n.store, n.kind, n.sku, n.message] for n in notices))
    for note in plan.notes:
        yield f"<p class=note>{_e(note)}</p>\n"
    yield from _foot()


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
                    f"<span class=f>{_e(name)}</span> <ins>{_e(str(new))}</ins>"
                    for name, _, new in change.field_changes if new is not None))
            for name, old, new in change.changes or ():
                old_text = "<del>none</del> → " if old is None else f"<del>{_e(str(old))}</del> → "
                cells.append(f"<span class=f>{_e(name)}</span> {old_text}"
                             f"<ins>{_e('none' if new is None else str(new))}</ins>")
            if change.previous_error:
                cells.append(f"<span class=err>last error: {_e(change.previous_error)}</span>")
            if change.queued_since:
                cells.append(f"<span class=q>queued since {_e(change.queued_since)}</span>")
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
        last = state.runs(limit=1)
        if not last:
            raise StateError("the state has no run yet: nothing to report "
                             "(`syncer report --plan FILE` reports a saved plan)")
        run_id = last[0]["run_id"]
        runs = [r for r in state.runs(limit=1000) if r["run_id"] == run_id]
        runs.reverse()
        stores = list(dict.fromkeys(r["store"] for r in runs))
        started = min(_aware(r["started_at"]) for r in runs)
        failures = [f for f in state.failures() if f["store"] in stores
                    and f["updated_at"] is not None and _aware(f["updated_at"]) >= started]
        queues = {s: sorted(state.queued(s).values(), key=lambda q: q[2]) for s in stores}
        budgets = budgets_for(settings, stores, state)
    return RunReport(run_id, runs, failures, queues, budgets)


def write_run_html(out: TextIO, report: RunReport) -> None:
    for part in _run_parts(report):
        out.write(part)


def _run_parts(report: RunReport) -> Iterator[str]:
    drains = drain([(s, len(q)) for s, q in report.queues.items()], report.budgets)
    yield from _head(f"syncer run {report.run_id}")
    first = min(_aware(r["started_at"]) for r in report.runs)
    ends = [_aware(r["finished_at"]) for r in report.runs if r["finished_at"] is not None]
    yield (f"<p class=meta>run {_e(report.run_id)} · started {_e(_iso(first))}"
           + (f" · finished {_e(_iso(max(ends)))}" if ends else " · still running") + "</p>\n")
    outcomes = Counter(r["outcome"] for r in report.runs)
    yield ("<p class=lead>" + ", ".join(f"<b>{n}</b> {_e(o)}" for o, n in outcomes.items())
           + f" job{'s' if len(report.runs) != 1 else ''}; <b>{len(report.failures)}</b> "
           f"offers refused by Back Market; <b>{sum(len(q) for q in report.queues.values())}"
           "</b> waiting in the queue.</p>\n")

    yield "<h2>Summary per store</h2>\n"
    yield from _table("runs", ["store", "job", "outcome", *RUN_KINDS, "requests", "started",
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
    yield _figure("Offers by outcome per store", bar_chart(list(per_store.items()), RUN_KINDS,
                                                           "offers by outcome per store"))
    yield _figure("The budget queue draining", queue_chart(
        [(name, d.waiting) for name, d in drains.items()], "lines waiting after each hour"))
    yield "</div>\n<p class=note>A run keeps counts, not each offer's old and new values: " \
          "`syncer plan --format html` lists every change before it is sent.</p>\n"

    yield f"<h2>Refused by Back Market ({len(report.failures)})</h2>\n"
    yield from _table("failures", ["store", "SKU", "error", "code", "request id",
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
    yield from _table("queue", ["store", "SKU", "why", "queued at", "sent"], rows,
                      numeric={4})
    yield from _foot()


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


# --- SVG charts, drawn here -----------------------------------------------------------------------

def bar_chart(groups: Sequence[tuple[str, Sequence[int]]], kinds: Sequence[str],
              label: str) -> str:
    """Grouped bars: one group per store, one bar per kind."""
    width, height, left, bottom, top = 520, 240, 44, 44, 14
    peak = max((v for _, values in groups for v in values), default=0)
    scale = _nice(peak)
    inner_w, inner_h = width - left - 10, height - bottom - top
    parts = [_svg_open(width, height, label), _axis_y(scale, left, top, inner_h, width)]
    slot = inner_w / max(1, len(groups))
    bar = max(2.0, min(28.0, (slot - 12) / max(1, len(kinds))))
    for g, (name, values) in enumerate(groups):
        x0 = left + g * slot + (slot - bar * len(kinds)) / 2
        for k, value in enumerate(values):
            h = inner_h * value / scale if scale else 0
            parts.append(
                f'<rect class="bar" x="{x0 + k * bar:.1f}" y="{top + inner_h - h:.1f}" '
                f'width="{bar - 1:.1f}" height="{h:.1f}" fill="{_colour(kinds, k)}">'
                f"<title>{_e(name)}: {value} {_e(kinds[k])}</title></rect>")
        parts.append(f'<text x="{left + g * slot + slot / 2:.1f}" y="{top + inner_h + 16}" '
                     f'text-anchor="middle">{_e(name)}</text>')
    parts.append(_legend(kinds, left, height - 12, [_colour(kinds, k) for k in range(len(kinds))]))
    parts.append("</svg>")
    return "".join(parts)


def _colour(kinds: Sequence[str], index: int) -> str:
    return KIND_COLOURS.get(kinds[index], COLOURS[index % len(COLOURS)])


def queue_chart(series: Sequence[tuple[str, Sequence[int]]], label: str) -> str:
    """Lines waiting after each hour's run, one step line per store, from now (hour 0)."""
    width, height, left, bottom, top = 520, 240, 52, 44, 14
    longest = max((len(v) for _, v in series), default=1)
    hours = min(max(longest, 2), _HOURS_SHOWN + 1)
    peak = max((v[0] if v else 0 for _, v in series), default=0)
    peak = max([peak] + [max(v, default=0) for _, v in series])
    inner_w, inner_h = width - left - 14, height - bottom - top
    parts = [_svg_open(width, height, label)]
    if peak == 0:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "nothing waits: everything fits this run's budget</text></svg>")
        return "".join(parts)
    scale = _nice(peak)
    parts.append(_axis_y(scale, left, top, inner_h, width))
    step = inner_w / (hours - 1)
    tick = max(1, math.ceil((hours - 1) / 8))
    for h in range(0, hours, tick):
        parts.append(f'<text x="{left + h * step:.1f}" y="{top + inner_h + 16}" '
                     f'text-anchor="middle">{"now" if h == 0 else f"+{h} h"}</text>')
    for s, (name, waiting) in enumerate(series):
        points: list[str] = []
        last_y = 0.0
        for h in range(hours):
            value = waiting[h] if h < len(waiting) else 0
            y = top + inner_h - inner_h * value / scale
            x = left + h * step
            if points:  # a step: the level holds until the next hour's run
                points.append(f"{x:.1f},{last_y:.1f}")
            points.append(f"{x:.1f},{y:.1f}")
            last_y = y
        colour = COLOURS[s % len(COLOURS)]
        parts.append(f'<polyline class="queue" fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{" ".join(points)}"><title>{_e(name)}: '
                     f"{waiting[0] if waiting else 0} waiting after this run, drained in "
                     f"{_hours(len(waiting) - 1)}</title></polyline>")
    if longest > hours:
        parts.append(f'<text x="{width - 14}" y="{top + 10}" text-anchor="end">'
                     f"drains in {_hours(longest - 1)} (first {_HOURS_SHOWN} h shown)</text>")
    parts.append(_legend([name for name, _ in series], left, height - 12))
    parts.append("</svg>")
    return "".join(parts)


def price_histogram(moves: Sequence[Decimal]) -> str:
    """How many prices moved by how much, in percent bins from ≤ -50 % to ≥ 50 %."""
    labels = ["< -50"] + [f"{a}…{b}" for a, b in pairwise(PRICE_BINS)] \
        + ["≥ 50"]
    counts = [0] * len(labels)
    for move in moves:
        index = sum(1 for edge in PRICE_BINS if move >= edge)
        counts[index] += 1
    width, height, left, bottom, top = 640, 240, 44, 44, 14
    inner_w, inner_h = width - left - 10, height - bottom - top
    parts = [_svg_open(width, height, "price moves in percent")]
    if not moves:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     "no price of a published offer changes</text></svg>")
        return "".join(parts)
    scale = _nice(max(counts))
    parts.append(_axis_y(scale, left, top, inner_h, width))
    slot = inner_w / len(labels)
    for i, count in enumerate(counts):
        h = inner_h * count / scale
        colour = COLOURS[2] if i < PRICE_BINS.index(Decimal(0)) + 1 else COLOURS[4]
        parts.append(f'<rect class="bin" x="{left + i * slot + 1:.1f}" '
                     f'y="{top + inner_h - h:.1f}" width="{slot - 2:.1f}" height="{h:.1f}" '
                     f'fill="{colour}"><title>{labels[i]} %: {count}</title></rect>')
        parts.append(f'<text x="{left + i * slot + slot / 2:.1f}" y="{top + inner_h + 14}" '
                     f'text-anchor="middle" class="small">{labels[i]}</text>')
    parts.append(f'<text x="{left + inner_w / 2:.1f}" y="{height - 8}" text-anchor="middle">'
                 "price move, % of the price published</text></svg>")
    return "".join(parts)


def _svg_open(width: int, height: int, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{_e(label)}">')


def _axis_y(scale: int, left: int, top: int, inner_h: int, width: int) -> str:
    parts = []
    for i in range(5):
        value = scale * i // 4
        y = top + inner_h - inner_h * i / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'class="grid"/><text x="{left - 6}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{value}</text>')
    return "".join(parts)


def _legend(names: Sequence[str], left: int, y: int,
            colours: Sequence[str] | None = None) -> str:
    parts, x = [], float(left)
    for i, name in enumerate(names):
        colour = colours[i] if colours else COLOURS[i % len(COLOURS)]
        parts.append(f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{x + 14:.1f}" y="{y}">'
                     f"{_e(name)}</text>")
        x += 24 + 7 * len(visible(name))
    return "".join(parts)


def _nice(peak: int) -> int:
    """The y axis's top: the peak rounded up to 1, 2 or 5 times a power of ten (4 ticks)."""
    if peak <= 4:
        return 4
    power = int(10 ** (len(str(peak)) - 1))
    for factor in (1, 2, 4, 5, 8, 10):
        if factor * power >= peak and (factor * power) % 4 == 0:
            return factor * power
    return 10 * power


def _hours(hours: int) -> str:
    if hours <= 0:
        return "this run"
    return f"{hours} h" if hours < 48 else f"{hours} h ({hours / 24:.1f} days)"


# --- the page around it ------------------------------------------------------------------------

STYLE: Final = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#1d2327}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
.meta{color:#666;margin:0}.lead{font-size:15px}.stop{background:#fdecea;padding:8px;
border-left:4px solid #c0392b}.note{color:#555;font-style:italic}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 7px;vertical-align:top;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f5f7;cursor:pointer;user-select:none;white-space:nowrap}
th[aria-sort=ascending]::after{content:" ▲"}th[aria-sort=descending]::after{content:" ▼"}
tr:nth-child(even) td{background:#fafbfc}
del{color:#c0392b}ins{color:#1e7e34;text-decoration:none}.f{color:#666}.err{color:#c0392b}
.q{color:#8a6d00}.charts{display:flex;flex-wrap:wrap;gap:16px}
figure{margin:0;border:1px solid #e3e3e3;padding:8px}figcaption{font-weight:600}
svg text{font-size:11px;fill:#333}svg text.small{font-size:9px}svg .grid{stroke:#eee}
.filter{margin:4px 0}.filter input{padding:3px 6px;width:260px}.count{color:#666;margin-left:8px}
"""

SCRIPT: Final = """
(function () {
  function key(cell, numeric) {
    var v = cell.getAttribute('data-sort');
    if (v === null) { v = cell.textContent; }
    if (numeric) { var f = parseFloat(v); return isNaN(f) ? -Infinity : f; }
    return v.toLowerCase();
  }
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'), function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, column) {
      th.addEventListener('click', function () {
        var numeric = th.getAttribute('data-type') === 'num';
        var dir = th.getAttribute('aria-sort') === 'ascending' ? -1 : 1;
        Array.prototype.forEach.call(heads, function (o) { o.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', dir === 1 ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[column], numeric), y = key(b.cells[column], numeric);
          return x < y ? -dir : (x > y ? dir : 0);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
  Array.prototype.forEach.call(document.querySelectorAll('input[data-filter]'), function (box) {
    var table = document.getElementById(box.getAttribute('data-filter'));
    var count = document.querySelector('[data-count="' + table.id + '"]');
    box.addEventListener('input', function () {
      var query = box.value.toLowerCase(), shown = 0, rows = table.tBodies[0].rows;
      Array.prototype.forEach.call(rows, function (row) {
        var keep = row.textContent.toLowerCase().indexOf(query) !== -1;
        row.hidden = !keep;
        if (keep) { shown += 1; }
      });
      count.textContent = shown + ' of ' + rows.length + ' rows';
    });
  });
})();
"""

_SCRIPT_HASH: Final = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
# Only this page's own script runs, and nothing is loaded from anywhere.
CSP: Final = (f"default-src 'none'; style-src 'unsafe-inline'; "
              f"script-src 'sha256-{_SCRIPT_HASH}'; img-src data:; base-uri 'none'; "
              "form-action 'none'")


def _head(title: str) -> Iterator[str]:
    yield ("<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n"
           f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
           '<meta name=viewport content="width=device-width, initial-scale=1">\n'
           f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
           f"<h1>{_e(title)}</h1>\n")


def _foot() -> Iterator[str]:
    yield f"<script>{SCRIPT}</script>\n</body>\n</html>\n"


def _figure(caption: str, svg: str) -> str:
    return f"<figure><figcaption>{_e(caption)}</figcaption>{svg}</figure>\n"


def _table(table_id: str, header: Sequence[str], rows: Iterable[Sequence[Any]], *,
           numeric: AbstractSet[int] = frozenset(), raw: AbstractSet[int] = frozenset(),
           filter_box: bool = True) -> Iterator[str]:
    """A sortable table. A cell is a value (escaped), or (shown, sort key); ``raw`` columns
    hold HTML built here from escaped parts."""
    rows = iter(rows)
    first = next(rows, None)
    if first is None:
        yield "<p>None.</p>\n"
        return
    if filter_box:
        yield (f'<div class=filter><input type=search data-filter="{table_id}" '
               f'placeholder="Filter these rows…" aria-label="filter {table_id}">'
               f'<span class=count data-count="{table_id}"></span></div>\n')
    heads = "".join(f'<th{" data-type=num" if i in numeric else ""}>{_e(h)}</th>'
                    for i, h in enumerate(header))
    yield f'<table id="{table_id}" class=sortable>\n<thead><tr>{heads}</tr></thead>\n<tbody>\n'
    count = 0
    for row in _chain(first, rows):
        cells = []
        for i, cell in enumerate(row):
            sort = None
            if isinstance(cell, tuple):
                cell, sort = cell
            shown = str(cell) if i in raw else _e("" if cell is None else str(cell))
            attrs = ' class=n' if i in numeric else ""
            if sort is not None:
                attrs += f' data-sort="{_e(str(sort))}"'
            cells.append(f"<td{attrs}>{shown}</td>")
        yield "<tr>" + "".join(cells) + "</tr>\n"
        count += 1
    yield f"</tbody>\n</table>\n<p class=count>{count} row{'s' if count != 1 else ''}</p>\n"


def _chain(first: Sequence[Any], rest: Iterator[Sequence[Any]]) -> Iterator[Sequence[Any]]:
    yield first
    yield from rest


def _e(text: str) -> str:
    """Any text for the page: invisible characters shown, then escaped (also in quotes)."""
    return html.escape(visible(text), quote=True)
