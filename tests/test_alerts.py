"""Alerts, end to end against real receivers on loopback: a webhook (JSON), a Slack-compatible
incoming webhook and an SMTP server. One message per problem and channel, a reminder after
the delay, "resolved" when it clears, nothing secret in any byte, and a receiver that is down
never fails the run: its message goes at the next one."""

from __future__ import annotations

import email
import json
import shutil
import subprocess
from collections.abc import Iterator
from email.message import Message
from pathlib import Path

import pytest

from syncer.alerts.events import notifier
from syncer.config.settings import Settings, load_settings
from syncer.emulator.server import EmulatorServer
from syncer.pipeline.jobs import JobContext, paced
from syncer.pipeline.planner import siblings
from syncer.pipeline.schedule import run_due
from syncer.state.store import StateStore
from tests.conftest import TOKEN, catalog_row, write_catalog, write_config
from tests.helpers import FakeClock, Shop, checked_emulator
from tests.receivers import (
    SLACK_PATH,
    SMTP_PASSWORD,
    WEBHOOK_PATH,
    HttpReceiver,
    SmtpReceiver,
    alert_config,
)

ROWS = [catalog_row(f"A-{i}") for i in range(6)]
ZEROED = [catalog_row(f"A-{i}", stock="0") for i in range(6)]
FAST_RETRIES = "backoff_base_seconds = 0.001\nbackoff_cap_seconds = 0.005\nmax_retries = 1\n"
SECRETS = (TOKEN, WEBHOOK_PATH.strip("/"), SLACK_PATH.strip("/"), SMTP_PASSWORD,
           "json-9c1d5e", "slack-4f8a2b")


@pytest.fixture
def http() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    with SmtpReceiver() as receiver:
        yield receiver


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with checked_emulator(task_delay=0.0, sku_lines_per_hour=0) as running:
        yield running


@pytest.fixture(autouse=True)
def _secrets_in_env(monkeypatch: pytest.MonkeyPatch, http: HttpReceiver) -> None:
    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    monkeypatch.setenv("SYNCER_TEST_SLACK_URL", http.base + SLACK_PATH)
    monkeypatch.setenv("SYNCER_TEST_SMTP_PASSWORD", SMTP_PASSWORD)


def mails(smtp: SmtpReceiver) -> list[Message]:
    return [email.message_from_bytes(m) for m in smtp.messages]


def events(http: HttpReceiver, kind: str | None = None) -> list[tuple[str, str, str]]:
    """(event, status, store) of every JSON webhook delivered, of one kind or all."""
    return [(p["event"], p["status"], p["store"]) for p in http.webhooks()
            if kind is None or p["event"] == kind]


def no_secret_anywhere(http: HttpReceiver, smtp: SmtpReceiver, *texts: str) -> None:
    """Guarantee 8 for alerts: no token, webhook path or SMTP password in any byte of any
    message body, nor in what the commands printed and logged."""
    blobs = [r.body for r in http.received] + list(smtp.messages) + \
        [t.encode() for t in texts]
    for secret in SECRETS:
        for blob in blobs:
            assert secret.encode() not in blob, f"{secret} leaks: {blob[:300]!r}"


# --- the schedule's path (`syncer run` and `syncer daemon`), on a clock the test drives -----

def turn(settings: Settings, clock: FakeClock) -> list[str]:
    with StateStore.open(settings.state_database_url()) as state, \
            paced(settings, state) as limiter_for:
        state.offers.siblings = {s.name: siblings(settings, s) for s in settings.stores}
        ctx = JobContext(settings, state, f"run-{clock.seconds:.0f}", limiter_for,
                         now=clock.now)
        ctx.finished = notifier(ctx)
        return [kind for r in run_due(ctx, settings.stores) for kind in r.ran]


def test_a_safety_stop_is_told_once_reminded_after_the_delay_and_resolved(
        tmp_path: Path, server: EmulatorServer, http: HttpReceiver, smtp: SmtpReceiver,
        state_url: str) -> None:
    write_config(tmp_path, state_url=state_url, environment=server.base_url,
                 stores=(("fr", "fr-fr"),),
                 extra=alert_config(http, smtp, extra="remind_every_minutes = 60"))
    settings = load_settings(tmp_path / "syncer.toml")
    catalog = tmp_path / "catalog.csv"
    clock = FakeClock()
    write_catalog(catalog, ROWS)
    assert turn(settings, clock) == ["reconcile", "offers"]
    # The first publication confirmed whole, nothing queued: onboarding is over.
    assert events(http) == [("onboarding_finished", "opened", "fr")]

    write_catalog(catalog, ZEROED)  # a stock column all 0: the plan would zero every offer
    clock.advance(minutes=121)
    turn(settings, clock)
    assert events(http, "safety_stop") == [("safety_stop", "opened", "fr")]
    assert len(http.slack()) == 2 and len(smtp.messages) == 2
    payload = http.webhooks()[-1]
    assert "would zero 6 of 6 live offers" in payload["message"]
    assert payload["subjects"] == [] and payload["run_id"] == f"run-{clock.seconds:.0f}"
    assert "safety stop" in http.slack()[-1] and "would zero 6 of 6" in http.slack()[-1]

    clock.advance(minutes=16)  # the stock lane is due: stopped again, nothing new to say
    turn(settings, clock)
    assert events(http, "safety_stop") == [("safety_stop", "opened", "fr")]
    assert len(http.slack()) == 2 and len(smtp.messages) == 2

    clock.advance(minutes=46)  # an hour after the message: one reminder per channel
    turn(settings, clock)
    assert events(http, "safety_stop") == [("safety_stop", "opened", "fr"),
                                           ("safety_stop", "reminder", "fr")]
    assert http.slack()[-1].startswith(":hourglass: *[syncer] store fr: still: safety stop")
    assert mails(smtp)[-1]["Subject"] == "[syncer] store fr: still: safety stop: nothing " \
                                         "was sent"
    clock.advance(minutes=16)
    turn(settings, clock)
    assert len(events(http, "safety_stop")) == 2

    write_catalog(catalog, ROWS)  # fixed: the next publication passes the check
    clock.advance(minutes=16)
    turn(settings, clock)
    assert events(http, "safety_stop")[-1] == ("safety_stop", "resolved", "fr")
    assert len(http.slack()) == 4 and len(smtp.messages) == 4
    clock.advance(minutes=16)
    turn(settings, clock)
    assert len(http.webhooks()) == 4  # resolved once; onboarding is never said again
    no_secret_anywhere(http, smtp)


def test_onboarding_finishes_when_the_queue_behind_the_budget_is_drained(
        tmp_path: Path, server: EmulatorServer, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 'state.db'}",
                 environment=server.base_url, stores=(("fr", "fr-fr"),),
                 extra=alert_config(http, smtp) + "\n[limits]\nsku_lines_per_hour = 2\n")
    settings = load_settings(tmp_path / "syncer.toml")
    write_catalog(tmp_path / "catalog.csv", ROWS[:5])
    clock = FakeClock()
    turn(settings, clock)  # 2 sent, 3 queued behind the hourly budget
    clock.advance(minutes=121)
    turn(settings, clock)  # 2 more, 1 queued
    assert events(http) == []
    clock.advance(minutes=121)
    turn(settings, clock)  # the last one: the first publication is whole
    assert events(http) == [("onboarding_finished", "opened", "fr")]
    payload = http.webhooks()[0]
    assert payload["counts"]["live"] == 5
    assert "onboarding finished" in payload["message"]
    assert http.slack()[0].startswith(":tada: *[syncer] store fr: onboarding finished*")
    clock.advance(minutes=121)
    turn(settings, clock)
    assert len(http.webhooks()) == 1


# --- the command line: apply and run ---------------------------------------------------------

@pytest.fixture
def shop(tmp_path: Path, server: EmulatorServer, http: HttpReceiver, smtp: SmtpReceiver,
         state_url: str) -> Shop:
    shop = Shop(tmp_path, server, state_url, api_extra=FAST_RETRIES,
                extra=alert_config(http, smtp, extra="failing_runs = 2"))
    shop.catalog(ROWS)
    return shop


def test_apply_tells_a_safety_stop_once_however_often_it_is_run_again(
        shop: Shop, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    shop.run("apply")
    assert sorted(events(http)) == [("onboarding_finished", "opened", "de"),
                                    ("onboarding_finished", "opened", "fr")]
    shop.catalog(ZEROED)
    first = shop.run("apply", code=1)
    assert "would zero 6 of 6 live offers" in first.stderr
    assert events(http, "safety_stop") == [("safety_stop", "opened", "fr")]
    again = shop.run("apply", code=1)
    assert events(http, "safety_stop") == [("safety_stop", "opened", "fr")]
    assert len(http.slack()) == 3 and len(smtp.messages) == 3
    no_secret_anywhere(http, smtp, first.stdout, first.stderr, again.stderr)


def test_a_rejected_token_is_told_per_store_and_resolved_when_a_good_one_works(
        shop: Shop, http: HttpReceiver, smtp: SmtpReceiver,
        monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "tok-0a1b2c3d4e5f-WRONG"
    monkeypatch.setenv("SYNCER_TEST_TOKEN", wrong)
    result = shop.run("run", code=1)
    assert sorted(events(http)) == [("token_rejected", "opened", "de"),
                                    ("token_rejected", "opened", "fr")]
    payload = http.webhooks()[0]
    assert "HTTP 401" in payload["message"] and "SYNCER_TEST_TOKEN" in payload["message"]
    assert {m["Subject"] for m in mails(smtp)} == {
        "[syncer] store fr: token rejected", "[syncer] store de: token rejected"}
    shop.run("run", code=1)  # reconcile is due again (it never succeeded): still rejected
    assert len(events(http, "token_rejected")) == 2
    for blob in [r.body for r in http.received] + smtp.messages:
        assert wrong.encode() not in blob

    monkeypatch.setenv("SYNCER_TEST_TOKEN", TOKEN)
    shop.run("run")
    assert sorted(events(http, "token_rejected")) == [
        ("token_rejected", "opened", "de"), ("token_rejected", "opened", "fr"),
        ("token_rejected", "resolved", "de"), ("token_rejected", "resolved", "fr")]
    assert "accepts the token again" in http.webhooks()[-1]["message"] or \
        "accepts the token again" in http.webhooks()[-2]["message"]
    no_secret_anywhere(http, smtp, result.stderr)


def test_a_waf_block_is_told_with_its_cf_ray(shop: Shop, http: HttpReceiver,
                                             server: EmulatorServer) -> None:
    server.emulator.faults.waf_block = True
    shop.run("apply", code=1)
    blocked = [p for p in http.webhooks() if p["event"] == "blocked"]
    assert [p["store"] for p in blocked] == ["fr", "de"]
    assert "HTTP 403" in blocked[0]["message"] and "cf-ray" in blocked[0]["message"]


def test_offers_newly_quarantined_are_told_once_in_one_message_per_store(
        shop: Shop, http: HttpReceiver, smtp: SmtpReceiver, server: EmulatorServer) -> None:
    server.emulator.faults.reject_skus["A-1"] = "grade <b>not</b> allowed & more"
    server.emulator.faults.reject_skus["A-4"] = "ean unknown"
    shop.run("apply", code=3)
    shop.run("apply", code=3)
    assert events(http, "quarantined") == []
    shop.run("apply", code=3)  # the third refusal in a row: quarantined
    quarantined = [p for p in http.webhooks() if p["event"] == "quarantined"]
    assert [(p["store"], p["subjects"], p["counts"]) for p in quarantined] == [
        ("fr", ["A-1", "A-4"], {"offers": 2}), ("de", ["A-1", "A-4"], {"offers": 2})]
    assert "2 offers newly quarantined (refused 3 runs in a row" in quarantined[0]["message"]
    assert "- A-1: grade <b>not</b> allowed & more" in quarantined[0]["message"]
    slack = [t for t in http.slack() if "quarantined" in t]
    assert len(slack) == 2
    assert "A-1: grade &lt;b&gt;not&lt;/b&gt; allowed &amp; more" in slack[0]
    shop.run("apply")  # quarantined offers are not sent: nothing new to tell
    shop.run("apply")
    assert len(events(http, "quarantined")) == 2
    assert sum("quarantined" in (m["Subject"] or "") for m in mails(smtp)) == 2

    server.emulator.faults.reject_skus.clear()
    shop.run("retry", "A-1", "--store", "fr")
    shop.run("apply")
    resolved = [p for p in http.webhooks() if p["status"] == "resolved"]
    assert [(p["store"], p["subjects"]) for p in resolved] == [("fr", ["A-1"])]
    no_secret_anywhere(http, smtp)


def test_runs_failing_n_times_in_a_row_are_told_once(shop: Shop, http: HttpReceiver,
                                                     server: EmulatorServer) -> None:
    shop.run("apply")
    shop.catalog([catalog_row(f"A-{i}", price_fr="149.90", price_de="159.90") for i in range(6)])
    server.emulator.faults.outage = True
    shop.run("apply", code=1)  # Back Market down: the price updates could not be sent
    assert events(http, "failing_runs") == []
    shop.run("apply", code=1)
    failing = [p for p in http.webhooks() if p["event"] == "failing_runs"]
    assert [(p["store"], p["subjects"]) for p in failing] == [("fr", ["offers"]),
                                                             ("de", ["offers"])]
    assert "the last 2 offers runs did not do their work" in failing[0]["message"]
    shop.run("apply", code=1)
    assert len(events(http, "failing_runs")) == 2
    server.emulator.faults.outage = False
    shop.run("apply")
    assert sorted(events(http, "failing_runs"))[-2:] == [("failing_runs", "resolved", "de"),
                                                         ("failing_runs", "resolved", "fr")]


def test_a_receiver_down_never_fails_the_run_and_gets_its_message_next_time(
        shop: Shop, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    http.stop()
    result = shop.run("apply")  # exit 0: the publication went fine
    assert len(smtp.messages) == 2  # e-mail took its messages
    assert "alert not delivered" in result.stderr
    assert "127.0.0.1" in result.stderr
    no_secret_anywhere(http, smtp, result.stderr)

    http.start()
    http.status = 500  # up, but failing
    shop.run("apply")
    assert http.webhooks() == [] and http.received  # tried, refused, still pending
    http.status = 200
    shop.run("apply")
    assert sorted(events(http)) == [("onboarding_finished", "opened", "de"),
                                    ("onboarding_finished", "opened", "fr")]
    assert len(http.slack()) == 2
    assert len(smtp.messages) == 2  # e-mail was not told twice
    shop.run("apply")
    assert len(http.webhooks()) == 2


def test_alerts_test_sends_one_message_through_every_channel(
        shop: Shop, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    result = shop.run("alerts", "test")
    assert result.stdout.splitlines() == [
        "webhook (127.0.0.1) for fr, de: OK",
        "slack (127.0.0.1) for fr, de: OK",
        f"email (127.0.0.1:{smtp.port} to ops@example.com) for fr, de: OK"]
    assert events(http) == [("test", "test", "fr, de")]
    assert "alerts of stores fr, de reach this channel" in http.slack()[0]
    assert mails(smtp)[0]["Subject"] == "[syncer] store fr, de: test message"
    assert smtp.mailbox.logins == ["alerts@example.com"]

    http.stop()
    failed = shop.run("alerts", "test", "--store", "fr", code=1)
    assert "webhook (127.0.0.1) for fr: FAILED: 127.0.0.1: ConnectError" in failed.stdout
    no_secret_anywhere(http, smtp, result.stdout, failed.stdout, failed.stderr)
    http.start()


def test_a_store_can_switch_off_or_replace_the_global_channels(
        tmp_path: Path, server: EmulatorServer, http: HttpReceiver,
        smtp: SmtpReceiver) -> None:
    shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}",
                extra=alert_config(http, smtp))
    # [stores.alerts] under the last [[stores]] (de): no alerts for de at all.
    shop.config.write_text(shop.config.read_text() + "\n[stores.alerts]\nenabled = false\n")
    shop.catalog(ROWS)
    shop.run("apply")
    assert events(http) == [("onboarding_finished", "opened", "fr")]

    config = tmp_path / "other.toml"
    config.write_text(shop.config.read_text().replace(
        "[stores.alerts]\nenabled = false\n",
        "[stores.alerts]\nremind_every_minutes = 5\nevents = [\"safety_stop\"]\n"
        "[stores.alerts.webhook]\nurl = \"https://hooks.example.com/de-only\"\n"))
    settings = load_settings(config)
    fr, de = (settings.alerts_for(settings.store(name)) for name in ("fr", "de"))
    assert [n for n, _ in fr.channels()] == ["webhook", "slack", "email"]
    assert (fr.remind_every_minutes, de.remind_every_minutes) == (1440, 5)
    assert de.events == ["safety_stop"] and de.email == fr.email  # the rest is inherited
    assert de.webhook is not None and de.webhook.url is not None
    assert de.webhook.url.get_secret_value() == "https://hooks.example.com/de-only"


# --- e-mail over STARTTLS ---------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed for a cert")
def test_email_goes_over_starttls_with_a_private_ca(
        tmp_path: Path, server: EmulatorServer, http: HttpReceiver) -> None:
    cert, key = tmp_path / "relay.pem", tmp_path / "relay.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True,
                   capture_output=True)
    with SmtpReceiver(tls_cert=(cert, key)) as smtp:
        config = alert_config(http, smtp, tls="starttls").replace(
            'tls = "starttls"', f'tls = "starttls"\nca_file = "{cert}"')
        shop = Shop(tmp_path, server, f"sqlite:///{tmp_path / 'state.db'}", extra=config)
        result = shop.run("alerts", "test")
        assert result.stdout.splitlines()[-1].endswith(": OK")
        assert len(smtp.messages) == 1 and smtp.mailbox.logins == ["alerts@example.com"]
        assert SMTP_PASSWORD.encode() not in smtp.messages[0]


# --- configuration ----------------------------------------------------------------------------

def test_alert_settings_errors_name_the_file_the_key_and_what_was_expected(
        tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    from syncer.errors import ConfigError

    def load(extra: str) -> str:
        write_config(tmp_path, state_url="sqlite:///state.db", extra=extra)
        with pytest.raises(ConfigError) as caught:
            load_settings(tmp_path / "syncer.toml")
        return str(caught.value)

    message = load(alert_config(http, smtp).replace(f"port = {smtp.port}", 'port = "x"'))
    assert str(tmp_path / "syncer.toml") in message
    assert "alerts.email.port: Input should be a valid integer" in message
    message = load("[alerts.slack]\nurl = \"http://hooks.example.com/services/T/B/SECRETX\"\n")
    assert "alerts.slack: the webhook URL must use https://" in message
    assert "SECRETX" not in message
    message = load("[alerts.webhook]\nurl = \"https://a.example/x\"\nurl_env = \"X\"\n")
    assert "alerts.webhook: set exactly one of url" in message
    message = load("[alerts]\nevents = [\"safety_stop\", \"typo\"]\n")
    assert "alerts.events.1: Input should be 'safety_stop'" in message
    message = load("[alerts.email]\nhost = \"smtp.example.com\"\ntls = \"none\"\n"
                   "username = \"u\"\npassword_env = \"P\"\nsender = \"a@example.com\"\n"
                   "to = [\"b@example.com\"]\n")
    assert "would send the password to smtp.example.com in clear" in message


def test_webhook_urls_and_the_smtp_password_are_secrets_once_settings_are_read(
        tmp_path: Path, http: HttpReceiver, smtp: SmtpReceiver) -> None:
    from syncer.core.secrets import scrub

    write_config(tmp_path, state_url="sqlite:///state.db", extra=alert_config(http, smtp))
    load_settings(tmp_path / "syncer.toml")
    for secret in (http.base + SLACK_PATH, SLACK_PATH.strip("/"), WEBHOOK_PATH.strip("/"),
                   SMTP_PASSWORD):
        assert scrub(f"echo {secret} echo") == "echo <redacted> echo"
    assert json.dumps(scrub(f"POST {http.base}{SLACK_PATH}")).count("SECRET") == 0
