"""Delivery of alerts: a JSON webhook, a Slack-compatible incoming webhook, e-mail (SMTP).

An ``Alert`` is a value; each channel renders it its own way and sends it, or raises
``NotDelivered`` with a reason that names the channel's host, never its URL: an incoming
webhook's path is its credential. Every text that leaves goes through ``scrub`` first.
"""

from __future__ import annotations

import json
import smtplib
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Final, Protocol
from urllib.parse import urlsplit

import httpx

from syncer import __version__
from syncer.config.alerts import EmailChannel, check_webhook_url
from syncer.core.secrets import scrub, scrub_value

TITLES: Final = {
    "safety_stop": "safety stop: nothing was sent",
    "token_rejected": "token rejected",
    "blocked": "blocked by Back Market's firewall",
    "quarantined": "offers quarantined",
    "failing_runs": "runs failing in a row",
    "onboarding_finished": "onboarding finished",
    "test": "test message",
}
_MARKS: Final = {"opened": ":rotating_light:", "reminder": ":hourglass:",
                 "resolved": ":white_check_mark:", "test": ":wave:"}
USER_AGENT: Final = f"backmarket-syncer/{__version__} (alerts)"


class NotDelivered(Exception):
    """A channel did not take the message: down, refused, timed out. Never fatal."""


@dataclass(frozen=True)
class Alert:
    """One message about one problem (or one group of offers) of one store."""

    kind: str  # an AlertKind, or "test"
    status: str  # "opened", "reminder", "resolved" or "test"
    store: str
    message: str
    run_id: str
    time: datetime
    since: datetime | None = None  # when the problem was first seen
    subjects: tuple[str, ...] = ()  # SKUs, a job kind; empty: the store itself
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def title(self) -> str:
        title = TITLES.get(self.kind, self.kind.replace("_", " "))
        if self.kind == "onboarding_finished" or self.status == "test":
            return title
        return {"reminder": f"still: {title}", "resolved": f"resolved: {title}"}.get(
            self.status, title)

    def payload(self) -> dict[str, Any]:
        """The webhook's JSON body (documented in the README, "Alerts")."""
        payload: dict[str, Any] = scrub_value({
            "source": "backmarket-syncer", "event": self.kind, "status": self.status,
            "store": self.store, "title": self.title, "subjects": list(self.subjects),
            "message": self.message, "counts": dict(self.counts), "run_id": self.run_id,
            "time": _iso(self.time), "since": _iso(self.since) if self.since else None,
        })
        return payload

    def text(self) -> str:
        """Plain text: the e-mail's body."""
        lines = [self.message, "", f"Store: {self.store}", f"Event: {self.kind} "
                 f"({self.status})", f"Run: {self.run_id}", f"Time: {_iso(self.time)}"]
        if self.since:
            lines.append(f"First seen: {_iso(self.since)}")
        if self.counts:
            lines.append("Counts: " + ", ".join(f"{k} {v}" for k, v in sorted(
                self.counts.items())))
        return scrub("\n".join(lines) + "\n")

    def slack_text(self) -> str:
        """Slack's ``text``: a bold first line, the message, then where and when."""
        mark = ":tada:" if self.kind == "onboarding_finished" else _MARKS.get(self.status, "")
        when = self.time.strftime("%Y-%m-%d %H:%M UTC")
        head = f"{mark} *[syncer] store {_slack(self.store)}: {_slack(self.title)}*".strip()
        return scrub(f"{head}\n{_slack(self.message)}\n_run {self.run_id} · {when}_")


def _slack(text: str) -> str:
    """Slack's three control characters escaped, so that a SKU or a Back Market message
    cannot turn into a link or a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _iso(value: datetime) -> str:
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


class Channel(Protocol):
    name: str

    def where(self) -> str:
        """Where messages go, without any secret: a host, an address."""

    def send(self, alert: Alert) -> None:
        """Deliver or raise ``NotDelivered``."""


class WebhookSender:
    """POSTs a JSON body: the payload ("webhook") or ``{"text": ...}`` ("slack")."""

    def __init__(self, name: str, url: str, timeout: float,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.name = name
        self.url = check_webhook_url(url)
        self.timeout = timeout
        self.transport = transport

    def where(self) -> str:
        return urlsplit(self.url).hostname or "?"

    def body(self, alert: Alert) -> bytes:
        data = {"text": alert.slack_text()} if self.name == "slack" else alert.payload()
        return scrub(json.dumps(data, ensure_ascii=False)).encode()

    def send(self, alert: Alert) -> None:
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport,
                              follow_redirects=False) as client:
                response = client.post(self.url, content=self.body(alert), headers={
                    "Content-Type": "application/json", "User-Agent": USER_AGENT})
        except httpx.TimeoutException:
            raise NotDelivered(f"{self.where()}: no answer within {self.timeout:g} s") from None
        except httpx.HTTPError as exc:  # the text of some httpx errors quotes the URL
            raise NotDelivered(f"{self.where()}: {type(exc).__name__}: "
                               f"{scrub(str(exc)).replace(self.url, '<url>')}") from None
        if not 200 <= response.status_code < 300:
            raise NotDelivered(f"{self.where()}: HTTP {response.status_code} "
                               f"{scrub(response.text[:200]).strip()}".rstrip())


class EmailSender:
    """Plain-text mail through SMTP: STARTTLS, SMTPS or (loopback) plain."""

    name = "email"

    def __init__(self, settings: EmailChannel, password: str | None) -> None:
        self.settings = settings
        self.password = password

    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.smtp_port} to " + \
            ", ".join(self.settings.to)

    def message(self, alert: Alert) -> EmailMessage:
        mail = EmailMessage()
        mail["Subject"] = scrub(f"{self.settings.subject_prefix} store {alert.store}: "
                                f"{alert.title}".strip())
        mail["From"] = self.settings.sender
        mail["To"] = ", ".join(self.settings.to)
        mail["Date"] = formatdate(alert.time.timestamp(), usegmt=True)
        mail["Message-ID"] = make_msgid(domain=self.settings.sender.rsplit("@", 1)[1])
        mail["X-Syncer-Event"] = f"{alert.kind}; status={alert.status}; store={alert.store}"
        mail.set_content(alert.text())
        return mail

    def send(self, alert: Alert) -> None:
        s = self.settings
        context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
        try:
            smtp: smtplib.SMTP
            if s.tls == "ssl":
                smtp = smtplib.SMTP_SSL(s.host, s.smtp_port, timeout=s.timeout_seconds,
                                        context=context)
            else:
                smtp = smtplib.SMTP(s.host, s.smtp_port, timeout=s.timeout_seconds)
            with smtp:
                if s.tls == "starttls":
                    smtp.starttls(context=context)
                if s.username and self.password:
                    smtp.login(s.username, self.password)
                smtp.send_message(self.message(alert))
        except (smtplib.SMTPException, OSError) as exc:
            raise NotDelivered(f"{s.host}:{s.smtp_port}: {type(exc).__name__}: "
                               f"{scrub(str(exc))}") from None
