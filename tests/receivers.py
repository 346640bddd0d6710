"""Real receivers on loopback for the alert tests: an HTTP server that takes webhook and
Slack POSTs, and an SMTP server (aiosmtpd) that keeps every message it is given."""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

WEBHOOK_PATH = "/hooks/json-9c1d5e-SECRETPATH"
SLACK_PATH = "/services/T01SECRET/B02SECRET/slack-4f8a2b-SECRETPATH"
SMTP_USER = "alerts@example.com"
SMTP_PASSWORD = "smtp-pass-77e1c0-SECRET"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Received:
    path: str
    status: int  # what the receiver answered
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class HttpReceiver:
    """Answers every POST with ``status`` and records it; ``stop()`` then ``start()`` takes
    it down and back up on the same port (a receiver that was down)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.status = 200
        self.received: list[Received] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HttpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append(Received(self.path, receiver.status, body))
                answer = b"ok" if receiver.status < 300 else b"server error"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join()
            self._server = None

    def delivered(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path and r.status < 300]

    def webhooks(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.delivered(WEBHOOK_PATH)]

    def slack(self) -> list[str]:
        return [r.json()["text"] for r in self.delivered(SLACK_PATH)]


class Mailbox:
    """aiosmtpd's handler: keeps each message's raw bytes; logins are checked."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[str] = []

    async def handle_DATA(self, _server: SMTP, _session: Session,
                          envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(content if isinstance(content, bytes) else content.encode())
        return "250 Message accepted"

    def authenticate(self, _server: SMTP, _session: Session, _envelope: Envelope,
                     _mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login.decode() == SMTP_USER \
            and data.password.decode() == SMTP_PASSWORD
        if ok:
            self.logins.append(data.login.decode())
        return AuthResult(success=ok)


class SmtpReceiver:
    def __init__(self, *, tls_cert: tuple[Path, Path] | None = None) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        options: dict[str, Any] = {"authenticator": self.mailbox.authenticate,
                                   "auth_require_tls": tls_cert is not None}
        if tls_cert is not None:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(str(tls_cert[0]), str(tls_cert[1]))
            options.update(tls_context=context, require_starttls=True)
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port,
                                     **options)

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.controller.stop()

    @property
    def messages(self) -> list[bytes]:
        return self.mailbox.messages


def alert_config(http: HttpReceiver, smtp: SmtpReceiver, *, tls: str = "none",
                 extra: str = "") -> str:
    """The [alerts] tables of a syncer.toml with the three channels on these receivers
    (the Slack URL comes from SYNCER_TEST_SLACK_URL, the password from
    SYNCER_TEST_SMTP_PASSWORD)."""
    return f"""
[alerts]
{extra}
[alerts.webhook]
url = "{http.base}{WEBHOOK_PATH}"
timeout_seconds = 2

[alerts.slack]
url_env = "SYNCER_TEST_SLACK_URL"
timeout_seconds = 2

[alerts.email]
host = "127.0.0.1"
port = {smtp.port}
tls = "{tls}"
username = "{SMTP_USER}"
password_env = "SYNCER_TEST_SMTP_PASSWORD"
sender = "syncer@example.com"
to = ["ops@example.com"]
timeout_seconds = 5
"""
