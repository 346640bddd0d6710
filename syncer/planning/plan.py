"""The plan as a value: what would be sent to Back Market, per store, and why.

Pure: renders as text (terminal), Markdown (CI job summary, pull-request comment) and JSON
(machines), and round-trips through JSON so a plan can be saved and applied later. Text and
Markdown list at most ``detail_limit`` lines per section; JSON always lists everything, and
is written as a stream (``write``): a million changes never sit in memory as one string.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import chain
from typing import Any, Final, TextIO

from syncer.core.offers import FIELDS, Rejection, visible
from syncer.planning.changes import Change, Notice, StorePlan
from syncer.planning.queue import StoreQueue
from syncer.planning.queue import render as render_queue

PLAN_FORMAT: Final = 1
COUNT_KEYS: Final = ("create", "update", "zero", "retry", "unchanged", "rejected",
                     "quarantined")


@dataclass
class Plan:
    stores: list[StorePlan]
    rejections: list[Rejection] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    catalog: str = ""
    mapping: str = ""
    created_at: str = field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    # What the budget would leave waiting, per store (set by `syncer plan`, not saved).
    queue: list[StoreQueue] = field(default_factory=list)

    @property
    def changes(self) -> Iterator[Change]:
        """Every store's changes, store after store, each in sending order."""
        return chain.from_iterable(store.changes for store in self.stores)

    def change_count(self) -> int:
        return sum(len(store.changes) for store in self.stores)

    @property
    def notices(self) -> list[Notice]:
        return [n for store in self.stores for n in store.notices]

    def summary(self) -> dict[str, int]:
        totals = dict.fromkeys(COUNT_KEYS, 0)
        for store in self.stores:
            for key, value in store.summary().items():
                totals[key] += value
        return totals

    @property
    def has_changes(self) -> bool:
        return any(store.changes for store in self.stores)

    def store(self, name: str) -> StorePlan:
        for store in self.stores:
            if store.store == name:
                return store
        raise KeyError(name)

    # --- JSON -----------------------------------------------------------------------------
    def _head(self) -> dict[str, Any]:
        return {
            "format": PLAN_FORMAT,
            "created_at": self.created_at,
            "catalog": self.catalog,
            "mapping": self.mapping,
            "summary": self.summary(),
            "stores": [
                {"store": s.store, "locale": s.locale, "revision": s.revision, "live": s.live,
                 "summary": s.summary(), "zero_share": round(s.zero_share(), 4),
                 "takes_offline": s.changes.offline, "safety_stop": s.safety_stop,
                 "price_stop": s.price_stop}
                for s in self.stores
            ],
            **({"queue": [q.to_dict() for q in self.queue]} if self.queue else {}),
        }

    def _tail(self) -> dict[str, Any]:
        return {
            "rejections": [r.to_dict() for r in self.rejections],
            "notices": [
                {"kind": n.kind, "store": n.store, "sku": n.sku, "message": n.message}
                for n in self.notices
            ],
            "notes": list(self.notes),
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self._head(), "changes": [_change_dict(c) for c in self.changes],
                **self._tail()}

    def write_json(self, out: TextIO) -> None:
        """The JSON document, written change by change."""
        head = json.dumps(self._head(), indent=2, ensure_ascii=False)
        out.write(head[:-2] + ',\n  "changes": [')
        for number, change in enumerate(self.changes):
            out.write(",\n    " if number else "\n    ")
            out.write(json.dumps(_change_dict(change), ensure_ascii=False))
        out.write("\n  ],\n")
        tail = json.dumps(self._tail(), indent=2, ensure_ascii=False)
        out.write(tail[2:] + "\n")

    def to_json(self) -> str:
        out = io.StringIO()
        self.write_json(out)
        return out.getvalue()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        if not isinstance(data, dict):  # JSON read from a file may be any value
            raise ValueError(f"expected a JSON object with a \"format\" key, got a "
                             f"{type(data).__name__}")
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {data.get('format')!r}")
        stores = []
        for s in data["stores"]:
            summary = s["summary"]
            stores.append(StorePlan(
                store=s["store"], locale=s["locale"], revision=int(s["revision"]),
                unchanged=int(summary["unchanged"]), rejected=int(summary["rejected"]),
                quarantined=int(summary.get("quarantined", 0)),
                live=int(s.get("live", 0)), safety_stop=s.get("safety_stop"),
                price_stop=s.get("price_stop")))
        by_name = {s.store: s for s in stores}
        for c in data["changes"]:
            by_name[c["store"]].changes.append(Change(
                action=c["action"], store=c["store"], sku=c["sku"],
                target=tuple(c["target"][name] for name in FIELDS),
                changes=None if c.get("new_offer") else
                tuple((name, v["old"], v["new"]) for name, v in c["fields"].items()),
                row=c.get("row"), listing_id=c.get("listing_id"),
                previous_error=c.get("previous_error"), queued_since=c.get("queued_since"),
                source_hash=c.get("source_hash"), pricing=c.get("pricing"),
                gain=c.get("gain")))
        for n in data.get("notices", []):
            by_name[n["store"]].notices.append(Notice(n["kind"], n["store"], n["sku"],
                                                      n["message"]))
        rejections = [
            Rejection(row=r["row"], sku=r["sku"], field=r["field"], value=r["value"],
                      expected=r["expected"], store=r.get("store"), column=r.get("column"))
            for r in data.get("rejections", [])
        ]
        return cls(stores=stores, rejections=rejections, notes=list(data.get("notes", [])),
                   catalog=data.get("catalog", ""), mapping=data.get("mapping", ""),
                   created_at=data.get("created_at", ""))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls.from_dict(json.loads(text))

    # --- text and Markdown ----------------------------------------------------------------
    def to_text(self, detail_limit: int = 200) -> str:
        lines: list[str] = []
        for store in self.stores:
            lines.append(f"Store {store.store} ({store.locale}): {_counts(store.summary())}")
            if store.safety_stop:
                lines.append(f"  STOP    apply would stop here: {store.safety_stop}")
            if store.quarantined:
                lines.append(f"  QUARANTINED {_quarantined(store.quarantined)}")
            for change in store.changes[:detail_limit]:
                row = f" (row {change.row})" if change.row else ""
                lines.append(f"  {change.action.upper():<7} {visible(change.sku)}{row}: "
                             f"{visible(change.reason())}")
            _more(lines, len(store.changes), detail_limit, "  ")
            for notice in store.notices[:detail_limit]:
                lines.append(f"  NOTE    {visible(notice.sku)}: {visible(notice.message)}")
            _more(lines, len(store.notices), detail_limit, "  ")
        if self.rejections:
            lines.append(f"Rejected catalog rows ({_problems(len(self.rejections))}):")
            lines.extend(f"  {r.message()}" for r in self.rejections[:detail_limit])
            _more(lines, len(self.rejections), detail_limit, "  ")
        lines.extend(f"Note: {note}" for note in self.notes)
        lines.extend(render_queue(self.queue, "text").splitlines())
        total = self.summary()
        lines.append(
            f"Total: {_counts(total)}." if self.has_changes
            else f"Nothing to send ({total['unchanged']} unchanged, "
                 f"{total['rejected']} rejected"
                 + (f", {total['quarantined']} quarantined" if total["quarantined"] else "")
                 + ").")
        return "\n".join(lines) + "\n"

    def to_markdown(self, detail_limit: int = 200) -> str:
        total = self.summary()
        lines = ["## Back Market publication plan", ""]
        if self.catalog:
            lines += [f"Catalog: `{_md(self.catalog)}` · mapping `{_md(self.mapping)}` · "
                      f"{self.created_at}", ""]
        lines += ["| store | " + " | ".join(COUNT_KEYS) + " |",
                  "| --- |" + " ---: |" * len(COUNT_KEYS)]
        for store in self.stores:
            s = store.summary()
            lines.append(f"| {_md(store.store)} ({store.locale}) | "
                         + " | ".join(str(s[k]) for k in COUNT_KEYS) + " |")
        lines.append("| **total** | " + " | ".join(f"**{total[k]}**" for k in COUNT_KEYS) + " |")
        if total["quarantined"]:
            lines += ["", f"> **Quarantined:** {_md(_quarantined(total['quarantined']))}"]
        stops = [store.safety_stop for store in self.stores if store.safety_stop]
        if stops:
            lines += [""] + [f"> **`apply` would stop:** {_md(stop)}" for stop in stops]
        for store in self.stores:
            if not store.changes and not store.notices:
                continue
            lines += ["", f"### {_md(store.store)} ({store.locale})", ""]
            if store.changes:
                lines += ["| action | SKU | row | what changes |", "| --- | --- | ---: | --- |"]
                for change in store.changes[:detail_limit]:
                    lines.append(f"| {change.action} | `{_md(change.sku)}` | "
                                 f"{change.row or ''} | {_md(change.reason())} |")
                _more(lines, len(store.changes), detail_limit, "")
            if store.notices:
                lines += ["", "Not sent:", ""]
                lines += [f"- `{_md(n.sku)}`: {_md(n.message)}"
                          for n in store.notices[:detail_limit]]
                _more(lines, len(store.notices), detail_limit, "")
        if self.rejections:
            lines += ["", f"### Rejected catalog rows ({_problems(len(self.rejections))})", "",
                      "| row | SKU | store | field | value | expected |",
                      "| ---: | --- | --- | --- | --- | --- |"]
            for r in self.rejections[:detail_limit]:
                value = "" if r.value is None else f"`{_md(r.value[:60])}`"
                field_name = r.field if not r.column or r.column == r.field else \
                    f"{r.field} ({r.column})"
                lines.append(f"| {r.row} | {_md(r.sku or '')} | {_md(r.store or 'all')} | "
                             f"{_md(field_name)} | {value} | {_md(r.expected)} |")
            _more(lines, len(self.rejections), detail_limit, "")
        if self.notes:
            lines += [""] + [f"> {_md(note)}" for note in self.notes]
        lines.extend(render_queue(self.queue, "markdown").splitlines())
        lines += ["", "Nothing to send." if not self.has_changes else
                  f"**{sum(total[k] for k in ('create', 'update', 'zero', 'retry'))} offers to "
                  "send.**"]
        return "\n".join(lines) + "\n"

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return self.to_json()
        if fmt == "markdown":
            return self.to_markdown()
        return self.to_text()


def _change_dict(change: Change) -> dict[str, Any]:
    return {
        "store": change.store,
        "sku": change.sku,
        "action": change.action,
        "row": change.row,
        "listing_id": change.listing_id,
        "fields": {name: {"old": old, "new": new}
                   for name, old, new in change.field_changes},
        "reason": change.reason(),
        "previous_error": change.previous_error,
        "queued_since": change.queued_since,
        "new_offer": change.changes is None,
        "source_hash": change.source_hash,
        "pricing": change.pricing,
        "gain": change.gain,
        "target": dict(zip(FIELDS, change.target, strict=True)),
    }


def _counts(summary: dict[str, int]) -> str:
    return (f"{summary['create']} to create, {summary['update']} to update, "
            f"{summary['zero']} to zero, {summary['retry']} to retry; "
            f"{summary['unchanged']} unchanged, {summary['rejected']} rejected"
            + (f", {summary['quarantined']} quarantined" if summary.get("quarantined") else ""))


def _quarantined(count: int) -> str:
    return (f"{count} offer{'s' if count != 1 else ''} refused by Back Market too many runs "
            "in a row, held back and not counted as rejected rows (see `syncer errors`; "
            "`syncer retry SKU` sends one again)")


def _more(lines: list[str], total: int, limit: int, indent: str) -> None:
    if total > limit:
        lines.append(f"{indent}... and {total - limit} more (use --format json for all)")


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return (visible(text.replace("\n", " ")).replace("\\", "\\\\").replace("|", "\\|")
            .replace("`", "'").replace("<", "&lt;"))


def _problems(count: int) -> str:
    return "1 problem" if count == 1 else f"{count} problems"
