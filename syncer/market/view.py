"""The market view: what each BackBox says of our listings, read where it matters most.

    read_order()     which listings a pass reads first (pure)
    market_pass()    one pass of BackBox reads for a store, within its time and read limits
    market_report()  per listing x country: our price, price to win, winner, floor, ceiling,
                     the suggested price and why; per store: BackBoxes held, lost, and what
                     winning the lost ones would cost in margin

A pass reads the store's known listings (the snapshot's) in this order: listings with stock
before listings without (those are not in any BackBox); among them, those losing their
BackBox at the last read, changed since (a newer confirmation in the snapshot) or never read,
before those winning and unchanged; then the oldest read first. A listing read less than
the cadence ago and unchanged since is not read again. A pass stops at its time or read
limit; what it left is first in line next time (it is the oldest read), so passes resume.

Floor, ceiling and the suggestion come from a ``PriceAdvisor`` (see ``advisor_for``). The pass
as a recorded run, and the report of the configured stores, are ``syncer.pipeline.market``'s.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Protocol

import structlog

from syncer.core.competition import Competition
from syncer.core.offers import Offer, money, visible
from syncer.errors import ApiError, OfferError
from syncer.planning.pricing_plan import Suggestion
from syncer.reports.tables import write_csv

log = structlog.get_logger("syncer.market.view")

NEVER: Final = datetime.min.replace(tzinfo=UTC)


def market_code(locale: str) -> str:
    """The BackBox's market of a store's locale: ``fr-be`` -> ``BE``."""
    return locale.split("-")[1].upper()


# --- the seam with pricing ------------------------------------------------------------------

class PriceAdvisor(Protocol):
    def suggest(self, offer: Offer, competition: Competition | None) -> Suggestion: ...


class CatalogPrice:
    """No pricing rules: the catalog's price, floor and ceiling unknown."""

    def suggest(self, offer: Offer, competition: Competition | None) -> Suggestion:
        return Suggestion(offer.price, None, None, "no pricing rules: catalog price")


def advisor_for(settings: Any, store: Any, *, inputs: Mapping[str, Any] | None = None,
                state: Any = None, now: datetime | None = None) -> PriceAdvisor:
    """The store's pricing rules, as ``syncer market`` applies them: the plan's decisions
    (``pricing_plan.RulesAdvisor``) when the mapping profile has a ``[pricing]`` table, from
    the rows' pricing cells (``inputs``, by SKU key), the prices confirmed and the moves in
    the state; the catalog's price otherwise."""
    from syncer.planning.mapping import load_profile
    from syncer.planning.pricing import DAY, Move
    from syncer.planning.pricing_plan import RulesAdvisor, in_effect

    pricing = load_profile(settings.mapping_path()).pricing
    if pricing is None:
        return CatalogPrice()
    rules = pricing.rules(store.name)
    if not in_effect(rules, any(i.strategy for i in (inputs or {}).values())):
        return CatalogPrice()
    now = now or datetime.now(UTC)
    current: dict[str, Decimal] = {}
    moves: dict[str, list[Move]] = {}
    if state is not None:
        from syncer.core.offers import sku_key

        current = {sku_key(sku): Decimal(price)
                   for sku, _id, _q, price, _c, _at in state.market.market_listings(store.name)
                   if price is not None}
        since = now - max(DAY, timedelta(minutes=rules.cooldown_minutes))
        moves = {key: [Move(*m) for m in found]
                 for key, found in state.market.price_moves(store.name, since).items()}
    return RulesAdvisor(rules, inputs or {}, current, moves, now)


# --- which listings a pass reads -------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Candidate:
    sku: str
    listing_id: str
    quantity: int
    changed_at: datetime  # the snapshot's confirmation: our listing changed then
    read_at: datetime | None  # the last BackBox read of it, None: never
    losing: bool | None  # at that read, in this store's market; None: no data


def candidates(listings: Iterable[tuple[str, str, int, str | None, str | None, datetime]],
               competition: Mapping[tuple[str, str], Competition], market: str
               ) -> list[Candidate]:
    """The listings of ``StateStore.market.market_listings``, with what their last read said."""
    reads: dict[str, datetime] = {}
    for (listing_id, _market), item in competition.items():
        if item.read_at > reads.get(listing_id, NEVER):
            reads[listing_id] = item.read_at
    found: dict[str, Candidate] = {}
    for sku, listing_id, quantity, _price, _currency, confirmed_at in listings:
        if listing_id in found:
            continue
        ours = competition.get((listing_id, market))
        found[listing_id] = Candidate(sku, listing_id, quantity, confirmed_at,
                                      reads.get(listing_id),
                                      None if ours is None else not ours.is_winning)
    return list(found.values())


def is_due(candidate: Candidate, now: datetime, every: timedelta) -> bool:
    read = candidate.read_at
    return read is None or now - read >= every or candidate.changed_at > read


def urgent(candidate: Candidate) -> bool:
    """Losing, changed since the last read, or never read."""
    read = candidate.read_at
    return read is None or candidate.losing is not False or candidate.changed_at > read


def read_order(items: Iterable[Candidate], now: datetime, every: timedelta
               ) -> list[Candidate]:
    """The due listings, most useful read first (see the module's docstring)."""
    due = [c for c in items if is_due(c, now, every)]
    return sorted(due, key=lambda c: (c.quantity <= 0, not urgent(c), c.read_at or NEVER,
                                      c.listing_id))


# --- a pass ---------------------------------------------------------------------------------

class CompetitorReader(Protocol):
    def competitors(self, listing_id: str, *, read_at: datetime | None = None
                    ) -> list[Competition]: ...


class CompetitionStore(Protocol):
    def competition(self, account: str) -> dict[tuple[str, str], Competition]: ...

    def market_listings(self, store: str) -> list[tuple[str, str, int, str | None,
                                                        str | None, datetime]]: ...

    def save_competition(self, account: str, items: Sequence[Competition]) -> None: ...


@dataclass
class PassResult:
    store: str
    due: int = 0  # listings due at the start
    read: int = 0
    not_found: int = 0  # 404 or refused: the listing is in no BackBox (offline)
    failed: int = 0  # answers that could not be read (the errors say why)
    left: int = 0  # due listings this pass had no time or reads left for
    errors: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {"due": self.due, "read": self.read, "not_found": self.not_found,
                "failed": self.failed, "left": self.left}


def market_pass(client: CompetitorReader, book: CompetitionStore, *, account: str,
                store: str, locale: str, every: timedelta, seconds: float,
                max_reads: int = 0, now: Callable[[], datetime] = lambda: datetime.now(UTC),
                clock: Callable[[], float] = time.monotonic,
                stop: Callable[[], bool] = lambda: False) -> PassResult:
    """Read the BackBox of the store's due listings, most useful first, until ``seconds``
    have passed or ``max_reads`` (0: no cap) are done; each read is saved as it arrives.
    A listing Back Market refuses (404: not online) or answers badly is counted and the
    pass goes on; a token rejected, a block or an outage stop it (the error is raised)."""
    result = PassResult(store)
    order = read_order(candidates(book.market_listings(store), book.competition(account),
                                  market_code(locale)), now(), every)
    result.due = len(order)
    ends = clock() + seconds
    for done, candidate in enumerate(order):
        if stop() or clock() >= ends or (max_reads and result.read >= max_reads):
            result.left = len(order) - done
            break
        try:
            items = client.competitors(candidate.listing_id, read_at=now())
        except OfferError:
            result.not_found += 1
            continue
        except ApiError as exc:
            if type(exc) is not ApiError:  # retriable after retries, fatal: stop
                raise
            result.failed += 1
            result.errors.append(str(exc))
            log.warning("competitors answer not read", store=store,
                        listing_id=candidate.listing_id, error=str(exc))
            continue
        book.save_competition(account, items)
        result.read += 1
    return result


# --- the report -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class MarketRow:
    store: str
    sku: str
    listing_id: str
    market: str
    quantity: int
    currency: str | None
    price: Decimal | None  # ours, as Back Market holds it (else as we published it)
    price_to_win: Decimal | None
    winner_price: Decimal | None
    is_winning: bool | None  # None: never read
    floor: Decimal | None
    ceiling: Decimal | None
    suggested: Decimal | None
    reason: str
    read_at: datetime | None

    @property
    def lost(self) -> bool:
        return self.is_winning is False and self.quantity > 0

    def cost_to_win(self) -> Decimal:
        """Margin given up per unit to win it: our price minus the price to win."""
        if not self.lost or self.price is None or self.price_to_win is None:
            return Decimal(0)
        return max(Decimal(0), self.price - self.price_to_win)


@dataclass
class StoreSummary:
    store: str
    currency: str | None
    held: int = 0
    lost: int = 0
    unread: int = 0  # with stock, no BackBox data
    cost_to_win: Decimal = Decimal(0)
    oldest_read: datetime | None = None

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {"store": self.store, "currency": self.currency, "held": self.held,
                "lost": self.lost, "unread": self.unread,
                "cost_to_win": money(self.cost_to_win),
                "oldest_read_age_seconds": None if self.oldest_read is None else
                int((now - self.oldest_read).total_seconds())}


@dataclass
class MarketReport:
    rows: list[MarketRow]
    summaries: list[StoreSummary]
    now: datetime
    shop: list[dict[str, Any]] = field(default_factory=list)  # the public shop's views
    notes: list[str] = field(default_factory=list)

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if fmt == "csv":
            out = io.StringIO()
            write_csv(out, CSV_HEADER, (self._cells(row) for row in self.rows))
            return out.getvalue()
        if fmt == "markdown":
            return self._markdown()
        return self._text()

    def to_dict(self) -> dict[str, Any]:
        return {"generated_at": _iso(self.now),
                "stores": [s.to_dict(self.now) for s in self.summaries],
                "listings": [dict(zip(CSV_HEADER, self._values(row), strict=True))
                             for row in self.rows],
                "shop": [{k: v for k, v in view.items() if k != "read_at_dt"}
                         for view in self.shop], "notes": self.notes}

    def _values(self, row: MarketRow) -> list[Any]:
        return [row.store, row.sku, row.listing_id, row.market, row.quantity, row.currency,
                _money(row.price), _money(row.price_to_win), _money(row.winner_price),
                row.is_winning, _money(row.floor), _money(row.ceiling), _money(row.suggested),
                row.reason, _iso(row.read_at), self._age(row)]

    def _cells(self, row: MarketRow) -> list[Any]:
        cells = self._values(row)
        cells[9] = "" if row.is_winning is None else "yes" if row.is_winning else "no"
        return cells

    def _age(self, row: MarketRow) -> int | None:
        return None if row.read_at is None else int((self.now - row.read_at).total_seconds())

    def _state(self, row: MarketRow) -> str:
        if row.is_winning is None:
            return "not read"
        if row.quantity <= 0:
            return "no stock"
        return "WINNING" if row.is_winning else "LOST"

    def _text(self) -> str:
        lines = []
        for summary in self.summaries:
            lines.append(_summary_line(summary, self.now))
            for row in (r for r in self.rows if r.store == summary.store):
                lines.append(
                    f"  {visible(row.sku)} [{row.market}] {self._state(row)}: ours "
                    f"{_money(row.price) or '?'}, to win {_money(row.price_to_win) or '?'}, "
                    f"winner {_money(row.winner_price) or '-'}; floor "
                    f"{_money(row.floor) or '?'}, ceiling {_money(row.ceiling) or '?'}; "
                    f"suggested {_money(row.suggested) or '-'} ({row.reason})"
                    f"{_age_text(row.read_at, self.now)}")
        lines += self._shop_lines()
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines) + "\n" if lines else "No listings to show.\n"

    def _markdown(self) -> str:
        lines = ["## Market view", ""]
        for summary in self.summaries:
            lines += [f"### {_summary_line(summary, self.now)}", "",
                      "| SKU | market | BackBox | our price | price to win | winner | floor "
                      "| ceiling | suggested | why | read |",
                      "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
            for row in (r for r in self.rows if r.store == summary.store):
                cells = [_md(visible(row.sku)), row.market, self._state(row),
                         _money(row.price) or "?", _money(row.price_to_win) or "?",
                         _money(row.winner_price) or "-", _money(row.floor) or "?",
                         _money(row.ceiling) or "?", _money(row.suggested) or "-",
                         _md(row.reason), _age_text(row.read_at, self.now).strip(" ()")]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
        lines += self._shop_lines()
        lines += [f"> {_md(note)}" for note in self.notes]
        return "\n".join(lines) + "\n"

    def _shop_lines(self) -> list[str]:
        lines = []
        for view in self.shop:
            if view.get("error"):
                lines.append(f"shop {view['product']}: {view['error']}")
                continue
            grades = ", ".join(f"{g['label']} {g['price'] or '?'}" for g in view["grades"])
            lines.append(
                f"shop {view['product']}: {view.get('title') or ''} from "
                f"{view.get('starting_price') or '?'}; {grades or 'no grade prices'}; "
                f"{'in stock' if view.get('in_stock') else 'out of stock'}; rating "
                f"{view.get('rating') or '?'} ({view.get('review_count') or 0} reviews)"
                f"{_age_text(view.get('read_at_dt'), self.now)}"
                + (f"; {view['note']}" if view.get("note") else ""))
        return lines


CSV_HEADER: Final = ("store", "sku", "listing_id", "market", "quantity", "currency", "price",
                     "price_to_win", "winner_price", "is_winning", "floor", "ceiling",
                     "suggested_price", "reason", "read_at", "age_seconds")


def market_report(stores: Sequence[tuple[str, str, str]],
                  listings: Mapping[str, Sequence[tuple[str, str, int, str | None,
                                                        str | None, datetime]]],
                  competition: Mapping[str, Mapping[tuple[str, str], Competition]],
                  offers: Mapping[str, Mapping[str, Offer]] | None,
                  advisors: Mapping[str, PriceAdvisor], now: datetime) -> MarketReport:
    """``stores``: (name, locale, account); ``listings`` by store (the snapshot's),
    ``competition`` by account, ``offers`` (the catalog's, by store and SKU key; None when
    no catalog is configured) and an advisor by store."""
    from syncer.core.offers import sku_key

    rows: list[MarketRow] = []
    summaries = []
    for name, locale, account in stores:
        market = market_code(locale)
        known = competition.get(account, {})
        summary = StoreSummary(name, None)
        for sku, listing_id, quantity, price, currency, _at in listings.get(name, ()):
            data = known.get((listing_id, market))
            offer = None if offers is None else offers.get(name, {}).get(sku_key(sku))
            if offer is not None:
                suggestion = advisors[name].suggest(offer, data)
            else:
                suggestion = Suggestion(None, None, None, "no catalog configured"
                                        if offers is None else "not in the catalog")
            row = MarketRow(
                store=name, sku=sku, listing_id=listing_id, market=market, quantity=quantity,
                currency=data.currency if data else currency,
                price=data.price if data else None if price is None else Decimal(price),
                price_to_win=data.price_to_win if data else None,
                winner_price=data.winner_price if data else None,
                is_winning=data.is_winning if data else None,
                floor=suggestion.floor, ceiling=suggestion.ceiling,
                suggested=suggestion.price, reason=suggestion.reason,
                read_at=data.read_at if data else None)
            rows.append(row)
            summary.currency = summary.currency or row.currency
            if quantity <= 0:
                continue
            if data is None:
                summary.unread += 1
                continue
            summary.held += data.is_winning
            summary.lost += not data.is_winning
            summary.cost_to_win += row.cost_to_win()
            if summary.oldest_read is None or data.read_at < summary.oldest_read:
                summary.oldest_read = data.read_at
        summaries.append(summary)
    return MarketReport(rows, summaries, now)


def _summary_line(summary: StoreSummary, now: datetime) -> str:
    cost = f"{money(summary.cost_to_win)} {summary.currency or ''}".strip()
    line = (f"Store {summary.store}: {summary.held} BackBoxes held, {summary.lost} lost "
            f"(winning them: {cost} less margin a unit)")
    if summary.unread:
        line += f", {summary.unread} with stock never read"
    if summary.oldest_read is not None:
        line += f"; oldest data {_duration(now - summary.oldest_read)} old"
    return line


def _money(value: Decimal | None) -> str | None:
    return None if value is None else money(value)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds").replace("+00:00", "Z")


def _age_text(read_at: datetime | None, now: datetime) -> str:
    return "" if read_at is None else f" (read {_duration(now - read_at)} ago)"


def _duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
