"""The progress display of long steps: drawn on a terminal (a pseudo-terminal here), never
written to a pipe or a file, and off with --quiet (issue 16)."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncer.emulator.server import EmulatorServer
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import checked_emulator

MARKS = ("catalog rows read", "publishing fr", "reading listings of fr")


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as running:
        yield running


@pytest.fixture
def config(tmp_path: Path, server: EmulatorServer) -> Path:
    path = write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 'state.db'}",
                        environment=server.base_url, stores=(("fr", "fr-fr"),))
    write_catalog(tmp_path / "catalog.csv", [catalog_row(f"P-{i}") for i in range(40)])
    return path


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR",
                                                            "TTY_COMPATIBLE", "CI")}
    return {**env, "SYNCER_TEST_TOKEN": TOKEN, "TERM": "xterm-256color", "COLUMNS": "120"}


def on_terminal(config: Path, *args: str, stdout_piped: bool = False) -> tuple[int, str]:
    """The command with stderr (and stdout, unless ``stdout_piped``) on a pseudo-terminal:
    its exit code and what the terminal received."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "syncer", "--config", str(config),
                                *args], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL if stdout_piped else terminal,
                               stderr=terminal, env=_env())
    os.close(terminal)
    received = bytearray()
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            process.kill()
            raise AssertionError(f"{args}: no output for 60 s")
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process is done
            break
        if not chunk:
            break
        received += chunk
    os.close(controller)
    return process.wait(timeout=60), received.decode("utf-8", "replace")


def piped(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "syncer", "--config", str(config), *args],
                          capture_output=True, text=True, env=_env(), timeout=120)


def test_progress_shows_on_a_terminal_for_planning_publishing_and_reading_listings(
        config: Path, server: EmulatorServer) -> None:
    code, seen = on_terminal(config, "plan")
    assert code == 2 and "planning: catalog rows read" in seen
    code, seen = on_terminal(config, "apply")
    assert code == 0, seen
    assert "planning: catalog rows read" in seen and "publishing fr" in seen
    assert "Store fr: 40 created" in seen  # the summary is still there, after the bar
    assert len(server.emulator.listings(TOKEN)) == 40
    code, seen = on_terminal(config, "reconcile")
    assert code == 0 and "reading listings of fr" in seen
    assert TOKEN not in seen


def test_nothing_of_it_reaches_a_pipe_or_a_quiet_terminal(config: Path,
                                                         server: EmulatorServer) -> None:
    for args in (("plan",), ("apply",), ("reconcile",)):
        result = piped(config, *args)
        assert result.returncode in (0, 2), result.stderr
        for mark in MARKS:
            assert mark not in result.stdout + result.stderr
        assert "\x1b[" not in result.stdout  # no cursor or colour codes in the data
    assert len(server.emulator.listings(TOKEN)) == 40
    for args in (("--quiet", "plan"), ("--quiet", "reconcile")):
        _, seen = on_terminal(config, *args)
        for mark in MARKS:
            assert mark not in seen
    # Data piped on (`syncer plan --format json | jq`), diagnostics on a terminal: off too.
    _, seen = on_terminal(config, "plan", "--format", "json", stdout_piped=True)
    assert "catalog rows read" not in seen
