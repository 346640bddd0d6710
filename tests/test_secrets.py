"""Invariant 9: a known API token appears in no output, log line, report, state row, saved
file or traceback, whatever the command and however the run ends.

One shop goes through plan (every format, and a saved plan), apply (with offers Back Market
refuses, one by a message that echoes the token back), errors, status, check, reconcile, an
orders pull with its export files, a run that crashes deep inside, and runs against an API
that rejects the token (401), all with JSON debug logs. Then every output, every row of every
state table and every file of the shop's folder are searched for the token.
"""

from __future__ import annotations

import io
import traceback
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from click.testing import Result
from sqlalchemy import create_engine, inspect, text

from syncer.config.alerts import register_webhook_url
from syncer.config.settings import load_settings
from syncer.core import logs, secrets
from syncer.emulator.config import EmulatorConfig
from syncer.emulator.server import EmulatorServer
from syncer.errors import ConfigError, OfferError, StateError
from tests.conftest import TOKEN, catalog_row, write_config
from tests.helpers import Shop

# The token and a fragment of it: a token cut short (a clipped message) still leaks.
NEEDLES = (TOKEN, TOKEN[4:16], TOKEN.encode().hex())


@pytest.fixture
def other_account() -> Iterator[EmulatorServer]:
    """Back Market knowing another token only: ours gets 401."""
    with EmulatorServer(EmulatorConfig(tokens=("someone-else",), task_delay=0.01)) as server:
        yield server


class Transcript:
    """Everything the commands printed, and the tracebacks of those that crashed."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop
        self.texts: list[tuple[str, str]] = []  # (where, what was printed)

    def run(self, *args: str, code: int | None = 0) -> Result:
        result = self.shop.run("--verbose", *args, code=code)
        command = " ".join(args)
        self.texts += [(f"stdout of {command}", result.stdout),
                       (f"stderr of {command}", result.stderr)]
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            self.texts.append((f"traceback of {command}",
                               "".join(traceback.format_exception(result.exception))))
        return result


def assert_no_token(where: str, content: str | bytes) -> None:
    data = content if isinstance(content, bytes) else content.encode("utf-8", "replace")
    leaks = [needle for needle in NEEDLES if needle.encode() in data]
    assert not leaks, f"the token leaks in {where}"


def state_rows(url: str) -> Iterator[tuple[str, str]]:
    """(table, repr of a row) of every row of every table of the state database."""
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                    yield table, repr(tuple(row))
    finally:
        engine.dispose()


def test_the_token_appears_in_no_output_log_state_file_or_traceback(
        tmp_path: Path, emulator: EmulatorServer, other_account: EmulatorServer,
        state_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, emulator, state_url,
                api_extra="backoff_base_seconds = 0.001\nbackoff_cap_seconds = 0.01\n",
                extra="[limits]\nrate_block_seconds = 0.01\n")
    out = Transcript(shop)
    emulator.emulator.faults.reject_skus["C-3"] = "unknown product for this grade"
    emulator.emulator.faults.echo_auth_skus.append("E-5")  # refused, quoting our token
    shop.catalog([catalog_row("A-1"), catalog_row("B-2"), catalog_row("C-3"),
                  catalog_row("E-5"), catalog_row("BAD", ean="123")])

    for fmt in ("text", "markdown", "json"):
        out.run("plan", "--format", fmt, code=2)
    out.run("plan", "--format", "json", "--out", str(tmp_path / "saved-plan.json"), code=2)
    out.run("apply", "--plan", str(tmp_path / "saved-plan.json"), code=3)
    shop.catalog([catalog_row("A-1", stock="3"), catalog_row("B-2"), catalog_row("C-3")])
    out.run("apply", code=3)
    for fmt in ("text", "json", "csv"):
        out.run("errors", "--format", fmt)
    for fmt in ("text", "json"):
        out.run("status", "--format", fmt)
    out.run("check")
    emulator.emulator.sell(TOKEN, "A-1", 1)  # drift for reconcile to find
    out.run("reconcile", code=2)
    emulator.emulator.create_order(TOKEN, [{"sku": "A-1", "quantity": 1}], country="fr-fr")
    out.run("orders", "pull")
    assert list((tmp_path / "state" / "orders").glob("*.csv"))

    # Retries: 429s, 5xx and dropped connections, each logged as it is retried.
    faults = emulator.emulator.faults
    faults.share_429, faults.share_5xx, faults.share_drop = 0.3, 0.3, 0.2
    for stock in ("7", "8", "9"):
        shop.catalog([catalog_row("A-1", stock=stock), catalog_row("B-2", stock=stock),
                      catalog_row("C-3")])
        out.run("apply", code=None)
        out.run("reconcile", code=None)
    faults.share_429 = faults.share_5xx = faults.share_drop = 0.0
    assert any('"event": "retrying"' in str(content) for _, content in out.texts)

    # A crash deep inside a run, after the batch went out.
    def broken(*_args: object) -> dict[str, object]:
        raise RuntimeError("task result in an unexpected shape")

    monkeypatch.setattr("syncer.publish.batches.task_outcomes", broken)
    shop.catalog([catalog_row("A-1", stock="1"), catalog_row("B-2"), catalog_row("C-3"),
                  catalog_row("D-4")])
    crashed = out.run("apply", code=None)
    assert isinstance(crashed.exception, RuntimeError), crashed.exception
    monkeypatch.undo()
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)

    # Back Market refuses the token.
    wrong = Shop(tmp_path, other_account, state_url)
    for args in (("apply",), ("check",), ("orders", "pull"), ("reconcile",)):
        result = out.run(*args, code=1)
        assert "401" in result.output + result.stderr
    out.run("status")
    assert wrong.config == shop.config

    assert any(where.startswith("traceback of apply") for where, _ in out.texts)
    for where, content in out.texts:
        assert_no_token(where, content)
    rows = list(state_rows(state_url))
    assert {table for table, _ in rows} >= {"offer_snapshot", "run_log", "order_record"}
    for table, row in rows:
        assert_no_token(f"state table {table}", row)
    saved = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "saved-plan.json" for path in saved)
    for path in saved:
        assert_no_token(str(path), path.read_bytes())


def test_a_log_field_named_like_a_secret_is_redacted_whatever_logs_it() -> None:
    """The last line of defence: a log call that passes a token, a password or headers
    (a future bug) prints "<redacted>" instead, in the JSON and the console formats."""
    for fmt in ("json", "console"):
        stream = io.StringIO()
        logs.configure(fmt, stream=stream)
        structlog.get_logger("syncer.test").warning(
            "about to send", Token=TOKEN, authorization=f"Basic {TOKEN}",
            password=TOKEN, headers={"Authorization": f"Basic {TOKEN}"}, store="fr")
        printed = stream.getvalue()
        assert "about to send" in printed and "fr" in printed
        assert printed.count("<redacted>") == 4, printed
        assert_no_token(f"a {fmt} log line", printed)
        # A credential nobody registered (a password typed into a log call) is dropped by
        # the name of its field.
        stream = io.StringIO()
        logs.configure(fmt, stream=stream)
        structlog.get_logger("syncer.test").warning("connecting", password="hunter2-unknown",
                                                    authorization="Bearer zz-unknown")
        assert "hunter2-unknown" not in stream.getvalue()
        assert "zz-unknown" not in stream.getvalue()
    logs.configure("json", stream=io.StringIO())


def test_a_token_echoed_back_by_back_market_is_redacted_everywhere(
        tmp_path: Path, emulator: EmulatorServer, state_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy or WAF page that quotes the request's Authorization header in its refusal:
    the token comes back inside Back Market's own message, on a batch row (a create) and on
    a single-listing update (a stock change). It reaches no output, log, state row, report
    or saved plan: only "<redacted>" does."""
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop = Shop(tmp_path, emulator, state_url)
    out = Transcript(shop)
    admin = httpx.post(emulator.base_url + "/_emulator/faults",
                       json={"echo_auth_skus": ["B-2", "C-3"]})
    assert admin.status_code == 200, admin.text
    shop.catalog([catalog_row("A-1"), catalog_row("C-3")])
    out.run("apply", code=3)  # C-3's create refused with the echo, on its batch row
    emulator.emulator.faults.echo_auth_skus.remove("B-2")
    shop.catalog([catalog_row("A-1"), catalog_row("B-2"), catalog_row("C-3")])
    out.run("apply", code=3)
    emulator.emulator.faults.echo_auth_skus.append("B-2")
    shop.catalog([catalog_row("A-1"), catalog_row("B-2", stock="2"), catalog_row("C-3")])
    out.run("apply", code=3)  # B-2's stock change refused with the echo, in real time
    # Back Market did echo it: in a task's result (GET) and a single update's answer (POST)
    echoed = {e.method for e in emulator.emulator.exchanges if TOKEN in str(e.response)}
    assert echoed == {"GET", "POST"}, echoed
    for fmt in ("text", "json", "csv"):
        out.run("errors", "--format", fmt)
    for fmt in ("text", "json"):
        out.run("status", "--format", fmt)
    for fmt in ("text", "markdown", "json"):
        out.run("plan", "--format", fmt, code=2)
    out.run("plan", "--format", "json", "--out", str(tmp_path / "saved-plan.json"), code=2)

    errors_text = out.texts[[w for w, _ in out.texts].index("stdout of errors --format text")][1]
    assert "B-2" in errors_text and "C-3" in errors_text
    assert errors_text.count("Authorization: Basic <redacted>") == 4, errors_text  # 2 stores
    for where, content in out.texts:
        assert_no_token(where, content)
    for table, row in state_rows(state_url):
        assert_no_token(f"state table {table}", row)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert_no_token(str(path), path.read_bytes())


def test_a_known_secret_is_scrubbed_from_log_values_and_error_messages() -> None:
    """Wherever a secret sits in a log event (the message, a nested value, a traceback) or an
    error's message, code or request id, it is replaced by "<redacted>"."""
    secrets.register(TOKEN)
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    try:
        raise OfferError(f"refused: Authorization: Basic {TOKEN}", status=400,
                         code=f"x-{TOKEN}", request_id=TOKEN)
    except OfferError as exc:
        error = exc
        structlog.get_logger("syncer.test").error(
            f"echo {TOKEN}", detail={"page": [f"Basic {TOKEN}"]}, error=exc, exc_info=True)
    logs.configure("json", stream=io.StringIO())
    printed = stream.getvalue()
    assert "echo <redacted>" in printed and "Basic <redacted>" in printed
    assert_no_token("a JSON log line", printed)
    assert_no_token("an error", f"{error} {error.message} {error.code} {error.request_id}")
    assert_no_token("a raised error", ConfigError(f"bad {TOKEN}").args[0])


def test_a_webhook_url_makes_its_token_like_parts_secret_not_the_words_of_its_path(
        tmp_path: Path) -> None:
    slack = "https://hooks.example.com/alerts/T0ABC123/B0DEF456/abcdefghijklmnopqrstuvwx"
    webhook = "https://ops:pw-7731@hooks.example.com/hooks/notify"
    write_config(tmp_path, state_url="sqlite:///state.db",
                 extra=f'[alerts.slack]\nurl = "{slack}"\n[alerts.webhook]\nurl = "{webhook}"\n')
    load_settings(tmp_path / "syncer.toml")
    register_webhook_url("https://hooks.example.com/relay?key=q1w2e3r4t5&room=ops")
    for secret in (slack, "T0ABC123", "B0DEF456", "abcdefghijklmnopqrstuvwx",
                   "alerts/T0ABC123/B0DEF456/abcdefghijklmnopqrstuvwx",
                   webhook, "pw-7731", "ops:pw-7731", "q1w2e3r4t5"):
        assert secrets.scrub(f"echo {secret} echo") == "echo <redacted> echo", secret
    assert secrets.scrub("POST /alerts/T0ABC123/B0DEF456/x") == \
        "POST /alerts/<redacted>/<redacted>/x"
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    structlog.get_logger("syncer.test").info("alerts sent", channel="alerts", path="hooks/notify")
    logs.configure("json", stream=io.StringIO())
    printed = stream.getvalue()
    assert '"alerts sent"' in printed and '"channel": "alerts"' in printed
    assert '"path": "hooks/notify"' in printed and "<redacted>" not in printed


def test_database_passwords_of_the_settings_are_scrubbed_as_written_and_decoded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the settings makes their database passwords known: the state's and the
    catalog's, as the URL writes them (percent-encoded) and as a driver would quote them."""
    monkeypatch.setenv("SYNCER_CATALOG__URL", "postgresql://shop:cat%2Fpass-77@db/erp")
    monkeypatch.setenv("SYNCER_CATALOG__TABLE", "offers")
    config = write_config(tmp_path, state_url="postgresql://u:state-pass-88@db/state")
    (tmp_path / "syncer.toml").write_text(
        config.read_text(encoding="utf-8").replace('path = "catalog.csv"', ""),
        encoding="utf-8")
    load_settings(config)
    for password in ("state-pass-88", "cat/pass-77", "cat%2Fpass-77"):
        error = StateError(f"connection failed: password {password!r} refused")
        assert password not in str(error) and "<redacted>" in str(error), error
