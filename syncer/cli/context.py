"""What every command is given and gives back: the global options and the settings
(``Context``), domain errors as one line, the exit codes, the run id, the stores it works on.

Exit codes: 0 success (``plan``: nothing to send), 1 error, 2 ``plan`` has changes to send, 3
``apply`` finished but some offers were rejected by Back Market (1 when some could not be sent
because Back Market could not be reached: the run did not do its job), 4 ``plan
--fail-on-rejections N`` found more than N rejected catalog rows.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from syncer.errors import ConfigError, SyncerError

# The engine (config, state database, client, planner) is imported by the commands that use
# it: `syncer --help` and a small `plan` must not pay for SQLAlchemy, pydantic and the rest.
if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

    from syncer.config.settings import Settings
    from syncer.config.stores import StoreSettings
    from syncer.publish.outcomes import PublishResult

EXIT_ERROR = 1
EXIT_CHANGES = 2
EXIT_PARTIAL = 3
EXIT_REJECTIONS = 4

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """The global options, handed to every command."""

    def __init__(self, config: Path | None, quiet: bool) -> None:
        self.config = config
        self.quiet = quiet

    def settings(self) -> Settings:
        from syncer.config.settings import load_settings

        return load_settings(self.config)


def handle_errors(func: F) -> F:
    """Domain errors become one clear line on stderr and exit code 1."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SyncerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def log() -> FilteringBoundLogger:
    import structlog

    return structlog.get_logger("syncer")  # type: ignore[no-any-return]


def new_run_id() -> str:
    """A run id, bound to every log line of the command from now on."""
    import structlog

    run_id = uuid.uuid4().hex[:12]
    structlog.contextvars.bind_contextvars(run_id=run_id)
    return run_id


def configured_stores(settings: Settings, name: str | None) -> list[StoreSettings]:
    """The store named (an unknown name is an error), or every configured store, enabled or
    not: for the commands that read or test what a store has rather than publish it."""
    stores = [settings.store(name)] if name is not None else settings.stores
    if not stores:
        raise ConfigError("no store is configured ([[stores]] in the TOML file)")
    return stores


def publish_exit_code(results: list[PublishResult]) -> int:
    """The exit code of the stores' publications: 1 when one stopped (not interrupted), could
    not reach Back Market, or lost the answer to a batch (its offers may have landed: the next
    run checks), 3 when Back Market refused some offers, else 0."""
    if any(r.stopped and not r.interrupted for r in results):
        return EXIT_ERROR
    if any(r.counts["unreachable"] or r.counts["unknown"] for r in results):
        return EXIT_ERROR  # an outage (or a lost answer) is not "refused by Back Market"
    if any(r.counts["failed"] for r in results):
        return EXIT_PARTIAL
    return 0


# --- options several commands take ------------------------------------------------------------

def results_option() -> Callable[[F], F]:
    """``--results FILE``: the run-results JSON of apply and run."""
    return click.option(
        "--results", "results_file", type=click.Path(path_type=Path, dir_okay=False),
        help="Also write a run-results JSON file: per offer the action, the outcome, "
             "Back Market's request id and timing; per store the counts. Its folders are "
             "made if missing.")


def store_option(help: str = "This store only (default: every enabled store).",
                 ) -> Callable[[F], F]:
    return click.option("--store", help=help)


def catalog_option(help: str = "Catalog file to use instead of the configured one.",
                   ) -> Callable[[F], F]:
    return click.option("--catalog", type=click.Path(path_type=Path, dir_okay=False), help=help)


def format_option(*choices: str, help: str = "Text for people, JSON for programs.",
                  ) -> Callable[[F], F]:
    return click.option("--format", "fmt", type=click.Choice(list(choices)), default=choices[0],
                        show_default=True, help=help)
