"""``[alerts]``: who is told, and how, when a run needs a person (see ``syncer.alerts.events``).

A global ``[alerts]`` section, and per store an ``[stores.alerts]`` table written under that
store's ``[[stores]]``: each key it sets replaces the global one for that store (a channel
table replaces the global channel whole). Channel addresses and the SMTP password are
secrets: an incoming webhook's URL is its credential (Slack's are), so each can be named by
an environment variable (``url_env``, ``password_env``, read from the environment or the
``.env`` beside the TOML file as tokens are) and every value is registered with
``syncer.core.secrets`` when the settings are read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from syncer.config.sections import Section

AlertKind = Literal["safety_stop", "token_rejected", "blocked", "quarantined", "failing_runs",
                    "onboarding_finished"]
ALERT_KINDS: Final[tuple[AlertKind, ...]] = (
    "safety_stop", "token_rejected", "blocked", "quarantined", "failing_runs",
    "onboarding_finished")
CHANNELS: Final = ("webhook", "slack", "email")
_LOOPBACK: Final = ("127.0.0.1", "localhost", "::1")
# A path segment this long is a credential whatever its characters (an 18-digit id, a hash).
TOKEN_LENGTH: Final = 16
_ADDRESS: Final = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+")


def check_webhook_url(url: str) -> str:
    """The URL stripped, or ValueError. The message never quotes the URL: it is a secret."""
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("the webhook URL is not an http(s) address such as "
                         "https://hooks.example.com/services/...")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise ValueError("the webhook URL must use https:// (plain http only on loopback): "
                         "its path is a credential")
    return url


class WebhookChannel(Section):
    """A JSON POST (``[alerts.webhook]``) or a Slack-compatible incoming webhook
    (``[alerts.slack]``, the body ``{"text": ...}``)."""

    enabled: bool = True
    # Exactly one: the URL itself, or the environment variable (or .env key) holding it.
    url: SecretStr | None = None
    url_env: str | None = None
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannel:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("set exactly one of url (the webhook's address, a secret) or "
                             "url_env (the environment variable that holds it)")
        if self.url is not None:
            check_webhook_url(self.url.get_secret_value())
        return self


class EmailChannel(Section):
    """``[alerts.email]``: plain-text mail through an SMTP relay."""

    enabled: bool = True
    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535)  # None: 587 (starttls), 465 (ssl), 25
    # "starttls" (upgrade a plain connection), "ssl" (SMTPS from the start) or "none"
    # (loopback relays only when a password is sent: it would cross the network in clear).
    tls: Literal["starttls", "ssl", "none"] = "starttls"
    ca_file: Path | None = None  # a private CA to trust for the relay's certificate
    username: str | None = None
    password_env: str | None = None  # the environment variable (or .env key) holding it
    sender: str
    to: list[str] = Field(min_length=1)
    subject_prefix: str = "[syncer]"
    timeout_seconds: float = Field(10.0, gt=0, le=120)

    @field_validator("sender")
    @classmethod
    def _sender(cls, value: str) -> str:
        if not _ADDRESS.fullmatch(value.strip()):
            raise ValueError(f"{value!r} is not an e-mail address")
        return value.strip()

    @field_validator("to")
    @classmethod
    def _recipients(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not _ADDRESS.fullmatch(v.strip())]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(map(repr, bad))}")
        return [v.strip() for v in values]

    @model_validator(mode="after")
    def _credentials(self) -> EmailChannel:
        if self.password_env is not None and self.username is None:
            raise ValueError("password_env is set without username")
        if self.tls == "none" and self.password_env is not None \
                and self.host not in _LOOPBACK:
            raise ValueError(f"tls = \"none\" would send the password to {self.host} in "
                             "clear: use \"starttls\" or \"ssl\" (\"none\" only on loopback)")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or {"starttls": 587, "ssl": 465, "none": 25}[self.tls]


class AlertSettings(Section):
    """``[alerts]`` (every store) or ``[stores.alerts]`` (one store, over the global one)."""

    enabled: bool = True
    events: list[AlertKind] = Field(default_factory=lambda: list(ALERT_KINDS))
    # A problem still there this long after its last message is said again; 0: never.
    remind_every_minutes: float = Field(1440, ge=0)
    # Say so when a problem clears (the token accepted again, the offer out of quarantine).
    send_resolved: bool = True
    # "failing_runs": this many runs in a row of one job (offers, stock, reconcile,
    # products) that did not do their work (failed, stopped, Back Market unreachable).
    failing_runs: int = Field(3, ge=1)
    webhook: WebhookChannel | None = None
    slack: WebhookChannel | None = None
    email: EmailChannel | None = None

    def over(self, base: AlertSettings) -> AlertSettings:
        """These store settings laid over the global ``base``: what this table sets wins."""
        return base.model_copy(update={key: getattr(self, key)
                                       for key in self.model_fields_set})

    def channels(self) -> list[tuple[str, WebhookChannel | EmailChannel]]:
        """The enabled channels, by name ("webhook", "slack", "email")."""
        if not self.enabled:
            return []
        found: list[tuple[str, WebhookChannel | EmailChannel]] = []
        for name in CHANNELS:
            channel = getattr(self, name)
            if channel is not None and channel.enabled:
                found.append((name, channel))
        return found


def register_webhook_url(url: str | None) -> None:
    """Know what is secret in a webhook URL: the URL whole, its userinfo, its query values,
    and its path's token-like segments (Slack's /services/T…/B…/xxxx), with the path whole
    when it holds one. Plain words of a path (/hooks/alerts) are no secret: registered, they
    would be scrubbed out of every log and report."""
    from syncer.core import secrets

    if not url:
        return
    url = url.strip()
    secrets.register(url)
    parts = urlsplit(url)
    for value in (parts.username, parts.password):
        secrets.register(value)
        secrets.register(unquote(value or "") or None)
    if "@" in parts.netloc:
        secrets.register(parts.netloc.rpartition("@")[0])
    for _, value in parse_qsl(parts.query, keep_blank_values=True):
        secrets.register(value)
    tokens = [segment for segment in parts.path.split("/") if _token_like(unquote(segment))]
    for segment in tokens:
        secrets.register(segment)
        secrets.register(unquote(segment))
    if tokens:
        secrets.register(parts.path.strip("/"))


def _token_like(segment: str) -> bool:
    """A path segment that reads as a credential, not a word: long, or letters and digits
    mixed (Slack's T0ABC123)."""
    return len(segment) >= TOKEN_LENGTH or (any(c.isdigit() for c in segment)
                                            and any(c.isalpha() for c in segment))
