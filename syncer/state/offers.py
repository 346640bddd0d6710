"""The offer snapshot: per store and SKU, what Back Market last confirmed, and the last failure.

The snapshot moves only on a confirmed acknowledgement, offer by offer (invariant 2); a
failure is recorded beside the last confirmed values, never over them. Every change bumps
the store's revision, which a saved plan records to detect staleness.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import and_, case, func, select
from sqlalchemy import delete as sa_delete
from sqlalchemy import update as sa_update

from syncer.core.crashpoints import crashpoint
from syncer.core.offers import FIELDS, content_hash, sku_key
from syncer.core.snapshot import Ack, Failure, SnapshotEntry
from syncer.errors import StateError
from syncer.state.database import BULK, Database, upsert
from syncer.state.queue import WorkQueue
from syncer.state.schema import ENTRY_COLUMNS, FIELD_COLUMNS, REVISION, SNAPSHOT, utcnow

_ACK_CHUNK: Final = 10_000  # acknowledgements per transaction


class OfferStore:
    """Reads and writes of the offer snapshot (``state.offers``)."""

    def __init__(self, db: Database, queue: WorkQueue) -> None:
        self.db = db
        self.queue = queue
        # Stores sharing listings with each store (same account), for global quantity.
        self.siblings: dict[str, tuple[str, ...]] = {}

    def snapshot(self, store: str) -> dict[str, SnapshotEntry]:
        if self.db.empty:
            return {}
        with self.db.read() as conn:
            result = conn.execution_options(yield_per=10_000).execute(
                select(*ENTRY_COLUMNS).where(SNAPSHOT.c.store == store))
            return dict(_entry(row) for row in result)

    def snapshot_entries(self, store: str, keys: Iterable[str]) -> dict[str, SnapshotEntry]:
        """Whole entries of these SKU keys (those the snapshot has)."""
        wanted = list(keys)
        if self.db.empty or not wanted:
            return {}
        entries: dict[str, SnapshotEntry] = {}
        with self.db.read() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(select(*ENTRY_COLUMNS).where(
                    SNAPSHOT.c.store == store,
                    SNAPSHOT.c.sku_key.in_(wanted[start:start + 500])))
                entries.update(_entry(row) for row in rows)
        return entries

    def snapshot_index(self, store: str) -> tuple[list[str], int]:
        """Every offer of the store's snapshot as the text ``key \\x1f value``: the SKU key
        and the source hash of its confirmed, live offer, ``n`` (failed, or no source hash),
        or ``-1`` when nothing of it was ever confirmed (``syncer.planning.diff.pair``).
        Compact: what planning keeps in memory for a million offers. The database joins
        them into one text (one value to fetch, not a million rows), split here; a SKU key
        holding the record separator (an odd SKU read back from Back Market) makes the
        count differ, and the offers are then read one row each. With the pairs, the
        ``live_count``, read in the same pass."""
        if self.db.empty:
            return [], 0
        with self.db.read() as conn:
            # The driver's own cursor: no SQLAlchemy rows.
            dialect = conn.dialect.name
            mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
            value = ("coalesce(CAST(CASE WHEN confirmed_at IS NULL THEN -1 WHEN status = "
                     "'live' THEN source_hash END AS TEXT), 'n')")
            if dialect == "sqlite":
                text = f"sku_key || char(31) || {value}"
                joined = f"group_concat({text}, char(30))"
            else:
                text = f"sku_key || chr(31) || {value}"
                joined = f"string_agg({text}, chr(30))"
            cursor = conn.connection.driver_connection.cursor()
            try:
                cursor.execute(
                    "SELECT count(*), sum(CASE WHEN confirmed_at IS NOT NULL AND quantity > 0 "
                    f"THEN 1 ELSE 0 END), {joined} FROM offer_snapshot WHERE store = {mark}",
                    (store,))
                count, live, blob = cursor.fetchone()
                pairs = blob.split("\x1e") if blob else []
                if len(pairs) != count:
                    cursor.execute(f"SELECT {text} FROM offer_snapshot WHERE store = {mark}",
                                   (store,))
                    pairs = []
                    while rows := cursor.fetchmany(20_000):
                        pairs.extend(row[0] for row in rows)
                return pairs, int(live or 0)
            finally:
                cursor.close()

    def live_count(self, store: str) -> int:
        if self.db.empty:
            return 0
        c = SNAPSHOT.c
        with self.db.read() as conn:
            return int(conn.execute(select(func.count()).where(
                c.store == store, c.confirmed_at.is_not(None), c.quantity > 0)).scalar() or 0)

    def revision(self, store: str) -> int:
        if self.db.empty:
            return 0
        with self.db.read() as conn:
            found = conn.execute(select(REVISION.c.revision).where(
                REVISION.c.store == store)).scalar()
        return int(found or 0)

    def record_acks(self, store: str, acks: Sequence[Ack],
                    sent_at: datetime | None = None) -> list[Ack]:
        """Confirmed publications: the snapshot takes the new values, errors are cleared.
        Written in chunks through the driver's executemany: a batch task can confirm
        thousands of offers at once (and the bench holds this above 50,000 a second).

        Confirmations only move forward: ``confirmed_at`` is when the confirmed request was
        sent (``sent_at``; now for a real-time update), and an acknowledgement of a request
        sent before the newest confirmation of its listing (in this store or a sibling that
        shares its quantity) replaces nothing. Those are returned: what Back Market holds
        for them depends on the order it applied the two, so the caller reads it."""
        now = utcnow()
        stale: list[Ack] = []
        if sent_at is not None and acks:
            newer = self._confirmed_after(store, [sku_key(ack.sku) for ack in acks], sent_at)
            if newer:
                stale = [ack for ack in acks if sku_key(ack.sku) in newer]
                acks = [ack for ack in acks if sku_key(ack.sku) not in newer]
        when = sent_at or now
        queued = bool(self.queue.queued(store))
        for start in range(0, len(acks), _ACK_CHUNK):
            chunk = acks[start:start + _ACK_CHUNK]
            with self.db.write() as conn:
                _ACK_WRITER.write(conn, store, chunk, when, now)
                self.db.wrote(SNAPSHOT, len(chunk))
                if queued:
                    self.queue.unqueue(conn, store, [sku_key(ack.sku) for ack in chunk])
                self._bump(conn, store, now)
        crashpoint("acks:before-siblings")
        self._note_global_quantity(store, acks, when)
        return stale

    def _confirmed_after(self, store: str, keys: Sequence[str], when: datetime) -> set[str]:
        """Keys whose listing has a confirmation newer than ``when`` in this store or one of
        its siblings."""
        stores = [store, *self.siblings.get(store, ())]
        found: set[str] = set()
        with self.db.read() as conn:
            for start in range(0, len(keys), BULK):
                found.update(conn.execute(select(SNAPSHOT.c.sku_key).where(
                    SNAPSHOT.c.store.in_(stores),
                    SNAPSHOT.c.sku_key.in_(keys[start:start + BULK]),
                    SNAPSHOT.c.confirmed_at > when)).scalars())
        return found

    def record_observed(self, store: str, observed: Sequence[Ack]) -> None:
        """What reconciliation read on Back Market becomes the snapshot's confirmed values
        (a failure still waiting to be retried stays recorded beside them)."""
        now = utcnow()
        for start in range(0, len(observed), BULK):
            chunk = observed[start:start + BULK]
            rows = [
                {"store": store, "sku_key": sku_key(ack.sku), "sku": ack.sku,
                 "listing_id": ack.listing_id, **dict(zip(FIELDS, ack.published, strict=True)),
                 "content_hash": content_hash(ack.published), "source_hash": None,
                 "confirmed_at": now, "status": "live", "attempts": 0, "updated_at": now}
                for ack in chunk
            ]
            update = ["sku", "listing_id", *FIELDS, "content_hash", "source_hash",
                      "confirmed_at", "updated_at"]
            with self.db.write() as conn:
                upsert(conn, SNAPSHOT, rows, ("store", "sku_key"), update)
                self._bump(conn, store, now)
        self._note_global_quantity(store, observed)

    def forget(self, store: str, skus: Sequence[str]) -> None:
        """Offers Back Market no longer has: the next plan creates them again if needed."""
        if not skus:
            return
        keys = [sku_key(sku) for sku in skus]
        with self.db.write() as conn:
            for start in range(0, len(keys), BULK):
                conn.execute(sa_delete(SNAPSHOT).where(
                    SNAPSHOT.c.store == store,
                    SNAPSHOT.c.sku_key.in_(keys[start:start + BULK])))
            self._bump(conn, store, utcnow())

    def _note_global_quantity(self, store: str, acks: Sequence[Ack],
                              when: datetime | None = None) -> None:
        """Quantity is global on Back Market: once confirmed through one store it is what
        every store of the listing shows. Other stores' confirmed rows of the SKU follow, so
        they do not send the same stock again (every send costs hourly budget); a sibling's
        newer confirmation (after ``when``, the time the request was sent) is kept."""
        siblings = self.siblings.get(store, ())
        if not siblings or not acks:
            return
        qty = FIELDS.index("quantity")
        wanted = {sku_key(ack.sku): ack.published[qty] for ack in acks}
        keys = list(wanted)
        now = utcnow()
        when = when or now
        columns = (SNAPSHOT.c.store, SNAPSHOT.c.sku_key, *FIELD_COLUMNS)
        with self.db.write() as conn:
            touched: set[str] = set()
            for start in range(0, len(keys), BULK):
                rows = conn.execute(select(*columns).where(
                    SNAPSHOT.c.store.in_(siblings),
                    SNAPSHOT.c.sku_key.in_(keys[start:start + BULK]),
                    SNAPSHOT.c.confirmed_at.is_not(None),
                    SNAPSHOT.c.confirmed_at <= when)).all()
                for sibling, key, *fields in rows:
                    if fields[qty] == wanted[key]:
                        continue
                    fields[qty] = wanted[key]
                    conn.execute(
                        sa_update(SNAPSHOT)
                        .where(SNAPSHOT.c.store == sibling, SNAPSHOT.c.sku_key == key,
                               SNAPSHOT.c.confirmed_at <= when)
                        .values(quantity=wanted[key], updated_at=now, confirmed_at=when,
                                content_hash=content_hash(tuple(fields))))
                    touched.add(sibling)
            for sibling in sorted(touched):
                self._bump(conn, sibling, now)

    def record_failures(self, store: str, failures: Sequence[Failure]) -> None:
        """A failed attempt: kept beside the last confirmed values, which do not move.
        ``attempts`` counts the runs in a row that Back Market refused with this same error
        (another error starts the count again; a failure to reach Back Market sets it to 0):
        it is what quarantine looks at."""
        now = utcnow()
        with self.db.write() as conn:
            for failure in failures:
                key = sku_key(failure.sku)
                failed_hash = (content_hash(failure.attempted)
                               if failure.attempted is not None else None)
                values = {
                    "status": "failed", "last_error": failure.message,
                    "error_code": failure.code, "request_id": failure.request_id,
                    "failed_hash": failed_hash, "updated_at": now,
                }
                same = and_(SNAPSHOT.c.status == "failed",
                            SNAPSHOT.c.last_error == failure.message)
                attempts: Any = case((same, SNAPSHOT.c.attempts + 1), else_=1) \
                    if failure.refused else 0
                done = conn.execute(
                    sa_update(SNAPSHOT)
                    .where(SNAPSHOT.c.store == store, SNAPSHOT.c.sku_key == key)
                    .values(attempts=attempts, **values)
                ).rowcount
                if not done:
                    conn.execute(SNAPSHOT.insert().values(
                        store=store, sku_key=key, sku=failure.sku,
                        attempts=1 if failure.refused else 0, **values))
            self.queue.unqueue(conn, store, [sku_key(f.sku) for f in failures])
            self._bump(conn, store, now)

    def release(self, store: str, sku: str) -> bool:
        """Let a quarantined offer be sent again (`syncer retry`); False when the store has
        no failed offer with this SKU."""
        with self.db.write() as conn:
            done = conn.execute(sa_update(SNAPSHOT).where(
                SNAPSHOT.c.store == store, SNAPSHOT.c.sku_key == sku_key(sku),
                SNAPSHOT.c.status == "failed").values(attempts=0, updated_at=utcnow())
            ).rowcount
            if done:
                self._bump(conn, store, utcnow())
        return bool(done)

    def _bump(self, conn: Any, store: str, now: datetime) -> None:
        done = conn.execute(
            sa_update(REVISION).where(REVISION.c.store == store)
            .values(revision=REVISION.c.revision + 1, updated_at=now)
        ).rowcount
        if not done:
            upsert(conn, REVISION, [{"store": store, "revision": 1, "updated_at": now}],
                    ("store",), ["revision", "updated_at"])


class StoreSnapshot:
    """A store's snapshot as the diff reads it (``syncer.planning.diff.SnapshotSource``): a compact
    index of every SKU, whole entries in batches on demand."""

    def __init__(self, offers: OfferStore, store: str) -> None:
        self.offers = offers
        self.store = store
        self._live: int | None = None  # read with the index (planning reads nothing else)

    def index(self) -> list[str]:
        pairs, self._live = self.offers.snapshot_index(self.store)
        return pairs

    def entries(self, keys: Iterable[str]) -> dict[str, SnapshotEntry]:
        return self.offers.snapshot_entries(self.store, keys)

    def live_count(self) -> int:
        if self._live is not None:
            return self._live
        return self.offers.live_count(self.store)


def _entry(row: Any) -> tuple[str, SnapshotEntry]:
    key, sku, listing_id, confirmed, status, error, attempts, rid, source, failed, *fields = row
    return key, SnapshotEntry(sku=sku, listing_id=listing_id,
                              published=tuple(fields) if confirmed is not None else None,
                              status=status, last_error=error, attempts=attempts,
                              request_id=rid, source_hash=source, failed_hash=failed)


class _AckWriter:
    """The snapshot upsert of acknowledgements, as one driver-level executemany of tuples
    (what SQLAlchemy's per-row parameter processing would cost four times over)."""

    COLUMNS: Final = ("store", "sku_key", "sku", "listing_id", *FIELDS, "content_hash",
                      "source_hash", "confirmed_at", "status", "last_error", "error_code",
                      "request_id", "attempts", "failed_hash", "updated_at")

    def __init__(self) -> None:
        self._sql: dict[str, str] = {}

    def statement(self, dialect: Any) -> str:
        name = dialect.name
        if name not in self._sql:
            if name not in ("sqlite", "postgresql"):
                raise StateError(f"state databases on {name} are not supported; use SQLite "
                                 "or PostgreSQL")
            mark = "?" if dialect.paramstyle == "qmark" else "%s"
            self._sql[name] = (
                f"INSERT INTO offer_snapshot ({', '.join(self.COLUMNS)}) VALUES "
                f"({', '.join([mark] * len(self.COLUMNS))}) {self.ON_CONFLICT}")
        return self._sql[name]

    # A confirmation never replaces a newer one (see OfferStore.record_acks).
    ON_CONFLICT: Final = (
        "ON CONFLICT (store, sku_key) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
        + " WHERE offer_snapshot.confirmed_at IS NULL"
        " OR offer_snapshot.confirmed_at <= excluded.confirmed_at")

    def write(self, conn: Any, store: str, acks: Sequence[Ack], sent_at: datetime,
              now: datetime) -> None:
        dialect = conn.dialect
        if dialect.name == "postgresql":
            self._copy(conn, store, acks, sent_at, now)
            return
        stamp = SNAPSHOT.c.confirmed_at.type.dialect_impl(dialect).bind_processor(dialect)
        sent, when = (stamp(sent_at), stamp(now)) if stamp is not None else (sent_at, now)
        conn.exec_driver_sql(self.statement(dialect), self._rows(store, acks, sent, when))

    def _rows(self, store: str, acks: Sequence[Ack], sent: object,
              when: object) -> list[tuple[Any, ...]]:
        return [(store, sku_key(ack.sku), ack.sku, ack.listing_id, *ack.published,
                 content_hash(ack.published), ack.source_hash, sent, "live", None, None,
                 None, 0, None, when) for ack in acks]

    def _copy(self, conn: Any, store: str, acks: Sequence[Ack], sent_at: datetime,
              now: datetime) -> None:
        """PostgreSQL: COPY into a staging table, then one upsert from it (several times
        faster than row-by-row statements, even pipelined)."""
        columns = ", ".join(self.COLUMNS)
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE IF NOT EXISTS ack_stage (LIKE offer_snapshot) "
                           "ON COMMIT DELETE ROWS")
            with cursor.copy(f"COPY ack_stage ({columns}) FROM STDIN") as copy:
                for row in self._rows(store, acks, sent_at, now):
                    copy.write_row(row)
            cursor.execute(f"INSERT INTO offer_snapshot ({columns}) SELECT {columns} FROM "
                           f"ack_stage {self.ON_CONFLICT}")
            cursor.execute("TRUNCATE ack_stage")


_ACK_WRITER: Final = _AckWriter()
