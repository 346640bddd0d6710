"""Crash points: where the crash tests kill a publication (SIGKILL) to prove nothing is lost.

A crash point costs one global lookup when nothing is armed. The tests arm one in a forked
child (``arm``) or through the environment of a subprocess
(``SYNCER_CRASH_AT=batch:after-post:2`` dies the second time that point is reached), then
check that the next run converges: every valid offer live with the catalog's values, none
created twice, no zero sent for an offer the catalog still has.
"""

from __future__ import annotations

import os
import signal
from typing import Final

POINTS: Final = (
    "single:before-request",   # a real-time update about to be sent
    "single:after-request",    # Back Market applied it; the acknowledgement is not recorded
    "batch:before-post",       # the batch is recorded as in flight, not yet sent
    "batch:after-post",        # Back Market took the batch; its task id is not recorded
    "batch:after-task-id",     # the task id is recorded; the task is not read yet
    "batch:before-acks",       # the task is done; its acknowledgements are not recorded
    "acks:before-siblings",    # acknowledgements recorded; other stores' stock not updated
)

_armed: tuple[str, int] | None = None
_hits: dict[str, int] = {}


def arm(point: str, hit: int = 1) -> None:
    if point not in POINTS:
        raise ValueError(f"unknown crash point {point!r}; known: {', '.join(POINTS)}")
    global _armed
    _armed = (point, hit)
    _hits.clear()


def _from_environment() -> None:
    value = os.environ.get("SYNCER_CRASH_AT")
    if value:
        point, _, hit = value.rpartition(":")
        arm(point, int(hit))


def crashpoint(point: str) -> None:
    """Die here, at once and without cleanup, if this point is armed and its hit is due."""
    if _armed is None or _armed[0] != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == _armed[1]:
        os.kill(os.getpid(), signal.SIGKILL)


_from_environment()
