"""Store locks as leases in the state database: one run per store at a time, across hosts.

A holder that dies stops renewing; its lease expires and the next run takes over (or at
once, if the holder's process is known dead on this host).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import structlog
from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy import update as sa_update
from sqlalchemy.exc import IntegrityError

from syncer.config.sections import lease_renew_every
from syncer.errors import LockHeld, StateError
from syncer.state.database import Database
from syncer.state.schema import LOCKS, utcnow

log = structlog.get_logger("syncer.state.locks")


class Locks:
    """The run lock of each store (``state.locks``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @contextmanager
    def lock(self, store: str, lease_seconds: float, run_id: str) -> Iterator[StoreLease]:
        lease = StoreLease(self.db, store, lease_seconds, holder_id(run_id))
        lease.acquire()
        try:
            yield lease
        finally:
            lease.release()


class StoreLease:
    """A lease on a store's lock in the state database. A holder that dies stops renewing;
    its lease expires and the next run takes over (or at once, if the holder's process is
    known dead on this host). The holder calls ``keep`` before every request: it renews
    every third of the lease (``syncer.config.sections.lease_renew_every``)."""

    def __init__(self, db: Database, store: str, seconds: float, holder: str, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.store = store
        self.seconds = seconds
        self.holder = holder
        self.renew_every = lease_renew_every(seconds)
        self.clock = clock
        self._renewed = clock()

    def acquire(self) -> None:
        self._renewed = self.clock()
        now = utcnow()
        expires = now + timedelta(seconds=self.seconds)
        with self.db.write() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(LOCKS.insert().values(
                        store=self.store, holder=self.holder, acquired_at=now, expires_at=expires))
                return
            except IntegrityError:
                pass
            current = conn.execute(select(LOCKS.c.holder, LOCKS.c.expires_at).where(
                LOCKS.c.store == self.store)).first()
            if current is None:  # released in between: take it
                conn.execute(LOCKS.insert().values(
                    store=self.store, holder=self.holder, acquired_at=now, expires_at=expires))
                return
            holder, until = current
            if until > now and not _holder_dead(holder):
                raise LockHeld(self.store, holder, until.isoformat(timespec="seconds"))
            taken = conn.execute(
                sa_update(LOCKS).where(LOCKS.c.store == self.store,
                                        LOCKS.c.holder == holder,
                                        LOCKS.c.expires_at == until)
                .values(holder=self.holder, acquired_at=now, expires_at=expires)
            ).rowcount
            if not taken:
                raise LockHeld(self.store, "another run", "now")

    def keep(self) -> None:
        """Renew the lease if a renewal is due; StateError if another run took it."""
        if self.clock() - self._renewed >= self.renew_every:
            self.renew()

    def renew(self) -> None:
        renewed = self.clock()
        with self.db.write() as conn:
            kept = conn.execute(
                sa_update(LOCKS).where(LOCKS.c.store == self.store,
                                        LOCKS.c.holder == self.holder)
                .values(expires_at=utcnow() + timedelta(seconds=self.seconds))
            ).rowcount
        if not kept:
            raise StateError(f"store {self.store}: lost the run lock (lease expired and taken)")
        self._renewed = renewed
        log.debug("lock lease renewed", store=self.store, lease_seconds=self.seconds)

    def release(self) -> None:
        try:
            with self.db.write() as conn:
                conn.execute(sa_delete(LOCKS).where(LOCKS.c.store == self.store,
                                                     LOCKS.c.holder == self.holder))
        except StateError:
            pass  # the lease will expire on its own


def holder_id(run_id: str) -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{run_id}"


def _holder_dead(holder: str) -> bool:
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
