"""What a finished batch task says about each line of the catalog it was sent.

Back Market answers ``result.product_success`` and ``result.product_errors``, both objects
(``reference/BACKMARKET.md``, "Observed in production integrations"); success entries hold at
least ``listing_id``, ``backmarket_id`` and ``publication_state``. What the keys are (SKU,
row, EAN) is not known, so an entry is tied to the line it answers by what it carries:

- strong ties: its ``sku``, a listing id the line is already known by, an EAN only that line
  has, its key read as one of those. An entry whose strong ties name two lines ties none.
- weak tie, only without a strong one: a row number (a ``row`` field or a numeric key), read
  as the line's number among the data rows, 1 first, unless entries tied both ways show
  another count (a header counted, or from 0).

A success tied weakly, or reporting a SKU other than the line's (Back Market reused a listing),
is marked ``weak``: the caller checks it on the listing before it confirms anything. An error
tied to a line is a refusal of that line, even if a success names it too. Entries tied to no
line are returned apart (``untied``): what the result leaves open is read from the listings.

The shape this project first guessed, ``{"listings": [{sku, status, id, errors}]}``, is still
read. Pure: no I/O; the client validates the answer's shape before (``syncer.backmarket.answers``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from syncer.core.offers import sku_key

OK_STATUSES: Final = ("created", "updated", "success", "ok", "done")
ROW_FIELDS: Final = ("row", "line", "row_number", "line_number")
MESSAGE_FIELDS: Final = ("errors", "error", "message", "error_message", "messages", "detail",
                         "reason")
CODE_FIELDS: Final = ("code", "error_code")


@dataclass(frozen=True, slots=True)
class SentLine:
    """One data row of a batch catalog, as the caller knows it."""

    sku: str
    row: int  # 1: the first data row
    ean: str | None = None
    listing_id: str | None = None  # the listing it updates, when known before sending


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """What a batch task says about one line (``sku`` is the line's; an untied entry's is
    the SKU it shows, or "")."""

    sku: str
    ok: bool
    listing_id: str | None = None
    message: str | None = None
    code: str | None = None
    shown_sku: str | None = None  # the SKU Back Market reports for the listing
    product_id: str | None = None  # the product the listing is for, as reported
    weak: bool = False  # to be checked on the listing before it confirms anything
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False)  # as answered


@dataclass
class TaskReport:
    outcomes: dict[str, TaskOutcome] = field(default_factory=dict)  # by the line's SKU key
    untied: list[TaskOutcome] = field(default_factory=list)

    def untied_errors(self) -> list[str]:
        return [o.message or "rejected" for o in self.untied if not o.ok]


@dataclass(frozen=True, slots=True)
class _Entry:
    key: str | None
    fields: Mapping[str, Any]
    ok: bool


def task_outcomes(task: Mapping[str, Any], lines: Sequence[SentLine]) -> TaskReport:
    """Each line's outcome in a finished task, and the entries tied to no line."""
    entries = list(_entries(task.get("result")))
    by_sku = {sku_key(line.sku): line for line in lines}
    by_listing = {line.listing_id: line for line in lines if line.listing_id}
    eans = Counter(line.ean for line in lines if line.ean)
    by_ean = {line.ean: line for line in lines if line.ean and eans[line.ean] == 1}
    by_row = {line.row: line for line in lines}

    def strong(entry: _Entry) -> set[str]:
        found: set[str] = set()
        values = [entry.fields.get("sku"), entry.key]
        for value in values:
            if value is not None and (line := by_sku.get(sku_key(str(value)))) is not None:
                found.add(sku_key(line.sku))
        for value in (entry.fields.get("id"), entry.fields.get("listing_id")):
            if value is not None and (line := by_listing.get(str(value))) is not None:
                found.add(sku_key(line.sku))
        for value in (entry.fields.get("ean"), entry.key):
            if value is not None and (line := by_ean.get(str(value).strip())) is not None:
                found.add(sku_key(line.sku))
        return found

    report = TaskReport()
    ties: list[tuple[_Entry, str | None, bool]] = []  # entry, line key, weak
    offsets: set[int] = set()
    for entry in entries:
        found = strong(entry)
        if len(found) == 1:
            tied = found.pop()
            ties.append((entry, tied, False))
            # A numeric key that is the line's SKU says nothing of how rows are counted.
            row = _row(entry, use_key=entry.key is None or sku_key(entry.key) != tied)
            if row is not None:
                offsets.add(row - by_sku[tied].row)
        elif found:
            ties.append((entry, None, False))  # names two lines: ties neither
        else:
            ties.append((entry, None, True))
    offset = offsets.pop() if len(offsets) == 1 else 0
    conflicts: set[str] = set()
    for entry, tie, weak in ties:
        key = tie
        if key is None and weak:
            row = _row(entry)
            line = None if row is None else by_row.get(row - offset)
            key = None if line is None else sku_key(line.sku)
        outcome = _outcome(entry, by_sku[key].sku if key else None, weak)
        if key is None:
            report.untied.append(outcome)
            continue
        if outcome.ok and outcome.shown_sku is not None and sku_key(outcome.shown_sku) != key:
            outcome = replace(outcome, weak=True)  # another listing's SKU: checked first
        known = report.outcomes.get(key)
        if known is None:
            report.outcomes[key] = outcome
        elif not outcome.ok and known.ok:
            report.outcomes[key] = outcome  # an error is a refusal, whatever else says
        elif not outcome.ok:
            report.outcomes[key] = replace(known, message="; ".join(
                m for m in (known.message, outcome.message) if m))
        elif known.ok and known.listing_id != outcome.listing_id:
            conflicts.add(key)  # two listings for one line: the listings decide
        elif known.ok:
            # A second success for one line answers another line too (a reused listing
            # shows its old SKU): left to the lines the result leaves open.
            report.untied.append(outcome)
    for key in conflicts:
        if report.outcomes[key].ok:
            report.untied.append(report.outcomes.pop(key))
    return report


def _entries(result: Any) -> Iterable[_Entry]:
    if isinstance(result, list):
        yield from _legacy(result)
        return
    if not isinstance(result, dict):
        return
    if isinstance(result.get("listings"), list):
        yield from _legacy(result["listings"])
    for name, ok in (("product_success", True), ("product_errors", False)):
        for key, value in _items(result.get(name)):
            yield _Entry(key, _as_fields(value), ok)


def _legacy(entries: Sequence[Any]) -> Iterable[_Entry]:
    for entry in entries:
        if isinstance(entry, dict):
            status = str(entry.get("status", "")).lower()
            errors = entry.get("errors") or entry.get("error")
            yield _Entry(None, entry, status in OK_STATUSES and not errors)


def _items(value: Any) -> Iterable[tuple[str | None, Any]]:
    if isinstance(value, dict):
        yield from ((str(key), item) for key, item in value.items())
    elif isinstance(value, list):
        yield from ((None, item) for item in value)


def _as_fields(value: Any) -> Mapping[str, Any]:
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"errors": value}
    return {"message": value}


def _row(entry: _Entry, *, use_key: bool = True) -> int | None:
    for name in ROW_FIELDS:
        value = entry.fields.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
    if use_key and entry.key is not None and entry.key.strip().isdigit():
        return int(entry.key)
    return None


def _outcome(entry: _Entry, line_sku: str | None, weak: bool) -> TaskOutcome:
    fields = entry.fields
    listing_id = fields.get("id") if fields.get("id") is not None else fields.get("listing_id")
    shown = fields.get("sku")
    product = fields.get("product_id")
    message = None
    code = next((str(fields[name]) for name in CODE_FIELDS if fields.get(name)), None)
    if not entry.ok:
        message = _message(fields) or (
            f"rejected by Back Market ({fields.get('status') or code or 'no reason given'})")
    return TaskOutcome(
        line_sku if line_sku is not None else ("" if shown is None else str(shown)),
        entry.ok, None if listing_id is None else str(listing_id), message, code,
        None if shown is None else str(shown), None if product is None else str(product),
        weak and entry.ok, fields)


def _message(fields: Mapping[str, Any]) -> str:
    return "; ".join(text for name in MESSAGE_FIELDS
                     if (text := _join(fields.get(name))))


def _join(errors: Any) -> str:
    if errors is None or errors == "" or errors == []:
        return ""
    if isinstance(errors, str):
        return errors
    if isinstance(errors, dict):
        name = errors.get("field")
        text = next((str(errors[k]) for k in ("message", "error", "detail", "reason")
                     if errors.get(k)), None)
        if text is None:
            return "; ".join(f"{k}: {v}" for k, v in errors.items())
        return f"{name}: {text}" if name else text
    if isinstance(errors, list):
        return "; ".join(text for error in errors if (text := _join(error)))
    return str(errors)
