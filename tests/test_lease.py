"""The store's run lock under a short lease: refused when the renewal cannot keep it,
renewed every third of it, lost leases stop the run at once, and two applies of one store
never overlap even when Back Market answers slowly (invariant 7)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from structlog.testing import capture_logs

from syncer.config.settings import Settings, load_settings
from syncer.emulator.server import EmulatorServer
from syncer.errors import ConfigError
from syncer.pipeline.jobs import JobContext, build_limits, publish_store
from syncer.pipeline.planner import catalog_source, make_plan
from syncer.publish.outcomes import PublishResult
from syncer.state.locks import StoreLease, holder_id
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import FakeClock, Shop, checked_emulator

ROOT = Path(__file__).resolve().parents[1]
SKUS = [f"S-{i:02d}" for i in range(12)]


def test_a_lease_the_renewal_cannot_keep_is_refused_at_load(tmp_path: Path) -> None:
    write_config(tmp_path, state_url="sqlite:///a.db",
                 extra="[limits]\nlock_lease_seconds = 5\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(tmp_path / "syncer.toml")
    message = str(caught.value)
    assert "limits.lock_lease_seconds = 5 is too short: at least 270 s" in message
    assert "two attempts at api.timeout_seconds (30)" in message

    # The minimum follows the API settings: quick requests make a short lease keepable.
    write_config(tmp_path, state_url="sqlite:///a.db",
                 extra="[limits]\nlock_lease_seconds = 60\nrate_block_seconds = 5\n",
                 api_extra="timeout_seconds = 5\nbackoff_cap_seconds = 5\n")
    settings = load_settings(tmp_path / "syncer.toml")
    assert settings.min_lease_seconds() == 45
    write_config(tmp_path, state_url="sqlite:///a.db")
    assert load_settings(tmp_path / "syncer.toml").limits.lock_lease_seconds == 900


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, emulator: EmulatorServer, state_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Settings:
    """One store, a lease of 60 s (renewed every 20 s), its SKUs published once."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    write_config(tmp_path, state_url=state_url, environment=emulator.base_url,
                 stores=(("fr", "fr-fr"),),
                 extra="[limits]\nlock_lease_seconds = 60\nrate_block_seconds = 5\n",
                 api_extra="timeout_seconds = 5\nbackoff_cap_seconds = 5\n")
    settings = load_settings(tmp_path / "syncer.toml")
    write_catalog(settings.catalog_path(), [catalog_row(s) for s in SKUS])
    publish(settings, FakeClock(), lambda _n: None)
    write_catalog(settings.catalog_path(), [catalog_row(s, stock="3") for s in SKUS])
    return settings


def publish(settings: Settings, clock: FakeClock, progress: object) -> PublishResult:
    """One offer run of store fr under a lease that keeps time by ``clock``."""
    fr = settings.store("fr")
    with StateStore.open(settings.state_database_url()) as state:
        lease = StoreLease(state.db, "fr", settings.limits.lock_lease_seconds,
                           holder_id("lease-test"), clock=clock.monotonic)
        lease.acquire()
        try:
            plan = make_plan(settings, [fr], catalog_source(settings), state)
            ctx = JobContext(settings, state, "lease-test", lambda _s: build_limits(settings),
                             {"fr": lease}, progress=progress)  # type: ignore[arg-type]
            return publish_store(ctx, plan.stores[0])
        finally:
            lease.release()


def updates_sent(server: EmulatorServer) -> list[str]:
    return [e.path for e in server.emulator.exchanges
            if e.method == "POST" and e.path.startswith("/ws/listings/")]


def test_the_lease_is_renewed_every_third_of_it(settings: Settings,
                                                emulator: EmulatorServer) -> None:
    clock = FakeClock()
    with capture_logs() as logs:
        # Each confirmed update takes 7 s of the fake clock: 12 of them, 84 s.
        result = publish(settings, clock, lambda n: clock.advance(7 * n))
    assert result.counts["updated"] == 12 and result.outcome == "ok"
    assert len(updates_sent(emulator)) == 12
    renewals = [e for e in logs if e["event"] == "lock lease renewed"]
    # Due every 20 s: before the requests at 21, 42 and 63 s (a fixed minute: once).
    assert len(renewals) == 3
    assert {e["lease_seconds"] for e in renewals} == {60}


def test_a_run_whose_lease_was_taken_stops_before_its_next_request(
        settings: Settings, emulator: EmulatorServer) -> None:
    clock = FakeClock()
    engine = create_engine(settings.state_database_url())
    confirmed = []

    def progress(n: int) -> None:
        confirmed.append(n)
        if len(confirmed) == 3:  # another run takes the lock; the renewal falls due
            with engine.begin() as conn:
                conn.execute(text("UPDATE store_lock SET holder = 'other-host:1:other-run'"))
            clock.advance(20)

    try:
        result = publish(settings, clock, progress)
        with engine.connect() as conn:
            holder = conn.execute(text("SELECT holder FROM store_lock")).scalar()
    finally:
        engine.dispose()
    assert result.outcome == "stopped"
    assert result.stopped == "store fr: lost the run lock (lease expired and taken)"
    assert result.counts["updated"] == 3
    assert len(updates_sent(emulator)) == 3  # not one request after the lease was lost
    assert holder == "other-host:1:other-run"  # and the other run's lock is left alone


# --- two applies of one store, in two processes, against a slow Back Market ---------------

LEASE = 8.0  # renewed every 2.7 s; each request ends within 2.7 s
SLOW_SECONDS = 0.3  # per request: 50 single updates keep the first run busy ~15 s
OFFERS = [f"O-{i:02d}" for i in range(50)]


def start_apply(config: Path, command: str = "apply") -> subprocess.Popen[str]:
    env = {**os.environ, "SYNCER_TEST_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "syncer", "--config", str(config),
                             "--log-format", "json", command],
                            cwd=config.parent, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def lock_taken_at(url: str, timeout: float = 20.0) -> float:
    """The monotonic time at which the store's lock row appeared."""
    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                if conn.execute(text("SELECT count(*) FROM store_lock")).scalar():
                    return time.monotonic()
            time.sleep(0.05)
    finally:
        engine.dispose()
    pytest.fail("the first run never took its lock")


@pytest.mark.parametrize("command", ["apply", "run"])
def test_two_runs_of_one_store_never_overlap_under_a_short_lease(
        tmp_path: Path, emulator: EmulatorServer, monkeypatch: pytest.MonkeyPatch,
        command: str) -> None:
    """`syncer apply`, and `syncer run` (what cron and the daemon run): the first renews its
    lease while it sends; the second is refused (run: skips the store) meanwhile."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    shop = Shop(tmp_path, emulator, url, stores=(("fr", "fr-fr"),),  # type: ignore[arg-type]
                extra=f"[limits]\nlock_lease_seconds = {LEASE}\nrate_block_seconds = 0.1\n",
                api_extra="timeout_seconds = 1.2\nbackoff_cap_seconds = 0.1\n")
    shop.catalog([catalog_row(s) for s in OFFERS])
    shop.run("apply")
    if command == "run":
        engine = create_engine(url)
        with engine.begin() as conn:  # as if no job had run yet: the offers job is due
            conn.execute(text("DELETE FROM run_log"))
        engine.dispose()
    shop.catalog([catalog_row(s, stock="2") for s in OFFERS])
    sent_before = len(emulator.emulator.exchanges)
    emulator.emulator.faults.share_slow = 1.0
    emulator.emulator.faults.slow_seconds = SLOW_SECONDS

    first = start_apply(shop.config, command)
    try:
        taken = lock_taken_at(url)
        # Past the lease: a lease that was not renewed in time has run out by now.
        time.sleep(max(0.0, taken + LEASE + 1.5 - time.monotonic()))
        assert first.poll() is None, "the first run had already ended: nothing overlapped"
        second = start_apply(shop.config, command)
        out, err = second.communicate(timeout=60)
        still_sending = first.poll() is None
        first_out, first_err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 1, (out, err)
    assert "error: store 'fr' is locked by another run" in err, (out, err)
    if command == "run":
        assert "(skipped)" in err, err
    assert still_sending, "the second run was refused only after the first had ended"
    assert first.returncode == 0, (first_out, first_err)
    if command == "apply":
        assert "Store fr: 0 created, 50 updated" in first_out
    updates = Counter(e.path for e in emulator.emulator.exchanges[sent_before:]
                      if e.method == "POST" and e.path.startswith("/ws/listings/"))
    assert len(updates) == 50
    assert set(updates.values()) == {1}, "an update was sent twice"
