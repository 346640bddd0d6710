"""Crash at any instant: a publication is killed (SIGKILL, no cleanup) at 50 chosen points;
the next run must converge. After each kill and recovery: every valid offer is live with the
catalog's values (no lost update), each new offer's batch row reached Back Market once (no
duplicate, no blind re-send of a batch that may have landed), no zero was ever sent for an
offer the catalog still has (no wrong zero), and every request and answer follows Back
Market's published spec.

The publication runs in a forked child (no interpreter start-up per case) against the
emulator served by this process; the child arms one crash point and dies on it.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from syncer.cli.main import cli
from syncer.core import crashpoints
from syncer.emulator.config import EmulatorConfig
from syncer.emulator.server import EmulatorServer
from tests.conftest import TOKEN, catalog_row, write_config
from tests.contract import check_exchange
from tests.helpers import Shop, assert_emulator_matches_catalog

V1 = [catalog_row(f"K-{i:02d}", price_fr=f"{100 + i}.00", price_de=f"{200 + i}.00", stock="5")
      for i in range(8)]
V2 = [
    *(catalog_row(f"K-{i:02d}", price_fr=f"{150 + i}.00", price_de=f"{200 + i}.00", stock="5")
      for i in range(3)),                                    # price changes (fr)
    catalog_row("K-03", price_fr="103.00", price_de="299.00", stock="5"),   # price (de)
    *(catalog_row(f"K-{i:02d}", price_fr=f"{100 + i}.00", price_de=f"{200 + i}.00",
                  stock="1") for i in (4, 5)),               # stock changes (global)
    # K-06 and K-07 are gone: zeros
    *(catalog_row(f"N-{i}") for i in range(5)),              # new offers, batches of 2
]
CASES = [
    *((point, hit) for point in ("single:before-request", "single:after-request")
      for hit in range(1, 9)),
    *((point, hit) for point in ("batch:before-post", "batch:after-post",
                                 "batch:after-task-id", "batch:before-acks")
      for hit in range(1, 7)),
    *(("acks:before-siblings", hit) for hit in range(1, 11)),
]


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorConfig(tokens=(TOKEN,), task_delay=0.0,
                                       sku_lines_per_hour=0)) as running:
        yield running


@pytest.fixture(scope="module")
def published(server: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[Path, dict]:  # type: ignore[type-arg]
    """The scene every case starts from: V1 published (state file, emulator model)."""
    folder = tmp_path_factory.mktemp("published")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SYNCER_TEST_TOKEN", TOKEN)
        shop = Shop(folder, server, f"sqlite:///{folder / 'state.db'}")
        shop.catalog(V1)
        shop.run("apply")
    for exchange in server.emulator.exchanges:
        check_exchange(exchange)
    return folder / "state.db", server.emulator.save_point()


def kill_run(config: Path, point: str, hit: int) -> int:
    """`syncer apply` in a forked child armed to die at the point; returns its exit status."""
    pid = os.fork()
    if pid == 0:  # the child
        code = 70
        try:
            crashpoints.arm(point, hit)
            result = CliRunner().invoke(cli, ["--config", str(config), "--quiet", "apply"])
            code = result.exit_code
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return status


def test_every_crash_point_of_the_code_is_a_kill_point_here() -> None:
    """The cases below kill at 50 instants or more, over every crash point the package
    calls: one added to the code (or misspelt there, so that it never fires) fails this."""
    called = {match for path in Path(crashpoints.__file__).parents[1].rglob("*.py")
              for match in re.findall(r'crashpoint\("([^"]+)"\)', path.read_text())}
    assert called == set(crashpoints.POINTS) == {point for point, _ in CASES}
    assert len(CASES) >= 50


@pytest.mark.parametrize(("point", "hit"), CASES, ids=[f"{p}#{h}" for p, h in CASES])
def test_publication_killed_at_any_point_converges_on_the_next_run(
        point: str, hit: int, tmp_path: Path, server: EmulatorServer,
        published: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[type-arg]
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    state, scene = published
    for suffix in ("", "-wal", "-shm"):  # the database and its write-ahead log, if any
        if Path(f"{state}{suffix}").exists():
            shutil.copy(f"{state}{suffix}", tmp_path / f"state.db{suffix}")
    server.emulator.restore(scene)
    shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}")
    catalog = shop.catalog(V2)
    (tmp_path / "crash").mkdir()
    small_batches = write_config(tmp_path / "crash", state_url=f"sqlite:///{tmp_path}/state.db",
                                 environment=server.base_url, catalog=str(catalog),
                                 api_extra="batch_rows = 2\n",
                                 extra="[limits]\nmax_zero_share = 0.5\n")
    before = len(server.emulator.exchanges)

    status = kill_run(small_batches, point, hit)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
        f"the run was not killed at {point} #{hit} (exit status {status})"

    for _ in range(3):  # the next runs converge
        CliRunner().invoke(cli, ["--config", str(small_batches), "--quiet", "apply"])
        if shop.plan_json()["changes"] == []:
            break
    assert shop.plan_json()["changes"] == []
    assert assert_emulator_matches_catalog(shop, catalog) == 2 * len(V2)  # no lost update
    # V2's batch rows are its new offers, one per store: each reached Back Market once,
    # whatever the kill left behind (a re-sent row is answered "updated": only the rows
    # received show it).
    received = Counter((row.locale, row.sku) for row in server.emulator.batch_rows)
    assert received == Counter((locale, f"N-{i}") for locale in ("fr-fr", "de-de")
                               for i in range(5))  # no duplicate
    still_offered = {row.split(";")[0] for row in V2}
    wrong_zeros = [e for e in server.emulator.exchanges[before:]
                   if e.method == "POST" and isinstance(e.request, dict)
                   and e.request.get("quantity") == 0
                   and next((listing["sku"] for listing in server.emulator.listings(TOKEN)
                             if e.path.endswith(listing["id"])), "") in still_offered]
    assert wrong_zeros == []
    for exchange in server.emulator.exchanges:  # the killed run's and the recovery's
        check_exchange(exchange)
