"""The sections of the configuration that are not stores: [catalog], [api], [limits],
[orders], [market]; each a model that refuses unknown keys and says what it expected.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path
from typing import Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from syncer.errors import ConfigError

LOOPBACK_HOSTS: Final = ("127.0.0.1", "localhost", "[::1]", "::1")


# A store's run lock (invariant 7) is kept in thirds of its lease: renewed every third, and
# each request to Back Market, its retries and waits included, given at most a third. A
# renewal then comes at most two thirds after the one before: a third is left as margin.
LEASE_THIRDS: Final = 3


def lease_renew_every(lease_seconds: float) -> float:
    """How often a run renews its lock lease (checked before every request)."""
    return lease_seconds / LEASE_THIRDS


def request_deadline(lease_seconds: float) -> float:
    """The longest one request may take, retries and waits included, under this lease."""
    return lease_seconds / LEASE_THIRDS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CatalogSettings(Section):
    path: Path | None = None
    # "utf-8" also accepts a byte-order mark. legacy_encoding (e.g. "cp1252") reads the lines
    # that are not valid UTF-8 (the others stay UTF-8, the plan names them); without it such a
    # file is an error, never silently mangled.
    encoding: str = "utf-8"
    legacy_encoding: str | None = None
    delimiter: Literal[";", ",", "\t", "|"] | None = None  # None: detected from the header line
    # Or a database (syncer/catalog/sql.py): a SQLAlchemy URL and a table/view or a query. The
    # URL may hold a password: a secret, never shown (set it with SYNCER_CATALOG__URL).
    url: SecretStr | None = None
    table: str | None = None
    query: str | None = None
    batch_size: int = Field(2000, ge=1, le=100_000)  # rows per fetch from the server
    # A column of the table or query that grows whenever a row changes (an updated_at
    # timestamp, a row version): the daemon's stock watch then asks only count(*) and its
    # max() to notice a change (syncer/catalog/watch.py).
    changed_column: str | None = None

    @field_validator("encoding", "legacy_encoding")
    @classmethod
    def _text_encoding(cls, name: str | None) -> str | None:
        # codecs.lookup knows rot13 and base64 too: only a codec that decodes bytes to text
        # can read a catalog (str.encode refuses the others).
        if name is None:
            return name
        try:
            codecs.lookup(name)
        except LookupError:
            raise ValueError(f"unknown encoding {name!r}; expected a text encoding such as "
                             "utf-8 or cp1252") from None
        try:
            "sku".encode(name)
        except LookupError:
            raise ValueError(f"{name!r} is not a text encoding; expected one such as utf-8 "
                             "or cp1252") from None
        return name

    @model_validator(mode="after")
    def _one_source(self) -> CatalogSettings:
        from sqlalchemy.engine import make_url

        database = self.url is not None or self.table is not None or self.query is not None
        if self.path is not None and database:
            raise ValueError("give either path (a CSV file) or url with table or query (a "
                             "database), not both")
        if database and self.url is None:
            raise ValueError("table and query read from a database: set url too")
        if self.url is not None:
            if (self.table is None) == (self.query is None):
                raise ValueError("with url, set exactly one of table (a table or view) or "
                                 "query (a SELECT)")
            try:
                make_url(self.url.get_secret_value().strip())
            except Exception:  # the message would quote the URL, password included
                raise ValueError("url is not a database URL such as "
                                 "postgresql://user:password@host/database") from None
        return self


class ApiSettings(Section):
    # Back Market's mandatory User-Agent: BM-{company}-{integration};{contact_email}
    company: str = "Syncer"
    integration: str = "backmarket-syncer"
    contact_email: str = ""
    timeout_seconds: float = Field(30.0, gt=0)
    task_poll_seconds: float = Field(15.0, gt=0)
    task_timeout_seconds: float = Field(3600.0, gt=0)
    max_retries: int = Field(5, ge=0)
    # Rows per batch CSV (Back Market takes at most 15,000 lines, header included). Smaller
    # batches finish sooner and put fewer offers in doubt when an answer is lost.
    batch_rows: int = Field(14_999, ge=1, le=14_999)
    # Retries of 5xx, timeouts and dropped connections: exponential backoff with full
    # jitter, from backoff_base_seconds doubling up to backoff_cap_seconds.
    backoff_base_seconds: float = Field(0.5, ge=0)
    backoff_cap_seconds: float = Field(30.0, ge=0)

    def user_agent(self) -> str:
        if not re.fullmatch(r"[^@\s;]+@[^@\s;]+\.[^@\s;]+", self.contact_email):
            raise ConfigError(
                "api.contact_email must be set to a contact address: Back Market requires a "
                "User-Agent of the form BM-{Company}-{Integration};{email}"
            )
        company = re.sub(r"[^A-Za-z0-9]+", "", self.company) or "Syncer"
        integration = re.sub(r"[^A-Za-z0-9_-]+", "", self.integration) or "syncer"
        return f"BM-{company}-{integration};{self.contact_email}"


class Limits(Section):
    # A run that would take more than this share of a store's live offers to quantity 0
    # (gone from the catalog, stock 0, max_quantity 0...) stops (invariant 5)...
    max_zero_share: float = Field(0.20, ge=0, le=1)
    # ...unless it takes at most this many offline (small stores), and never every live
    # offer of a store that has several.
    zero_allowance: int = Field(1, ge=0)
    # Below Back Market's ~200 requests per 10 s, to keep a margin for other tools.
    requests_per_window: int = Field(150, gt=0)
    window_seconds: float = Field(10.0, gt=0)
    # Back Market allows ~20 per 10 s on its catalog endpoints: the batch CSV ("catalog")
    # ingestion and the category tree. "METHOD /path", a trailing * matches a prefix.
    catalog_requests_per_window: int = Field(18, gt=0)
    catalog_routes: tuple[str, ...] = ("POST /ws/listings", "GET /ws/category*")
    # SKU lines per hour on listing updates (single = 1, batch = its rows), shared by every
    # run and store of one account through the state database. 0: no client-side budget.
    sku_lines_per_hour: int = Field(2000, ge=0)
    # The BackBox competitors endpoint: 2 calls a second per token, Back Market says. The
    # window is 10% longer than a second: a call's arrival time differs from its sending
    # time, and 2 sent a second apart may arrive 0.99 s apart. They count under the
    # general limit too (Cloudflare's limit is per client, whatever the endpoint).
    backbox_requests_per_window: int = Field(2, gt=0)
    backbox_window_seconds: float = Field(1.1, gt=0)
    # After a 429, Back Market blocks the client for about 10 s.
    rate_block_seconds: float = Field(10.0, ge=0)
    # A store's run lock, renewed every third of it; at least Settings.min_lease_seconds().
    lock_lease_seconds: float = Field(900.0, gt=0)
    # An offer refused with the same Back Market error this many runs in a row is
    # quarantined: not sent again until its content changes or `syncer retry SKU`. 0: never.
    quarantine_after: int = Field(3, ge=0)


class OrderSettings(Section):
    """``[orders]``: how orders are pulled, accepted and shipped (``syncer orders ...``)."""

    # "store": each store pulls its own country's orders; "all": every country of the
    # account. A store may choose for itself with its own order_pull_scope.
    pull_scope: Literal["store", "all"] = "store"
    # Paid lines accepted by `syncer orders accept`: "stock" when the catalog's stock of the
    # SKU covers the quantity, "all", or "manual" (only those listed with --accept FILE).
    accept_policy: Literal["stock", "all", "manual"] = "stock"
    # Each pull reads orders modified since the last one minus this overlap, so that none
    # is missed between two pulls (re-read orders are recognised, not exported twice).
    overlap_minutes: int = Field(60, ge=0)
    # How far back the very first pull of a store reads.
    first_pull_days: int = Field(30, ge=1)
    # CSV and JSON lines exports of each pull; default: orders/ beside the state.
    export_dir: Path | None = None
    # Replaces the carrier table's fallback shipper; "" ships nothing for unknown carriers.
    # Free text of at most 200 characters: Back Market's Shipper list is the known values.
    carrier_fallback: str | None = None
    # Plans hold back, from each SKU's quantity, the units of pulled order lines not shipped
    # or cancelled yet (sold on Back Market, maybe not yet counted by the catalog export).
    # A line stops reserving once shipped: see syncer/planning/reservations.py.
    reserve_unshipped: bool = False

    @model_validator(mode="after")
    def _check_fallback(self) -> OrderSettings:
        from syncer.core.vocabulary import MAX_SHIPPER

        if self.carrier_fallback and len(self.carrier_fallback) > MAX_SHIPPER:
            raise ValueError(f"orders.carrier_fallback is {len(self.carrier_fallback)} "
                             f"characters long; Back Market takes a shipper of at most "
                             f"{MAX_SHIPPER}")
        return self


class ShopSettings(Section):
    """``[market.shop]``: the public shop as buyers see it, through the parse.bot Back
    Market scraper API (``X-API-Key``; a rate and a monthly credit allowance by tier)."""

    # The scraper's base URL, up to the scraper id: .../scraper/<id>
    base_url: str
    # The environment variable (or .env key) that holds the API key; never in this file.
    key_env: str = "SYNCER_SHOP_KEY"
    # Free 5, Hobby 20, Developer 250 requests a minute.
    requests_per_minute: int = Field(5, gt=0, le=250)
    # Credits (one per call) spent at most per calendar month (UTC), kept in the state.
    monthly_credits: int = Field(100, ge=0)
    timeout_seconds: float = Field(30.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _secure(cls, url: str) -> str:
        match = re.fullmatch(r"(https?)://([^/:]+|\[[^\]]+\])(:\d+)?(/.*)?", url.strip())
        if not match:
            raise ValueError(f"{url!r} is not a base URL like https://api.parse.bot/scraper/ID")
        if match.group(1) == "http" and match.group(2) not in LOOPBACK_HOSTS:
            raise ValueError("plain http:// is only allowed on loopback (the emulator)")
        return url.strip().rstrip("/")


class MarketSettings(Section):
    """``[market]``: how BackBox reads are spent."""

    # Seconds one market pass may read for, per store; what is left waits for the next.
    pass_seconds: float = Field(300.0, gt=0)
    # Reads per pass at most, per store (0: as many as pass_seconds allows).
    max_reads: int = Field(0, ge=0)
    shop: ShopSettings | None = None
