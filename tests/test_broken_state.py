"""A broken state database stops the run with one clear line before anything is sent.

Locked by another process, read-only (file or folder), corrupt, from a newer schema, or a
PostgreSQL server that cannot be reached: ``syncer apply`` exits 1 naming the problem and the
emulator sees no request; ``syncer plan``, which only reads, still works where it can and
otherwise fails just as clearly.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import Result
from sqlalchemy import create_engine, text

from syncer.emulator.server import EmulatorServer
from syncer.state.version import SCHEMA_VERSION
from tests.conftest import TOKEN, catalog_row
from tests.helpers import Shop

SKUS = ("A-1", "B-2", "C-3")


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)


def published_shop(folder: Path, server: EmulatorServer, state_url: str) -> Shop:
    """A shop that published A-1..C-3, whose catalog now changes every stock: the next apply
    has something to send."""
    shop = Shop(folder, server, state_url)
    shop.catalog([catalog_row(sku) for sku in SKUS])
    shop.run("apply")
    shop.catalog([catalog_row(sku, stock="2") for sku in SKUS])
    return shop


def sqlite_shop(tmp_path: Path, server: EmulatorServer, query: str = "") -> tuple[Shop, Path]:
    db = tmp_path / "state" / "syncer.db"
    return published_shop(tmp_path, server, f"sqlite:///{db}{query}"), db


def assert_stops_clearly(result: Result, *fragments: str) -> str:
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    [line] = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert line.startswith("error: "), line
    for fragment in fragments:
        assert fragment in line, line
    return line


def assert_apply_sends_nothing(shop: Shop, *fragments: str) -> str:
    before = len(shop.server.emulator.exchanges)
    line = assert_stops_clearly(shop.run("apply", code=None), *fragments)
    assert len(shop.server.emulator.exchanges) == before
    return line


def assert_plan_works_or_stops_clearly(shop: Shop, *fragments: str) -> None:
    result = shop.run("plan", code=None)
    if result.exit_code == 2:
        assert "UPDATE  A-1" in result.stdout
    else:
        assert_stops_clearly(result, *fragments)


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make a file or folder read-only for this process, root included (which ignores file
    modes: there it takes the immutable attribute)."""
    mode = path.stat().st_mode
    path.chmod(0o555 if path.is_dir() else 0o444)
    immutable = False
    try:
        if os.geteuid() == 0:
            chattr = shutil.which("chattr")
            done = chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True)
            if not done or done.returncode != 0:
                pytest.skip("running as root without `chattr +i`: nothing is read-only to root")
            immutable = True
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(mode)


@contextmanager
def write_lock_held(db: Path) -> Iterator[None]:
    """Another process holds the database's write lock (``BEGIN EXCLUSIVE``) until the end."""
    with subprocess.Popen(
            [sys.executable, "-c",
             "import sqlite3, sys\n"
             "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
             "db.execute('BEGIN EXCLUSIVE')\n"
             "print('locked', flush=True)\n"
             "sys.stdin.read()\n", str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert holder.stdout.readline().strip() == "locked"
            yield
        finally:
            holder.stdin.close()  # the holder reads to the end, exits, releases the lock
            holder.wait(timeout=10)


def test_apply_stops_while_another_process_holds_the_write_lock(
        tmp_path: Path, emulator: EmulatorServer) -> None:
    shop, db = sqlite_shop(tmp_path, emulator, "?timeout=0.5")
    with write_lock_held(db):
        started = time.monotonic()
        assert_apply_sends_nothing(shop, "is locked by another process: database is locked")
        assert time.monotonic() - started < 10  # the URL's busy timeout, not the default 30 s
        shop.run("plan", code=2)  # WAL: readers are not blocked by a writer
    shop.run("apply")  # released: the run goes through
    assert shop.live("A-1", "fr-fr")["quantity"] == 2  # type: ignore[index]


def test_apply_stops_on_a_read_only_state_file_and_plan_still_reads_it(
        tmp_path: Path, emulator: EmulatorServer) -> None:
    shop, db = sqlite_shop(tmp_path, emulator)
    with read_only(db):
        line = assert_apply_sends_nothing(shop, "is read-only", "permissions")
        assert str(db) in line
        shop.run("plan", code=2)
    assert shop.live("A-1", "fr-fr")["quantity"] == 5  # type: ignore[index]


def test_apply_stops_on_a_read_only_state_folder(tmp_path: Path,
                                                 emulator: EmulatorServer) -> None:
    shop, db = sqlite_shop(tmp_path, emulator)
    with read_only(db.parent):
        assert_apply_sends_nothing(shop, str(db))
        assert_plan_works_or_stops_clearly(shop, "folder", "readable and writable")


def test_a_state_folder_that_cannot_be_made_stops_clearly(tmp_path: Path,
                                                          emulator: EmulatorServer) -> None:
    (tmp_path / "taken").write_text("a file where the state folder should be")
    shop = Shop(tmp_path, emulator, f"sqlite:///{tmp_path / 'taken' / 'state' / 'syncer.db'}")
    shop.catalog([catalog_row("A-1")])
    assert_apply_sends_nothing(shop, "cannot create the folder of the state database")
    assert emulator.emulator.exchanges == []


@pytest.mark.parametrize("damage", ["garbage", "pages"])
def test_a_corrupt_state_stops_every_command_before_sending(
        tmp_path: Path, emulator: EmulatorServer, damage: str) -> None:
    shop, db = sqlite_shop(tmp_path, emulator)
    data = bytearray(db.read_bytes())
    keep = 0 if damage == "garbage" else 4096  # "pages": the header page survives
    noise = bytes((i * 131 + 7) % 256 for i in range(len(data) - keep))
    db.write_bytes(bytes(data[:keep]) + noise)
    detail = "file is not a database" if damage == "garbage" else "malformed"
    assert_apply_sends_nothing(shop, "is corrupt", detail, "restore it from a backup")
    for command in ("plan", "status", "errors"):
        assert_stops_clearly(shop.run(command, code=None), "is corrupt", detail)


def test_a_state_from_a_newer_schema_stops_before_sending(
        tmp_path: Path, emulator: EmulatorServer, state_url: str) -> None:
    shop = published_shop(tmp_path, emulator, state_url)
    engine = create_engine(state_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_info SET value = '99' WHERE key = 'schema_version'"))
    engine.dispose()
    message = (f"has schema version 99, newer than this syncer understands ({SCHEMA_VERSION}); "
               "upgrade")
    assert_apply_sends_nothing(shop, message)
    assert_stops_clearly(shop.run("plan", code=None), message)


def test_an_unreachable_postgresql_state_stops_before_sending(
        tmp_path: Path, emulator: EmulatorServer) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"postgresql+psycopg://syncer:pg-pass-1234@127.0.0.1:{port}/state"
    shop = Shop(tmp_path, emulator, url)
    shop.catalog([catalog_row("A-1")])
    for command in ("apply", "plan"):
        line = assert_stops_clearly(shop.run(command, code=None),
                                    f"syncer:***@127.0.0.1:{port}/state", "Connection refused")
        assert "pg-pass-1234" not in line
    assert emulator.emulator.exchanges == []

