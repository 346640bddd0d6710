"""The run-results file (`--results FILE` on `apply` and `run`), as dbt's run_results.json
serves CI tools: one JSON document per command, what happened to every offer it touched and
a summary of the run.

Per offer: store, SKU, the plan's action, the outcome (``confirmed``, ``refused``,
``unreachable`` (Back Market not reached: sent again next run), ``failed`` (a batch task
failed as a whole), ``queued`` (beyond the hourly budget), ``in_flight`` (a batch whose
result is not known yet), ``already_published``), Back Market's answer (listing id, error
code and message) and what identifies the exchange: the request id, the batch task id.

Back Market's reference documents a ``requestId`` only in error bodies (ErrorResponseV1,
"let you trace errors in applicative logs"); on a success the client keeps the
``X-Request-Id`` response header when the server sends one (the emulator does; whether Back
Market does is not documented). A batch line is identified by its task id, which
``GET /ws/tasks/{id}`` answers for, and by the POST's request id when there is one.

Timing: ``sent_at`` is when the request that decided the outcome went out (a batch: its
POST), ``settled_at`` when the outcome was known, ``seconds`` between the two.

Offers are spooled to a temporary file as they come (a run of a million offers does not
keep them in memory) and the document is written at the end to a temporary file beside
FILE, then renamed over it: a reader never sees half a file. Every text that came from
Back Market goes through ``scrub``: the file never holds a secret.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from syncer import __version__
from syncer.core.secrets import scrub
from syncer.errors import ConfigError

RESULTS_FORMAT: Final = 1
OUTCOMES: Final = ("confirmed", "refused", "unreachable", "failed", "queued", "in_flight",
                   "already_published")


@dataclass(frozen=True, slots=True)
class OfferResult:
    """What became of one offer in a publication."""

    store: str
    sku: str
    action: str | None  # the plan's action; None: an earlier run's batch settled now
    outcome: str
    listing_id: str | None = None
    task_id: int | None = None
    request_id: str | None = None
    code: str | None = None
    message: str | None = None
    sent_at: float | None = None  # wall-clock seconds (time.time())
    settled_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        seconds = None if self.sent_at is None or self.settled_at is None else \
            round(max(0.0, self.settled_at - self.sent_at), 3)
        return {
            "store": self.store, "sku": self.sku, "action": self.action,
            "outcome": self.outcome, "listing_id": self.listing_id, "task_id": self.task_id,
            "request_id": _clean(self.request_id), "code": _clean(self.code),
            "message": _clean(self.message),
            "timing": {"sent_at": _stamp(self.sent_at), "settled_at": _stamp(self.settled_at),
                       "seconds": seconds},
        }


@dataclass
class StoreSummary:
    store: str
    kind: str
    outcome: str
    counts: dict[str, int]
    stopped: str | None
    started_at: str
    finished_at: str


@dataclass
class RunResults:
    """Collects a command's offer results; ``write`` puts the document in place."""

    path: Path
    command: str
    run_id: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    stores: list[StoreSummary] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    _spool: IO[str] | None = None
    _count: int = 0

    def __post_init__(self) -> None:
        # Its folders are made, as --out's are (a CI job names a fresh artifacts folder),
        # before anything is sent: a path that cannot hold the file stops the command first.
        folder = self.path.parent
        blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise ConfigError(f"--results {self.path}: {blocking} is a file, not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--results {self.path}: cannot make the folder {folder}: "
                              f"{exc.strerror}") from None
        self._spool = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed by write)

    def offer(self, result: OfferResult) -> None:
        assert self._spool is not None
        self._spool.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        self.outcomes[result.outcome] += 1
        self._count += 1

    def store_finished(self, store: str, kind: str, outcome: str, counts: dict[str, int],
                       stopped: str | None, started_at: datetime, finished_at: datetime) -> None:
        self.stores.append(StoreSummary(store, kind, outcome, dict(counts),
                                        _clean(stopped), _iso(started_at), _iso(finished_at)))

    def write(self, error: str | None = None) -> None:
        """The whole document, atomically; ``error``: what stopped the command, if any."""
        assert self._spool is not None
        finished = datetime.now(UTC)
        head = {
            "metadata": {
                "format": RESULTS_FORMAT, "generator": f"syncer {__version__}",
                "command": self.command, "run_id": self.run_id,
                "started_at": _iso(self.started_at), "finished_at": _iso(finished),
                "elapsed_seconds": round((finished - self.started_at).total_seconds(), 3),
                "error": _clean(error),
            },
            "summary": {"offers": self._count,
                        **{name: self.outcomes.get(name, 0) for name in OUTCOMES}},
            "stores": [
                {"store": s.store, "kind": s.kind, "outcome": s.outcome, "counts": s.counts,
                 "stopped": s.stopped, "started_at": s.started_at,
                 "finished_at": s.finished_at} for s in self.stores],
        }
        text = json.dumps(head, indent=2, ensure_ascii=False)
        try:
            handle, temporary = tempfile.mkstemp(prefix=f".{self.path.name}.",
                                                 dir=self.path.parent)
            try:
                with os.fdopen(handle, "w", encoding="utf-8") as out:
                    out.write(text[:-2] + ',\n  "results": [')
                    self._spool.seek(0)
                    for number, line in enumerate(self._spool):
                        out.write(",\n    " if number else "\n    ")
                        out.write(line.rstrip("\n"))
                    out.write("\n  ]\n}\n")
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temporary, self.path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror}") from None
        finally:
            self._spool.close()


def _clean(text: str | None) -> str | None:
    return None if text is None else scrub(text)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _stamp(seconds: float | None) -> str | None:
    return None if seconds is None else _iso(datetime.fromtimestamp(seconds, UTC))


@contextmanager
def recording(path: Path | None, command: str, run_id: str) -> Iterator[RunResults | None]:
    """A RunResults written when the block ends, however it ends (an error is named in its
    metadata); None when no file was asked for."""
    if path is None:
        yield None
        return
    results = RunResults(path, command, run_id)
    try:
        yield results
    except SystemExit:
        results.write()
        raise
    except BaseException as exc:
        results.write(str(exc) or type(exc).__name__)
        raise
    results.write()
