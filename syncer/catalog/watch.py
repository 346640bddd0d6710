"""Cheap looks at a catalog, for the daemon's stock watch (``syncer.pipeline.watch``).

- ``file_signature``: a CSV file's inode, size, modification and change times (one ``stat``);
  any export that rewrites or replaces the file changes one of them.
- ``StockCells``: the stock-only read of a CSV file: SKU key -> its stock cells (stock,
  safety quantity, maximum quantity), to tell a stock decrease from every other change
  without planning. It reads through ``CsvCatalog``, so a cut file raises ``CatalogError``
  exactly as a plan would.
- ``sql_signature``: one value that changes when the stock of a database catalog changes,
  asked with one small query: ``max(changed_column)`` and ``count(*)`` when the seller
  configures a column that grows on every update (``[catalog] changed_column``); else, on
  PostgreSQL, an md5 of every row's SKU and stock computed by the server (one row comes
  back); elsewhere a stream of the two columns only, hashed here.

Nothing here decides what is sent: a change only tells the watch to plan.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from syncer.catalog.files import CatalogSource
from syncer.catalog.sql import SqlCatalog, connected, database_url, error_detail
from syncer.core.offers import sku_key
from syncer.errors import CatalogError
from syncer.planning.mapping import Profile, compile_mapping
from syncer.planning.sources import Getter

# The cells of a row that decide its quantity (offer fields of the mapping profile).
STOCK_FIELDS: Final = ("stock", "safety_quantity", "max_quantity")

Signature = tuple[object, ...]


def file_signature(path: Path) -> Signature | None:
    """The file's identity and version as ``stat`` tells it, None when it is missing."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


Cells = tuple[str | None, ...]


@dataclass
class StockCells:
    """SKU key -> the raw stock cells of its row, from one read of the catalog."""

    cells: dict[str, Cells]

    @classmethod
    def read(cls, source: CatalogSource, profile: Profile, stores: Sequence[object]) -> StockCells:
        cells: dict[str, Cells] = {}
        with source.open() as stream:
            mapping = compile_mapping(profile, stream.header, stores)  # type: ignore[arg-type]
            sku = mapping.offer["sku"]
            getters: list[Getter] = [mapping.offer[name] for name in STOCK_FIELDS
                                     if name in mapping.offer]
            width = len(stream.header)
            for _row, values in stream.rows:
                if len(values) != width:
                    continue  # a shifted row: the plan reports it, and it blocks "gone" zeros
                raw = sku(values)
                if raw is None:
                    continue
                cells[sku_key(raw)] = tuple(g(values) for g in getters)
        return cls(cells)

    def lowered(self, before: StockCells | None) -> list[str]:
        """SKU keys whose stock may have gone down since ``before`` (all of them without
        ``before``): a lower stock count, or any other change of their stock cells (an
        unreadable count, a new safety quantity or cap: planning decides). A higher stock
        count alone is not rushed, and a SKU gone from the catalog is not either: the
        watch never zeroes an offer as gone (a file read mid-write looks just like that)."""
        if before is None:
            return list(self.cells)
        lowered = []
        for key, now in self.cells.items():
            then = before.cells.get(key)
            if then is None or then == now:
                continue  # a new row is a creation: the offer run's
            if now[1:] == then[1:] and _count(now[0]) is not None \
                    and _count(then[0]) is not None and _count(now[0]) > _count(then[0]):  # type: ignore[operator]
                continue  # only the stock count went up
            lowered.append(key)
        return lowered


def _count(cell: str | None) -> int | None:
    try:
        return int(cell) if cell is not None else None
    except ValueError:
        return None


def sql_signature(catalog: SqlCatalog, sku_column: str, stock_column: str,
                  changed_column: str | None = None) -> Signature:
    """One small query's answer that changes when a row's stock does (see the module)."""
    url = database_url(catalog.url) if isinstance(catalog.url, str) else catalog.url
    with connected(url, catalog.safe_url) as conn:
        quote = conn.dialect.identifier_preparer.quote
        if catalog.query is not None:
            base = catalog.query.strip().rstrip(";")
        else:
            assert catalog.table is not None
            base = "SELECT * FROM " + ".".join(quote(p) for p in catalog.table.split("."))
        sku, stock = quote(sku_column), quote(stock_column)
        try:
            if changed_column is not None:
                row = conn.execute(sa.text(
                    f"SELECT count(*), max({quote(changed_column)}) FROM ({base}) AS watched"
                )).one()
                return ("changed", *row)
            if conn.dialect.name == "postgresql":
                row = conn.execute(sa.text(
                    f"SELECT count(*), md5(string_agg(CAST({sku} AS text) || '=' || "
                    f"COALESCE(CAST({stock} AS text), ''), ',' ORDER BY CAST({sku} AS text)))"
                    f" FROM ({base}) AS watched")).one()
                return ("md5", *row)
            digest = hashlib.blake2b(digest_size=16)
            count = 0
            result = conn.execution_options(stream_results=True).execute(
                sa.text(f"SELECT {sku}, {stock} FROM ({base}) AS watched"))
            while batch := result.fetchmany(catalog.batch_size):
                for record in batch:
                    count += 1
                    digest.update(repr(tuple(record)).encode("utf-8"))
            return ("read", count, digest.hexdigest())
        except SQLAlchemyError as exc:
            raise CatalogError(f"the stock watch's look at {catalog.what} failed on "
                               f"{catalog.safe_url}: {error_detail(exc, url)}") from None
