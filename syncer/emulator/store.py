"""The emulator's ``--state`` file: its model in SQLite, one JSON document a row, written
after each change, so that listings, products and tasks outlive a restart (orders and the
competitive market do not: they are test and demo data).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from typing import Any

from syncer.emulator.model import Listing, Product, Seller, Shared, Task

__all__ = ["Store"]


class Store:
    """The model in SQLite, one JSON document per row, written after each change."""

    def __init__(self, path: str) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS listings"
                " (token TEXT, sku_key TEXT, data TEXT, PRIMARY KEY (token, sku_key))"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS tasks (task_id INTEGER PRIMARY KEY, data TEXT)"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS products (product_id TEXT PRIMARY KEY, data TEXT)"
            )

    def load(self) -> tuple[dict[str, Any], list[tuple[str, str]], list[str], list[str]]:
        meta = {k: json.loads(v) for k, v in self._db.execute("SELECT key, value FROM meta")}
        listings = [(t, d) for t, d in self._db.execute("SELECT token, data FROM listings")]
        tasks = [d for (d,) in self._db.execute("SELECT data FROM tasks ORDER BY task_id")]
        products = [d for (d,) in self._db.execute("SELECT data FROM products")]
        return meta, listings, tasks, products

    def save(
        self,
        meta: dict[str, Any],
        listings: list[tuple[str, str, str | None]],
        tasks: list[tuple[int, str]],
        products: list[tuple[str, str]],
    ) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in meta.items()],
            )
            for token, key, data in listings:
                if data is None:
                    self._db.execute(
                        "DELETE FROM listings WHERE token = ? AND sku_key = ?", (token, key)
                    )
                else:
                    self._db.execute(
                        "INSERT OR REPLACE INTO listings VALUES (?, ?, ?)", (token, key, data)
                    )
            self._db.executemany("INSERT OR REPLACE INTO tasks VALUES (?, ?)", tasks)
            self._db.executemany("INSERT OR REPLACE INTO products VALUES (?, ?)", products)

    def clear(self) -> None:
        with self._db:
            for table in ("meta", "listings", "tasks", "products"):
                self._db.execute(f"DELETE FROM {table}")

    def close(self) -> None:
        self._db.close()

    def load_into(self, shared: Shared) -> None:
        """Read the saved model into ``shared`` (its tasks not processed yet become due
        ``task_delay`` after now: the old clock means nothing in this process)."""
        model = shared.model
        meta, listings, tasks, products = self.load()
        model.next_listing_id = int(meta.get("next_listing_id", model.next_listing_id))
        model.next_task_id = int(meta.get("next_task_id", model.next_task_id))
        model.next_backmarket_id = int(meta.get("next_backmarket_id", model.next_backmarket_id))
        for data in products:
            model.index(Product(**json.loads(data)))
        for token, data in listings:
            seller = model.sellers.setdefault(token, Seller())
            seller.add(Listing.from_json(json.loads(data)))
        now = shared.clock()
        for data in tasks:
            task = Task(**json.loads(data))
            model.tasks[task.task_id] = task
            if task.action_status == 0:
                task.created_at = now
                model.pending.append(task.task_id)

    def flush(self, shared: Shared) -> None:
        """Save what changed since the last flush."""
        model, dirty = shared.model, shared.dirty
        if not dirty:
            return
        listings: list[tuple[str, str, str | None]] = []
        for token, key in sorted(dirty.listings):
            seller = model.sellers.get(token)
            found = seller.listings.get(key) if seller else None
            listings.append((token, key, None if found is None else json.dumps(asdict(found))))
        tasks = [(i, json.dumps(asdict(model.tasks[i]))) for i in sorted(dirty.tasks)]
        products = [(p, json.dumps(asdict(model.products[p]))) for p in dirty.products]
        meta = {
            "next_listing_id": model.next_listing_id,
            "next_task_id": model.next_task_id,
            "next_backmarket_id": model.next_backmarket_id,
        }
        dirty.clear()
        self.save(meta, listings, tasks, products)
