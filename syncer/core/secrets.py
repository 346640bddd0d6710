"""The secret values this process knows (API tokens, database passwords), and ``scrub``.

The README's guarantee 8 holds even when a server echoes a secret back (a proxy or WAF
page that quotes the request's headers in its message): every text that enters a log, the
state, a report or an exception goes through ``scrub``, which replaces each known secret
by "<redacted>".
Settings register the values as they read them; nothing else holds them.
"""

from __future__ import annotations

import base64
import re
import threading
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote, quote_plus

REDACTED: Final = "<redacted>"
# Shorter values would wipe ordinary words out of every message ("a" as a password).
MIN_LENGTH: Final = 4

_lock = threading.Lock()
_values: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(value: str | None) -> None:
    """Know this secret from now on, with the forms it may take on the wire: URL-encoded
    (a database URL, a query string) and base64 (an HTTP Basic credential)."""
    global _pattern
    if value is None or len(value) < MIN_LENGTH:
        return
    forms = {value, quote(value, safe=""), quote_plus(value),
             base64.b64encode(value.encode()).decode().rstrip("=")}
    with _lock:
        if forms <= _values:
            return
        _values.update(form for form in forms if len(form) >= MIN_LENGTH)
        # Longest first: a secret that contains another is replaced whole.
        _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len,
                                                                     reverse=True)))


def register_url_password(url: str | None) -> None:
    """The password of a database URL, as written and as decoded."""
    if not url:
        return
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url.strip()).password
    except Exception:  # an unparsable URL is reported elsewhere, without its text
        return
    if password:
        register(str(password))
        register(quote(str(password), safe=""))


def scrub(text: str) -> str:
    """``text`` with every known secret replaced by "<redacted>"."""
    pattern = _pattern
    if pattern is None or not text:
        return text
    return pattern.sub(REDACTED, text)


def scrub_value(value: Any) -> Any:
    """``scrub`` through strings, mappings, lists and tuples (a log event's values)."""
    if isinstance(value, str):
        return scrub(value)
    if _pattern is None:
        return value
    if isinstance(value, Mapping):
        return {key: scrub_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [scrub_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(scrub_value(item) for item in value)
    if value is None or isinstance(value, bool | int | float):
        return value
    shown = str(value)  # an exception, a path...: rendered as text, so scrubbed as text
    cleaned = scrub(shown)
    return value if cleaned == shown else cleaned


def forget_all() -> None:
    """Tests only: start from no known secret."""
    global _pattern
    with _lock:
        _values.clear()
        _pattern = None
