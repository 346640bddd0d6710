"""The progress display of long steps (planning the catalog's rows, reading the listings,
publishing), drawn with rich on stderr.

Only on a terminal: on when both stdout and stderr are terminals and the command is not
``--quiet``, off otherwise (a pipe, a file, CI logs), where nothing of it is written. Off,
every method costs nothing: ``rows`` and ``track`` hand back what they were given.

One rich display for the command: a step started inside another adds its line to it (rich
allows one live display at a time). Lines vanish when their step ends (transient).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from syncer.catalog.files import CatalogSource, CatalogStream

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

T = TypeVar("T")
# Rows counted between two updates of the display: a million rows, a thousand updates.
ROWS_PER_UPDATE: Final = 1000


class ProgressDisplay:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._bar: Progress | None = None
        self._tasks: list[TaskID] = []

    @classmethod
    def for_terminal(cls, quiet: bool) -> ProgressDisplay:
        """On when stdout and stderr are both terminals and not ``--quiet``."""
        return cls(not quiet and _is_tty(sys.stdout) and _is_tty(sys.stderr))

    @contextmanager
    def step(self, description: str, total: int | None = None) -> Iterator[None]:
        """A line for one step; ``advance`` moves the innermost one."""
        if not self.enabled:
            yield
            return
        outermost = self._bar is None
        if outermost:
            self._bar = _new_bar()
            self._bar.start()
        bar = self._bar
        assert bar is not None
        task = bar.add_task(description, total=total)
        self._tasks.append(task)
        bar.refresh()  # drawn at once, not at the next tick: a short step shows too
        try:
            yield
        finally:
            self._tasks.pop()
            bar.remove_task(task)
            if outermost:
                bar.stop()
                self._bar = None

    def advance(self, count: int = 1) -> None:
        if self._bar is not None and self._tasks:
            self._bar.advance(self._tasks[-1], count)

    def also(self, other: Callable[[int], None]) -> Callable[[int], None]:
        """A progress callback that tells ``other`` and this display."""
        if not self.enabled:
            return other

        def both(count: int) -> None:
            other(count)
            self.advance(count)

        return both

    def track(self, items: Iterable[T], description: str,
              total: int | None = None) -> Iterable[T]:
        """``items``, counted on a line of their own while they are read."""
        if not self.enabled:
            return items
        return self._tracked(items, description, total)

    def _tracked(self, items: Iterable[T], description: str,
                 total: int | None) -> Iterator[T]:
        with self.step(description, total):
            pending = 0
            for item in items:
                yield item
                pending += 1
                if pending >= 50:
                    self.advance(pending)
                    pending = 0
            self.advance(pending)

    def rows(self, source: CatalogSource, description: str = "planning") -> CatalogSource:
        """The catalog source, its rows counted while a plan reads them."""
        return source if not self.enabled else _CountedRows(source, self, description)


@dataclass(frozen=True)
class _CountedRows:
    source: CatalogSource
    display: ProgressDisplay
    description: str

    @contextmanager
    def open(self) -> Iterator[CatalogStream]:
        with self.source.open() as stream, \
                self.display.step(f"{self.description}: catalog rows read"):

            def rows() -> Iterator[tuple[int, list[str]]]:
                pending = 0
                for row in stream.rows:
                    yield row
                    pending += 1
                    if pending == ROWS_PER_UPDATE:
                        self.display.advance(pending)
                        pending = 0
                self.display.advance(pending)

            yield CatalogStream(stream.header, rows(), stream.description, stream.notes)


def _new_bar() -> Progress:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed streams
        return False
