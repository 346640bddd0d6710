"""Alerts: the events that need a person, told once per problem through each channel.

When a store's work in `run`, `daemon` or `apply` is over (``JobContext.finished``), the
turn is looked at for these problems, each keyed by kind, store and subject:

- ``safety_stop``     the plan would zero too many live offers: nothing was sent;
- ``token_rejected``  Back Market answered 401; ``blocked``: its firewall answered 403;
- ``quarantined``     offers whose refusal in this turn brought their count of refusals in
                      a row to ``limits.quarantine_after`` (subject: the SKU; one message
                      per store and turn lists them all);
- ``failing_runs``    the last ``failing_runs`` runs of one job (subject: offers, stock,
                      reconcile, products) all failed, stopped or found Back Market down;
- ``onboarding_finished``  said once per store: the first offers (or stock-lane) run of the
                      store that ended with nothing queued for the hourly budget and nothing
                      in flight, at least one offer confirmed, and the queue empty after it
                      (offers Back Market refused do not hold it back: they have their
                      own messages).

A problem is said once per channel, again every ``remind_every_minutes`` while it lasts,
and once more ("resolved") when a later turn shows it gone. What a channel could not take
stays pending in the state (``alert_state``) and goes at the store's next turn; a channel
that fails never fails the run. Every text is scrubbed of known secrets.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import structlog

from syncer.alerts.notify import Alert, Channel, EmailSender, NotDelivered, WebhookSender
from syncer.config.alerts import AlertSettings, EmailChannel, WebhookChannel
from syncer.config.settings import Settings
from syncer.config.stores import StoreSettings
from syncer.core.secrets import scrub
from syncer.errors import Blocked, FatalApiError, SafetyStop, TokenRejected
from syncer.publish.outcomes import PublishResult
from syncer.state.runs import SUCCESSFUL_OUTCOMES
from syncer.state.schema import utcnow
from syncer.state.store import StateStore

if TYPE_CHECKING:
    from syncer.pipeline.jobs import JobContext

log = structlog.get_logger("syncer.alerts.events")

JOBS: Final = ("offers", "stock", "reconcile", "products")
FAILED_OUTCOMES: Final = ("failed", "stopped", "unreachable")  # not "interrupted": a person
ONE_SHOT: Final = frozenset({"onboarding_finished"})
DIGEST: Final = frozenset({"quarantined"})  # one message lists every subject
DIGEST_LINES: Final = 20
ONBOARDING_SCAN: Final = 1000  # runs looked at for an earlier complete publication
RESOLVED: Final = {
    "safety_stop": "store {store}: the plan passes the safety check again; offers are sent",
    "token_rejected": "store {store}: Back Market accepts the token again",
    "blocked": "store {store}: Back Market's firewall lets the requests through again",
    "quarantined": "{subject}: out of quarantine (confirmed, changed, or released with "
                   "`syncer retry`)",
    "failing_runs": "store {store}: {subject} runs do their work again",
}


@dataclass(frozen=True)
class StoreTurn:
    """What one store's work in one command came to."""

    store: StoreSettings
    error: BaseException | None = None  # what stopped the turn, raised
    publications: Sequence[PublishResult] = ()
    ran: Sequence[str] = ()  # the jobs that completed

    @property
    def api_fatal(self) -> FatalApiError | None:
        """The 401 or 403 (or other fatal answer) that stopped a job of this turn."""
        if isinstance(self.error, FatalApiError):
            return self.error
        return next((p.fatal for p in self.publications if p.fatal is not None), None)

    @property
    def reached(self) -> bool:
        """Back Market took this turn's requests: a job that needs it did its work."""
        if self.api_fatal is not None:
            return False
        return any(kind in ("reconcile", "products") for kind in self.ran) or any(
            p.outcome in SUCCESSFUL_OUTCOMES and p.counts.get("requests", 0) > 0
            for p in self.publications)


@dataclass(frozen=True)
class Problem:
    kind: str
    subject: str  # "" for the store itself
    message: str
    counts: dict[str, int] = field(default_factory=dict)
    # False: keeps an open problem open (and reminded) but does not open one: an offer
    # quarantined before this turn is not "newly" quarantined.
    opens: bool = True


@dataclass
class Findings:
    problems: list[Problem] = field(default_factory=list)
    known: set[str] = field(default_factory=set)  # kinds this turn tells the truth about


# --- what a turn shows --------------------------------------------------------------------

def detect(settings: Settings, state: StateStore, turn: StoreTurn, run_id: str,
           alerts: AlertSettings) -> Findings:
    found = Findings()
    _stops(turn, found)
    _quarantine(settings, state, turn, found)
    _failing_runs(state, turn.store.name, alerts.failing_runs, found)
    _onboarding(state, turn, run_id, found)
    wanted = set(alerts.events)
    found.problems = [p for p in found.problems if p.kind in wanted]
    found.known &= wanted
    return found


def _stops(turn: StoreTurn, found: Findings) -> None:
    store = turn.store
    if isinstance(turn.error, SafetyStop):
        found.problems.append(Problem("safety_stop", "", scrub(str(turn.error))))
    if isinstance(turn.error, SafetyStop) or turn.publications:
        found.known.add("safety_stop")  # a publication ran: the plan passed the check
    fatal = turn.api_fatal
    # What the stopped publication had done by then (none when reconciliation stopped).
    counts = next((dict(p.counts) for p in turn.publications if p.fatal is not None), {})
    if isinstance(fatal, TokenRejected):
        found.problems.append(Problem(
            "token_rejected", "", f"{fatal.message}. Nothing more is sent for store "
            f"{store.name} until the token in {store.token_env} is replaced.", counts))
        found.known |= {"token_rejected", "blocked"}  # a 401 came from behind the firewall
    elif isinstance(fatal, Blocked):
        found.problems.append(Problem("blocked", "", fatal.message, counts))
        found.known.add("blocked")
    if turn.reached:
        found.known |= {"token_rejected", "blocked"}


def _quarantine(settings: Settings, state: StateStore, turn: StoreTurn,
                found: Findings) -> None:
    """Quarantined as `syncer errors` says it (refused ``quarantine_after`` runs in a row);
    newly when this turn's refusal is the one that brought it there."""
    after = settings.limits.quarantine_after
    found.known.add("quarantined")
    if not after:
        return
    refused = {f.sku for p in turn.publications for f in p.failures if f.refused}
    for row in state.status.failures(turn.store.name):
        if row["attempts"] >= after:
            found.problems.append(Problem(
                "quarantined", row["sku"], f"{row['sku']}: {row['last_error'] or 'refused'}",
                {"attempts": row["attempts"]}, opens=row["sku"] in refused))


def _failing_runs(state: StateStore, store: str, streak: int, found: Findings) -> None:
    found.known.add("failing_runs")
    for kind in JOBS:
        runs = state.runs.finished(store, [kind], limit=streak)
        if not runs or runs[0]["outcome"] in SUCCESSFUL_OUTCOMES:
            continue  # no run, or the last one did its work: nothing (or resolved)
        failing = len(runs) == streak and all(r["outcome"] in FAILED_OUTCOMES for r in runs)
        last = scrub(runs[0]["message"] or runs[0]["outcome"])
        found.problems.append(Problem(
            "failing_runs", kind, f"store {store}: the last {streak} {kind} runs did not do "
            f"their work ({', '.join(r['outcome'] for r in runs)}); the last one: {last}",
            {"runs": len(runs)}, opens=failing))


def _onboarding(state: StateStore, turn: StoreTurn, run_id: str, found: Findings) -> None:
    store = turn.store.name
    if not any(_complete(p.outcome, p.counts) for p in turn.publications):
        return
    first = next((r for r in state.runs.finished(store, ["offers", "stock"],
                                                 limit=ONBOARDING_SCAN, oldest_first=True)
                  if _complete(r["outcome"], r["counts"])), None)
    if first is None or first["run_id"] != run_id:
        return  # an earlier run finished it: said then, or before alerts were set up
    if state.queue.queued(store) or state.batches.offers_in_flight(store):
        return
    counts = state.status.counts(store)
    confirmed = counts["live"] + counts["zeroed"]
    if not confirmed:
        return
    refused = counts["failed"]
    tail = (f"; {refused} offer{'s' if refused != 1 else ''} refused by Back Market "
            "(see `syncer errors`)") if refused else ""
    found.problems.append(Problem(
        "onboarding_finished", "", f"store {store}: onboarding finished: the first "
        f"publication is confirmed, {counts['live']} offers live, nothing left in the "
        f"queue{tail}", counts))


def _complete(outcome: str, counts: dict[str, Any]) -> bool:
    return outcome in SUCCESSFUL_OUTCOMES and not counts.get("queued") \
        and not counts.get("in_flight")


# --- what each channel is to be told --------------------------------------------------------

def update_rows(rows: list[dict[str, Any]], found: Findings, channels: Sequence[str],
                store: str, run_id: str, now: datetime, alerts: AlertSettings
                ) -> list[dict[str, Any]]:
    """The alert-state rows this turn changes (opened, reminded, resolved): the dedup."""
    remind = timedelta(minutes=alerts.remind_every_minutes)
    changed: list[dict[str, Any]] = []
    for channel in channels:
        existing = {(r["kind"], r["subject"]): r for r in rows if r["channel"] == channel}
        active = set()
        for problem in found.problems:
            key = (problem.kind, problem.subject)
            active.add(key)
            row = existing.get(key)
            news = {"message": problem.message, "counts": problem.counts, "run_id": run_id}
            if row is None or row["status"] == "resolved":
                if not problem.opens:
                    continue
                changed.append({
                    "store": store, "kind": problem.kind, "subject": problem.subject,
                    "channel": channel, "pending": "opened", "opened_at": now,
                    "status": "done" if problem.kind in ONE_SHOT else "open",
                    "sent_at": None, "failures": 0, "last_error": None, **news})
            elif row["status"] == "open":
                due = row["pending"] is None and remind and row["sent_at"] is not None \
                    and now - row["sent_at"] >= remind
                changed.append({**row, **news,
                                "pending": "reminder" if due else row["pending"]})
        for key, row in existing.items():
            if row["status"] != "open" or key in active or row["kind"] not in found.known:
                continue
            told = row["pending"] != "opened"  # a problem never told needs no "resolved"
            changed.append({
                **row, "status": "resolved", "run_id": run_id,
                "pending": "resolved" if told and alerts.send_resolved else None,
                "message": RESOLVED[row["kind"]].format(store=store, subject=row["subject"])})
    return changed


def messages(rows: Sequence[dict[str, Any]], store: str, now: datetime, after: int
             ) -> list[tuple[Alert, list[dict[str, Any]]]]:
    """The pending rows of one channel as messages, each with the rows it tells."""
    out: list[tuple[Alert, list[dict[str, Any]]]] = []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["kind"] in DIGEST:
            groups.setdefault((row["kind"], row["pending"]), []).append(row)
            continue
        subjects = (row["subject"],) if row["subject"] else ()
        out.append((Alert(row["kind"], row["pending"], store, row["message"], row["run_id"],
                          now, row["opened_at"], subjects, row["counts"]), [row]))
    for (kind, status), group in sorted(groups.items()):
        group.sort(key=lambda r: r["subject"])
        n = len(group)
        offers = f"{n} offer{'s' if n != 1 else ''}"
        head = {
            "opened": f"store {store}: {offers} newly quarantined (refused {after} runs in a "
                      "row with the same error): not sent again until their content changes "
                      "or `syncer retry SKU`",
            "reminder": f"store {store}: {offers} still quarantined",
            "resolved": f"store {store}: {offers} out of quarantine",
        }[status]
        lines = [f"- {r['message']}" for r in group[:DIGEST_LINES]]
        if n > DIGEST_LINES:
            lines.append(f"- ... and {n - DIGEST_LINES} more (see `syncer errors`)")
        out.append((Alert(kind, status, store, "\n".join([head + ":", *lines]),
                          group[-1]["run_id"], now, min(r["opened_at"] for r in group),
                          tuple(r["subject"] for r in group), {"offers": n}), group))
    return out


# --- channels -----------------------------------------------------------------------------

def build_channels(settings: Settings, alerts: AlertSettings,
                   transport: Any = None) -> list[tuple[str, Channel | str]]:
    """(name, channel) per enabled channel; a channel that cannot be built (its variable is
    not set) comes as (name, why), so that it is reported and its messages stay pending."""
    built: list[tuple[str, Channel | str]] = []
    for name, config in alerts.channels():
        if isinstance(config, WebhookChannel):
            url = (config.url.get_secret_value() if config.url is not None
                   else settings.env_value(config.url_env or ""))
            if url is None:
                built.append((name, f"{config.url_env} is not set (the {name} URL)"))
                continue
            try:
                built.append((name, WebhookSender(name, url, config.timeout_seconds,
                                                  transport)))
            except ValueError as exc:  # a URL from the environment is checked here
                built.append((name, f"{config.url_env}: {exc}"))
        elif isinstance(config, EmailChannel):
            password = settings.env_value(config.password_env) if config.password_env \
                else None
            if config.password_env and password is None:
                built.append((name, f"{config.password_env} is not set (the SMTP password)"))
                continue
            built.append((name, EmailSender(config, password)))
    return built


class Alerts:
    """The alerts of one command: ``store_finished`` is ``JobContext.finished``."""

    def __init__(self, settings: Settings, state: StateStore, run_id: str,
                 now: Callable[[], datetime] = utcnow, transport: Any = None) -> None:
        self.settings = settings
        self.state = state
        self.run_id = run_id
        self.now = now
        self.transport = transport  # tests: an httpx transport for the webhooks

    def store_finished(self, turn: StoreTurn) -> None:
        """Never raises: alerts must not fail the run they report on."""
        try:
            self._store_finished(turn)
        except Exception as exc:
            log.error("alerts failed", store=turn.store.name,
                      error=f"{type(exc).__name__}: {scrub(str(exc))}")

    def _store_finished(self, turn: StoreTurn) -> None:
        store = turn.store
        alerts = self.settings.alerts_for(store)
        channels = build_channels(self.settings, alerts, self.transport)
        if not channels:
            return
        now = self.now()
        found = detect(self.settings, self.state, turn, self.run_id, alerts)
        rows = self.state.alerts.rows(store.name)
        changed = update_rows(rows, found, [name for name, _ in channels], store.name,
                              self.run_id, now, alerts)
        self.state.alerts.save_rows(changed)
        if changed:
            rows = self.state.alerts.rows(store.name)
        self._deliver(store.name, rows, channels, now)

    def _deliver(self, store: str, rows: list[dict[str, Any]],
                 channels: list[tuple[str, Channel | str]], now: datetime) -> None:
        done: list[dict[str, Any]] = []
        for name, channel in channels:
            pending = [r for r in rows if r["channel"] == name and r["pending"]]
            for alert, told in messages(pending, store, now,
                                        self.settings.limits.quarantine_after):
                try:
                    if isinstance(channel, str):
                        raise NotDelivered(channel)
                    channel.send(alert)
                except NotDelivered as exc:
                    reason = scrub(str(exc))
                    left = len(pending)
                    log.warning("alert not delivered; kept for the next run", store=store,
                                channel=name, alert=alert.kind, status=alert.status,
                                reason=reason, pending=left)
                    done += [{**r, "failures": r["failures"] + 1, "last_error": reason}
                             for r in pending]
                    break  # the channel is down: the rest waits too, in order
                log.info("alert sent", store=store, channel=name, alert=alert.kind,
                         status=alert.status, subjects=len(alert.subjects))
                done += [{**r, "pending": None, "sent_at": now, "failures": 0,
                          "last_error": None} for r in told]
                told_keys = {id(r) for r in told}
                pending = [r for r in pending if id(r) not in told_keys]
        self.state.alerts.save_rows(done)


def notifier(ctx: JobContext, transport: Any = None) -> Callable[[StoreTurn], None]:
    """What a command's ``JobContext.finished`` is: the alerts of its run."""
    return Alerts(ctx.settings, ctx.state, ctx.run_id, ctx.now, transport).store_finished


# --- `syncer alerts test` -----------------------------------------------------------------

@dataclass
class TestOutcome:
    channel: str
    where: str
    stores: list[str]
    error: str | None = None


def send_test(settings: Settings, stores: Sequence[StoreSettings], run_id: str,
              now: Callable[[], datetime] = utcnow, transport: Any = None
              ) -> list[TestOutcome]:
    """One test message through every channel the stores have: a channel several stores
    share gets one message naming them all. Nothing is recorded."""
    targets: dict[tuple[str, str], tuple[Channel | str, list[str]]] = {}
    for store in stores:
        for name, channel in build_channels(settings, settings.alerts_for(store), transport):
            identity = (name, channel if isinstance(channel, str) else _identity(channel))
            targets.setdefault(identity, (channel, []))[1].append(store.name)
    outcomes = []
    for (name, _), (channel, names) in targets.items():
        if isinstance(channel, str):
            outcomes.append(TestOutcome(name, "?", names, channel))
            continue
        alert = Alert("test", "test", ", ".join(names),
                      f"Test message from backmarket-syncer: alerts of store"
                      f"{'s' if len(names) > 1 else ''} {', '.join(names)} reach this "
                      "channel.", run_id, now())
        outcome = TestOutcome(name, channel.where(), names)
        try:
            channel.send(alert)
        except NotDelivered as exc:
            outcome.error = scrub(str(exc))
        outcomes.append(outcome)
    return outcomes


def _identity(channel: Channel) -> str:
    if isinstance(channel, WebhookSender):
        return channel.url
    if isinstance(channel, EmailSender):
        s = channel.settings
        return f"{s.host}:{s.smtp_port}:{s.username}:{','.join(s.to)}"
    return channel.where()
