"""The batch lane: changes sent as batch CSVs (POST /ws/listings), each recorded as a
pending batch before it is posted, then settled from its task's per-line result: every
line confirmed, refused, or read back from the listings (see ``syncer.publish.readback``).
A batch an earlier run left in flight is settled before anything is sent again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from syncer.backmarket.taskresult import SentLine, TaskOutcome, TaskReport, task_outcomes
from syncer.core.crashpoints import crashpoint
from syncer.core.offers import FIELD_INDEX as F
from syncer.core.offers import parse_shipping, sku_key
from syncer.core.snapshot import Ack, Failure
from syncer.errors import OfferError, OutcomeUnknown, RetriableError
from syncer.planning.changes import Change
from syncer.publish.outcomes import Interrupted, Ledger, PublishResult
from syncer.publish.price_moves import record_confirmed
from syncer.publish.readback import ReadBack


class BatchLane:
    """Sends and settles the batches of one store through the ``ledger``."""

    def __init__(self, ledger: Ledger, *, siblings: Sequence[str], batch_rows: int,
                 poll_seconds: float, task_timeout: float,
                 clock: Callable[[], float] = time.monotonic,
                 extra_columns: Mapping[str, Mapping[str, str]] | None = None,
                 on_task: Callable[[dict[str, Any], TaskReport], None] =
                 lambda _task, _report: None) -> None:
        self.ledger = ledger
        self.store, self.client, self.state, self.log = (ledger.store, ledger.client,
                                                         ledger.state, ledger.log)
        self.batch_rows = batch_rows
        self.poll_seconds = poll_seconds
        self.task_timeout = task_timeout
        self.clock = clock
        # Columns added to the batch rows of some SKUs (key -> column -> value): the product
        # content of a proposal. ``on_task`` sees every finished task (its per-row results).
        self.extra_columns = extra_columns or {}
        self.on_task = on_task
        self.check = ReadBack(ledger, siblings)

    def send(self, batch: Sequence[Change], result: PublishResult) -> None:
        granted = self.ledger.take(len(batch))
        send, deferred = batch[:granted], list(batch[granted:])
        sent = 0
        for file in batch_files(send, send_deee=self.store.send_deee, extra=self.extra_columns):
            for start in range(0, len(file.changes), self.batch_rows):
                if self.ledger.stop():
                    self.ledger.refund(len(send) - sent)  # taken for batches not sent
                    self.ledger.defer(deferred, result)
                    raise Interrupted
                end = start + self.batch_rows
                self._send_one(BatchFile(file.columns, file.changes[start:end],
                                           file.rows[start:end]), result)
                sent += len(file.changes[start:end])
        self.ledger.defer(deferred, result)

    def _send_one(self, file: BatchFile, result: PublishResult) -> None:
        self.ledger.keep_lease()
        columns, changes, rows = file
        offers = {c.key: [c.sku, c.source_hash, *c.target] for c in changes}
        batch_id = self.state.batches.add(self.store.name, offers)
        crashpoint("batch:before-post")
        self.ledger.sent_at, self.ledger.post_request_id = time.time(), None
        try:
            task_id = self.client.create_batch(columns, rows)
            self.ledger.post_request_id = self.client.last_request_id
            crashpoint("batch:after-post")
        except OutcomeUnknown as exc:
            # It may have landed: keep it pending; the next run checks the listings first.
            self.log.warning("batch outcome unknown, will be checked before any resend",
                             offers=len(changes), error=exc.message)
            result.counts["in_flight"] += len(changes)
            result.counts["unknown"] += len(changes)
            for change in changes:
                self.ledger.tell(change.sku, change.action, "in_flight", message=exc.message)
            return
        except OfferError as exc:
            self.state.batches.remove(batch_id)
            self.ledger.refund(len(changes))  # the whole batch was refused
            for change in changes:
                self.ledger.fail(change, exc, result)
            return
        except RetriableError as exc:
            self.state.batches.remove(batch_id)  # refused before processing: nothing landed
            self.ledger.refund(len(changes))
            self.ledger.defer(list(changes), result,
                              f"Back Market refused the batch ({exc.message})")
            self.ledger.unavailable_once(None, exc, result)
            return
        self.state.batches.set_task(batch_id, task_id)
        crashpoint("batch:after-task-id")
        self.log.info("batch sent", task_id=task_id, offers=len(changes))
        self._settle(batch_id, task_id, offers, result, changes)

    def settle_batches(self, result: PublishResult) -> set[str]:
        """Resolve batches an earlier run left in flight. Returns SKU keys still in flight."""
        in_flight: set[str] = set()
        unknown: list[tuple[int, dict[str, list[Any]]]] = []
        for batch_id, task_id, offers in self.state.batches.pending(self.store.name):
            if task_id is None:
                unknown.append((batch_id, offers))
            elif not self._settle(batch_id, task_id, offers, result, None, wait=0.0):
                in_flight.update(offers)
        if unknown:
            self.check.settle_unknown(unknown, result)
        return in_flight

    def _settle(self, batch_id: int, task_id: int, offers: dict[str, list[Any]],
                result: PublishResult, changes: Sequence[Change] | None,
                wait: float | None = None) -> bool:
        """Record what a batch task says. An earlier run's task is looked at once
        (``wait=0``): if still running, its offers stay in flight for the next run."""
        try:
            task = self.client.wait_task(
                task_id, poll_seconds=self.poll_seconds,
                timeout_seconds=self.task_timeout if wait is None else wait, clock=self.clock,
                on_poll=self.ledger.keep_lease)
        except TimeoutError:
            self.log.warning("task still running; it will be checked next run",
                             task_id=task_id, offers=len(offers))
            result.counts["in_flight"] += len(offers)
            for sku, *_ in offers.values():
                self.ledger.tell(sku, None, "in_flight", task_id=task_id)
            return False
        except OfferError as exc:
            # The task is unknown to Back Market: nothing can be learnt from it.
            self.log.warning("task not found; its offers will be checked on the listings",
                             task_id=task_id, error=exc.message)
            self.check.settle_unknown([(batch_id, offers)], result)
            return True
        by_key = {c.key: c for c in changes} if changes else {}
        if task.get("action_status") != 9:
            reason = task.get("last_action_error") or f"task {task_id} failed"
            # The task as a whole failed: no offer was refused, none counts to quarantine.
            failures = [Failure(v[0], f"batch task {task_id} failed: {reason}",
                                attempted=tuple(v[2:]), refused=False) for v in offers.values()]
            self.state.offers.record_failures(self.store.name, failures)
            result.counts["failed"] += len(failures)
            result.failures.extend(failures)
            self.state.batches.remove(batch_id)
            self.ledger.tell_batch(task_id, by_key, [], failures)
            return True
        lines = self._sent_lines(offers)
        self.check.reused = []
        report = task_outcomes(task, lines)
        self.on_task(task, report)
        crashpoint("batch:before-acks")
        acks: list[Ack] = []
        failures = []
        # What the result leaves open: a line it does not report, a success to check on the
        # listing it names (tied by its row alone, or showing another listing's SKU), a
        # success without its listing id.
        absent: list[str] = []
        check: dict[str, TaskOutcome] = {}
        for key, (sku, source_hash, *target) in offers.items():
            outcome = report.outcomes.get(key)
            published = tuple(target)
            if outcome is None:
                absent.append(key)
            elif not outcome.ok:
                failures.append(Failure(sku, outcome.message or "rejected",
                                        code=outcome.code or "task-error", attempted=published))
            elif outcome.weak or not outcome.listing_id:
                check[key] = outcome
            else:
                acks.append(Ack(sku, published, outcome.listing_id, source_hash))
                self.check.note_product(result, sku, published, outcome.product_id)
        acks += self.check.check_reported(offers, check, absent, result)
        found, missing = self.check.find_open(offers, absent, report, result)
        acks += found
        untied = report.untied_errors()
        for key in missing:
            sku, _, *target = offers[key]
            message = f"not reported by batch task {task_id} and not found as sent"
            if untied:  # Back Market's own words, though it did not say for which line
                message += "; the task reported errors for lines it did not name: " + \
                    "; ".join(untied)
            failures.append(Failure(sku, message, attempted=tuple(target), refused=False))
        stale = self.state.offers.record_acks(self.store.name, acks,
                                              sent_at=self.state.batches.sent_at(batch_id))
        if stale:
            late = {sku_key(ack.sku) for ack in stale}
            acks = [ack for ack in acks if sku_key(ack.sku) not in late]
            missing_late = self.check.read_back(stale, task_id)
            self.ledger.progress(len(stale) - len(missing_late))
            failures += missing_late
        if failures:
            self.state.offers.record_failures(self.store.name, failures)
        self.check.retire(self.check.reused, offers, {sku_key(ack.sku) for ack in acks})
        self.state.batches.remove(batch_id)
        record_confirmed(self.state, self.store.name,
                         [by_key[k] for k in (sku_key(a.sku) for a in acks) if k in by_key])
        for ack in acks:
            change = by_key.get(sku_key(ack.sku))
            if change is not None:
                result.count_ack(change)
            else:
                result.counts["created"] += 1
            self.ledger.progress(1)
        result.counts["failed"] += len(failures)
        result.failures.extend(failures)
        self.ledger.progress(len(failures))
        self.ledger.tell_batch(task_id, by_key, acks, failures, stale)
        self.log.info("batch settled", task_id=task_id, confirmed=len(acks),
                      failed=len(failures), read_back=len(check) + len(absent))
        return True

    def _sent_lines(self, offers: Mapping[str, list[Any]]) -> list[SentLine]:
        """The batch's lines in the order they were sent, with the listing each one
        updates when the snapshot knows it: what ties the task's entries to them."""
        known = self.state.offers.snapshot_entries(self.store.name, list(offers))
        return [SentLine(sku, row, target[F["ean"]],
                         entry.listing_id if (entry := known.get(key)) else None)
                for row, (key, (sku, _, *target)) in enumerate(offers.items(), start=1)]


BATCH_COLUMNS: Final = (
    "sku", "product_id", "ean", "grade", "quantity", "price", "currency", "warranty_delay",
    "comment", "min_price", "max_price",
)


class BatchFile(NamedTuple):
    """One batch CSV: its columns, the changes it carries and their rows, in that order."""

    columns: list[str]
    changes: list[Change]
    rows: list[dict[str, str]]


def batch_row(change: Change, *, send_deee: bool,
              extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The batch row of a change: every field of the target that has a value (values are
    absolute), plus ``extra`` columns (a product proposal's content). A field without a
    value has no cell at all: what Back Market does with an empty cell is unknown (clear
    the field, keep it, refuse the row), so a row never carries one."""
    target = change.target
    row = {"sku": change.sku}
    for name in BATCH_COLUMNS[1:] + (("deee",) if send_deee else ()):
        value = target[F[name]]
        if value is not None and str(value) != "":
            row[name] = str(value)
    for number, option in enumerate(parse_shipping(_text(target[F["shipping"]])), start=1):
        row[f"shipper_{number}"] = option.shipper
        row[f"shipping_price_{number}"] = f"{option.price:.2f}"
        row[f"shipping_delay_{number}"] = str(option.delay_hours)
    for name, value in (extra or {}).items():
        if value != "":
            row[name] = value
    return row


def batch_files(changes: Sequence[Change], *, send_deee: bool,
                extra: Mapping[str, Mapping[str, str]] | None = None) -> list[BatchFile]:
    """The batch CSVs that carry these changes: rows grouped by the columns they fill, each
    group its own CSV, so that no cell is left empty (see ``batch_row``). Groups come in the
    order of their first change, rows in the order of the changes."""
    extra = extra or {}
    groups: dict[frozenset[str], BatchFile] = {}
    for change in changes:
        row = batch_row(change, send_deee=send_deee, extra=extra.get(change.key))
        file = groups.get(key := frozenset(row))
        if file is None:
            file = groups[key] = BatchFile(list(row), [], [])
        file.changes.append(change)
        file.rows.append(row)
    return list(groups.values())


def _text(value: str | int | None) -> str | None:
    return None if value is None else str(value)
