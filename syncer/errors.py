"""Every error the engine raises, classified by what to do about it.

    SyncerError                      base: the CLI prints its message on one line, exit 1
    ├── ConfigError                  fix the configuration or the mapping profile, rerun
    ├── CatalogError                 the catalog cannot be read at all (never "empty")
    ├── StateError                   the state database cannot be used as it is
    │   ├── LockHeld                 another run holds this store's lock
    │   └── StalePlan                a saved plan no longer matches the snapshot
    ├── SafetyStop                   the run would zero too many live offers
    └── ApiError                     Back Market answered (or failed to) badly
        ├── RetriableError           wait and retry: 429, 5xx, timeouts, dropped connections
        │   ├── RateLimited          HTTP 429: blocked for a while
        │   └── OutcomeUnknown       a non-idempotent request may or may not have landed
        ├── OfferError               skippable: this offer only (400/404/422), the run goes on
        └── FatalApiError            stop this store's run
            ├── TokenRejected        HTTP 401
            └── Blocked              HTTP 403 from the WAF or bot management (cf-ray kept)

Row-level data problems are not exceptions: validation turns them into ``Rejection`` values.
No error message ever carries an API token: tokens live in ``SecretStr``, the client
redacts its headers, and every message is scrubbed of the known secrets as the error is
made (a server may echo a token back in its own message).
"""

from __future__ import annotations

from syncer.core.secrets import scrub


class SyncerError(Exception):
    """Base of every error this package raises on purpose."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(scrub(arg) if isinstance(arg, str) else arg for arg in args))


class ConfigError(SyncerError):
    """The configuration or a mapping profile is wrong: fix it and rerun."""


class CatalogError(SyncerError):
    """The catalog cannot be read at all. Never treated as an empty catalog."""


class StateError(SyncerError):
    """The state database is unusable (missing schema, locked, corrupt, newer schema)."""


class LockHeld(StateError):
    """Another run of the same store holds its lock."""

    def __init__(self, store: str, holder: str, expires_at: str) -> None:
        super().__init__(
            f"store {store!r} is locked by another run ({holder}) until {expires_at}; "
            "it will be released when that run ends or its lease expires"
        )
        self.store = store
        self.holder = holder


class StalePlan(StateError):
    """A saved plan was made against a snapshot that has changed since."""


class SafetyStop(SyncerError):
    """The run would zero more live offers than the configured share allows."""

    def __init__(self, message: str, *, store: str | None = None) -> None:
        super().__init__(message)
        self.store = store  # the store whose plan was stopped


class ApiError(SyncerError):
    """Back Market refused a request, or the request could not complete."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
    ) -> None:
        message = scrub(message)
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = None if code is None else scrub(code)
        self.request_id = None if request_id is None else scrub(request_id)


class RetriableError(ApiError):
    """A transient failure: back off and retry."""


class RateLimited(RetriableError):
    """HTTP 429: Back Market blocks the client for a while (about 10 s)."""


class OutcomeUnknown(RetriableError):
    """The request was sent but no answer came back: it may have been applied."""


class OfferError(ApiError):
    """Back Market rejected one offer (400/404/422): record it, carry on with the others."""


class FatalApiError(ApiError):
    """Stop the store's run: nothing more can succeed until a human acts."""


class TokenRejected(FatalApiError):
    """HTTP 401: the store's token is wrong, revoked or changed with the password."""


class Blocked(FatalApiError):
    """HTTP 403 from the WAF or bot management; ``cf_ray`` is what support asks for."""

    def __init__(self, message: str, *, status: int | None = 403, cf_ray: str | None = None,
                 code: str | None = None, request_id: str | None = None) -> None:
        super().__init__(message, status=status, code=code, request_id=request_id)
        self.cf_ray = cf_ray
