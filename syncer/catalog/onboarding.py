"""``syncer init``: from a seller's export to a configuration and a mapping profile.

The catalog's header is read with the catalog reader itself (``CsvCatalog``: the same
delimiter sniffing, BOM handling and legacy-encoding fallback as every plan), and each column
name is matched against the names French, German, English and Spanish exports commonly use
(``Référence``, ``Zustand``, ``Bestand``, ``precio_es``, ``Garantie (mois)``...). Names are
compared as the grade tables are (case, accents, ``_``/``-`` and punctuation do not matter),
and a price column says its country by a code at its end or start (``Prix FR``, ``price_de``,
``fr_prix``) or, when it names none, by the language of the header (``Preis``: Germany).
Nothing here guesses at values: the profile says which column feeds which field, and the plan
that follows validates every row as usual.

Pure apart from ``read_header`` and ``write_files``: ``propose`` turns a header into a
``Proposal``, which renders the profile and the ``syncer.toml`` as TOML text. The column
names are matched in ``syncer.catalog.columns``.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from syncer.catalog.columns import (
    GLOBAL_SYNONYMS,
    LANGUAGE_LOCALE,
    STORE_SYNONYMS,
    Match,
    match_column,
)
from syncer.catalog.files import CsvCatalog, is_utf8
from syncer.core.vocabulary import PLATFORM_OF
from syncer.errors import CatalogError, ConfigError

LEGACY_ENCODING: Final = "cp1252"  # what older Excel exports in these languages are written in


PROFILE_FILE: Final = "mapping.toml"


TOKEN_ENV: Final = {"EU": "BACKMARKET_TOKEN_EU", "US": "BACKMARKET_TOKEN_US",
                    "AP": "BACKMARKET_TOKEN_AP"}


# What a field missing from the catalog means, for the report.
ABSENT: Final = {
    "product_id": "no Back Market product ids: every row needs its EAN",
    "ean": "no EANs: every row needs its Back Market product id",
    "safety_quantity": "no safety stock: the whole stock is published",
    "max_quantity": "no cap on the published quantity",
    "deee": "no DEEE (French recycling fee)",
    "currency": "each market's own currency",
    "warranty": "a 12-month warranty for every offer",
    "comment": "no comment",
    "min_price": "no price floor",
    "max_price": "no price ceiling",
}


# A field's defaults when its column is there but a cell is empty (as the default profile).
DEFAULTS: Final = {"product_id": "", "ean": "", "safety_quantity": "0", "max_quantity": "",
                   "deee": "", "currency": "", "warranty": "12", "comment": "",
                   "min_price": "", "max_price": ""}


REQUIRED: Final = ("sku", "grade", "stock")


@dataclass(frozen=True)
class Header:
    path: Path
    columns: tuple[str, ...]
    description: str
    legacy_encoding: str | None


def read_header(path: Path) -> Header:
    """The catalog's header as every plan reads it; a file that is not UTF-8 is read as the
    catalog reader reads it with ``legacy_encoding = "cp1252"``."""
    if not path.is_file():
        raise CatalogError(f"catalog {path} not found" if not path.exists() else
                           f"catalog {path} is not a file")
    if path.suffix.lower() in (".xlsx", ".xls", ".ods", ".numbers"):
        raise CatalogError(f"catalog {path} is a spreadsheet, not a CSV file: export it as "
                           "CSV (UTF-8, or your spreadsheet's default) and run init on that")
    legacy = None if is_utf8(path) else LEGACY_ENCODING
    with CsvCatalog(path, legacy_encoding=legacy).open() as stream:
        return Header(path, stream.header, stream.description, legacy)


@dataclass(frozen=True)
class StoreProposal:
    name: str
    locale: str

    @property
    def country(self) -> str:
        return self.locale.split("-")[1]


@dataclass
class Proposal:
    header: Header
    offer: dict[str, Match]
    # field -> store name -> the column feeding it there (None: every store's column)
    per_store: dict[str, dict[str, Match]]
    stores: list[StoreProposal]
    shipping: dict[str, Match]
    unused: list[tuple[str, str]] = field(default_factory=list)  # (column, why)
    stores_from: str = "price columns"

    def profile_toml(self, name: str) -> str:
        lines = [
            f"# Mapping profile written by `syncer init` from the header of "
            f"{self.header.path.name}",
            f"# on {datetime.now(UTC):%Y-%m-%d}. Check each match and edit the column names "
            "if one is wrong;",
            "# mappings/default.toml documents every field and its forms.",
            "",
            "[profile]",
            f"name = {_toml(name)}",
            f"description = {_toml('Proposed by syncer init for ' + self.header.path.name)}",
            "# The bundled value tables, by name: grade spellings (Très bon état, Gold...) and",
            "# carrier names. Copy one beside this file to edit it.",
            'grades = "grades.toml"',
            'carriers = "carriers.toml"',
            "",
            "[offer]",
        ]
        for name_, match in self.offer.items():
            lines.append(f"{name_} = {_source(match.column, DEFAULTS.get(name_))}")
        lines += ["", "[offer.per_store]"]
        overrides: dict[str, list[str]] = {}
        for name_, by_store in self.per_store.items():
            base, exceptions = self._template(name_, by_store)
            lines.append(f"{name_} = {base}")
            for store, spec in exceptions.items():
                overrides.setdefault(store, []).append(f"{name_} = {spec}")
        for number in "123":
            option = {kind: self.shipping.get(f"shipping_{kind}_{number}")
                      for kind in ("shipper", "price", "delay")}
            if not any(option.values()):
                continue
            lines += ["", "[[offer.shipping]]"]
            for kind, found in option.items():
                if found is None:
                    continue
                column = _template_of(found) if kind == "price" else _braces(found.column)
                # optional, as in the default profile: a store may have no price column
                lines.append(f"{kind} = {_source(column, '')[:-2]}, optional = true }}")
        for store, specs in overrides.items():
            lines += ["", f"[stores.{_key(store)}]", *specs]
        return "\n".join(lines) + "\n"

    def _template(self, name: str, by_store: dict[str, Match]) -> tuple[str, dict[str, str]]:
        """The [offer.per_store] spec that fits most stores, and the others' overrides."""
        default = DEFAULTS.get(name)
        candidates = Counter(_template_of(m) for m in by_store.values())
        fits: dict[str, list[str]] = {}
        for template in candidates:
            fits[template] = [s.name for s in self.stores if s.name in by_store
                              and _render(template, s).casefold()
                              == by_store[s.name].column.casefold()]
        base = max(fits, key=lambda t: len(fits[t]))  # the first of the best, in header order
        exceptions = {}
        for store in self.stores:
            if store.name in fits[base]:
                continue
            if store.name in by_store:
                exceptions[store.name] = _source(_braces(by_store[store.name].column), default)
            else:  # the catalog has no such column for this store: its default for every row
                exceptions[store.name] = "{ value = " + _toml(default or "") + " }"
        return _source(base, default), exceptions

    def config_toml(self, config_dir: Path, profile: Path) -> str:
        catalog = _relative(self.header.path, config_dir)
        lines = [
            f"# Written by `syncer init` from {self.header.path.name} on "
            f"{datetime.now(UTC):%Y-%m-%d}. `syncer plan` shows",
            "# what would be sent, and why, without sending anything. Every key is explained in",
            "# examples/syncer.toml; environment variables override any key (SYNCER_...).",
            "",
            f"mapping = {_toml(_relative(profile, config_dir))}",
            'state_url = "sqlite:///state/syncer.db"  # PostgreSQL: "postgresql://user@host/db"',
            "",
            "[catalog]",
            f"path = {_toml(catalog)}",
            'encoding = "utf-8"                       # a BOM is accepted',
        ]
        if self.header.legacy_encoding:
            lines.append(f"legacy_encoding = {_toml(self.header.legacy_encoding)}"
                         "             # the export is not (all) UTF-8")
        lines += [
            "# delimiter: detected from the header line",
            "",
            "[api]",
            "# Back Market requires a User-Agent BM-{company}-{integration};{contact email}:",
            "# set these before `syncer apply` (a plan does not need them).",
            'company = "MyShop"',
            'integration = "syncer"',
            'contact_email = ""',
            "",
            "# One store per country, from the catalog's " + self.stores_from + ". The token",
            "# is read from the environment variable named by token_env (or from .env beside",
            "# this file), never from this file.",
        ]
        for store in self.stores:
            lines += [
                "",
                "[[stores]]",
                f"name = {_toml(store.name)}",
                f"locale = {_toml(store.locale)}",
                'environment = "production"               # or preprod, or the emulator\'s '
                "http://127.0.0.1:PORT",
                f"token_env = {_toml(TOKEN_ENV[PLATFORM_OF[store.locale]])}",
            ]
            if store.locale == "fr-fr" and "deee" in self.offer:
                lines.append("send_deee = true                         # the French "
                             "recycling fee")
        return "\n".join(lines) + "\n"

    def token_variables(self) -> list[str]:
        return list(dict.fromkeys(TOKEN_ENV[PLATFORM_OF[s.locale]] for s in self.stores))

    def report(self) -> list[str]:
        """What was matched and what was not, for the seller to check."""
        missing = [f for f in ABSENT if f not in self.offer and f not in self.per_store]
        width = max([len(f) for f in (*self.offer, *self.shipping, *missing)]
                    + [len(f) + 3 + max(len(s.name) for s in self.stores)
                       for f in self.per_store])
        lines = [f"Read {self.header.description}: {len(self.header.columns)} columns",
                 "Matched:"]
        for name, match in self.offer.items():
            lines.append(f"  {name:<{width}} <- {match.column!r}")
        for name, by_store in self.per_store.items():
            for store in self.stores:
                if store.name in by_store:
                    column = by_store[store.name].column
                    lines.append(f"  {name + ' (' + store.name + ')':<{width}} <- {column!r}")
        for name, match in self.shipping.items():
            shown = _template_of(match) if name.startswith("shipping_price") else match.column
            lines.append(f"  {name:<{width}} <- {shown!r}")
        lines.append("Stores: " + ", ".join(f"{s.name} ({s.locale})" for s in self.stores)
                     + f", from the {self.stores_from}")
        if missing:
            lines.append("Not in the catalog (so):")
            lines += [f"  {f:<{width}}    {ABSENT[f]}" for f in missing]
        if self.unused:
            lines.append("Not matched (not used; map them in the profile if they matter):")
            lines += [f"  {column!r}: {why}" for column, why in self.unused]
        return lines


def propose(header: Header, locales: Sequence[str] = ()) -> Proposal:
    """Match every column; fail naming what is missing and the columns seen."""
    for locale in locales:
        if locale not in PLATFORM_OF:
            raise ConfigError(f"--locale {locale}: unknown market; expected one of "
                              + ", ".join(PLATFORM_OF))
    offer: dict[str, Match] = {}
    store_matches: dict[str, list[Match]] = {}
    shipping: dict[str, Match] = {}
    unused: list[tuple[str, str]] = []
    languages: Counter[str] = Counter()
    seen: dict[str, int] = {}
    for index, column in enumerate(header.columns):
        key = column.strip().casefold()
        if key in seen:
            unused.append((column, "the header has this column more than once"))
            continue
        seen[key] = index
        match = match_column(index, column)
        if match is None:
            unused.append((column, "no field known by this name"))
            continue
        languages.update(lang for lang in match.languages.split() if lang)
        if match.field in GLOBAL_SYNONYMS:
            _keep(offer, match.field, match, unused)
        elif match.field.startswith(("shipping_shipper", "shipping_delay")):
            _keep(shipping, match.field, match, unused)
        else:
            store_matches.setdefault(match.field, []).append(match)
    doubled = {c.strip().casefold() for c, why in unused if why.endswith("more than once")}
    used = [*offer.values(), *shipping.values(), *(m for ms in store_matches.values()
                                                   for m in ms)]
    for match in used:
        if match.column.strip().casefold() in doubled:
            raise ConfigError(f"catalog {header.path}: the header has the column "
                              f"{match.column!r} more than once; cannot tell which one feeds "
                              f"{match.field}. Rename one and run init again")
    missing = [f for f in REQUIRED if f not in offer]
    if "price" not in store_matches:
        missing.append("price")
    if "product_id" not in offer and "ean" not in offer:
        missing.append("ean (or a Back Market product id)")
    if missing:
        raise ConfigError(_missing_message(header, missing))
    stores, stores_from = _stores(header, store_matches["price"], languages, locales)
    per_store: dict[str, dict[str, Match]] = {}
    for name, matches in store_matches.items():
        if name.startswith("shipping_price"):
            by_store = _by_store(matches, stores, unused, name)
            if by_store:
                shipping[name] = next(iter(by_store.values()))
            continue
        by_store = _by_store(matches, stores, unused, name)
        if by_store:
            per_store[name] = by_store
    unpriced = [s for s in stores if s.name not in per_store["price"]]
    if unpriced:
        found = ", ".join(repr(m.column) for m in store_matches["price"])
        raise ConfigError(
            f"catalog {header.path}: no price column for "
            + ", ".join(f"{s.locale} (store {s.name})" for s in unpriced)
            + f"; its price columns are {found}. Name a price column after the country "
            "(Prix FR, price_de...) or leave that --locale out")
    return Proposal(header, offer, per_store, stores, shipping, unused, stores_from)


def _keep(found: dict[str, Match], name: str, match: Match,
          unused: list[tuple[str, str]]) -> None:
    """Two columns for one field: the surer name feeds it, the other is reported."""
    other = found.get(name)
    if other is None:
        found[name] = match
    elif match.rank < other.rank:
        found[name] = match
        unused.append((other.column, f"{match.column!r} already feeds {name}"))
    else:
        unused.append((match.column, f"{other.column!r} already feeds {name}"))


def _stores(header: Header, prices: list[Match], languages: Counter[str],
            locales: Sequence[str]) -> tuple[list[StoreProposal], str]:
    if locales:
        return _proposals(list(dict.fromkeys(locales))), "--locale options"
    named = list(dict.fromkeys(m.locale for m in prices if m.locale is not None))
    plain = next((m for m in prices if m.locale is None), None)
    if plain is None:
        return _proposals(named), "price columns"
    # A price naming no country is the home market's, told by the header's language
    # ("Prix" beside "Prix BE": France and Belgium).
    spoken = [(n, lang) for lang, n in languages.most_common() if lang in LANGUAGE_LOCALE]
    home = LANGUAGE_LOCALE[spoken[0][1]] if spoken and (
        len(spoken) == 1 or spoken[0][0] > spoken[1][0]) else None
    if home is not None and home not in named:
        return _proposals([home, *named]), (
            f"{'price columns and the ' if named else ''}header's language (the price "
            f"column {plain.column!r} names no country)")
    if named:
        return _proposals(named), "price columns"
    raise ConfigError(
        f"catalog {header.path}: the price column {plain.column!r} names no country and "
        "the header's language does not tell one; pass the market(s) it sells on, for "
        "example --locale fr-fr (repeatable)")


def _proposals(locales: Sequence[str]) -> list[StoreProposal]:
    return [StoreProposal(_store_name(locale), locale) for locale in locales]


def _store_name(locale: str) -> str:
    return locale.split("-")[1]


def _by_store(matches: list[Match], stores: list[StoreProposal],
              unused: list[tuple[str, str]], name: str) -> dict[str, Match]:
    """The column feeding a per-store field in each store: its country's own column, else
    the column that names no country (the same for every store)."""
    by_locale: dict[str | None, Match] = {}
    for match in matches:
        other = by_locale.get(match.locale)
        if other is None or match.rank < other.rank:
            if other is not None:
                unused.append((other.column, f"{match.column!r} already feeds {name}"))
            by_locale[match.locale] = match
        else:
            unused.append((match.column, f"{other.column!r} already feeds {name}"))
    wanted = {s.locale for s in stores}
    for locale, match in by_locale.items():
        if locale is not None and locale not in wanted:
            unused.append((match.column, f"{name} for {locale}, which has no store here"))
    result = {}
    for store in stores:
        found = by_locale.get(store.locale, by_locale.get(None))
        if found is not None:
            result[store.name] = found
    plain = by_locale.get(None)
    if plain is not None and plain not in result.values():
        unused.append((plain.column, f"{name} naming no country, and every store has "
                                     "its own column"))
    return result


def _missing_message(header: Header, missing: list[str]) -> str:
    looked = []
    for name in missing:
        key = name.split()[0]
        names = GLOBAL_SYNONYMS.get(key) or STORE_SYNONYMS.get(key) or {}
        shown = ", ".join(list(names)[:8])
        looked.append(f"{name} (looked for names such as {shown})" if shown else name)
    columns = ", ".join(repr(c) for c in header.columns[:40])
    more = f", ... ({len(header.columns)} columns)" if len(header.columns) > 40 else ""
    return (f"cannot propose a mapping for catalog {header.path}: no column for "
            + "; ".join(looked) + f". Columns seen: {columns}{more}. Rename the columns, or "
            "copy mappings/default.toml and map them by hand")


def _toml(text: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(text, ensure_ascii=False)


def _key(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else _toml(name)


def _braces(column: str) -> str:
    """A literal column name inside a per-store template: its braces are not placeholders."""
    return column.replace("{", "{{").replace("}", "}}")


def _template_of(match: Match) -> str:
    if match.code is None:
        return _braces(match.column)
    placeholder = "{locale}" if re.search(r"[\W_]", match.code) else "{country}"
    at = match.column.casefold().rfind(match.code.casefold())
    if match.column[:len(match.code)].casefold() == match.code.casefold() and \
            not match.column.casefold().endswith(match.code.casefold()):
        at = 0
    return (_braces(match.column[:at]) + placeholder
            + _braces(match.column[at + len(match.code):]))


def _render(template: str, store: StoreProposal) -> str:
    return template.format(country=store.country, locale=store.locale, store=store.name)


def _source(column: str, default: str | None) -> str:
    if default is None:
        return _toml(column)
    return "{ column = " + _toml(column) + ", default = " + _toml(default) + " }"


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), folder.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def write_files(proposal: Proposal, config: Path, force: bool) -> Path:
    """Write the profile beside the configuration; refuse to replace either without
    ``force`` (checked for both before either is written)."""
    profile = config.parent / PROFILE_FILE
    existing = [p for p in (config, profile) if p.exists()]
    if existing and not force:
        raise ConfigError(", ".join(str(p) for p in existing)
                          + (" already exists" if len(existing) == 1 else " already exist")
                          + ": not overwritten; pass --force to replace, or write them in "
                          "another folder: syncer --config DIR/syncer.toml init CATALOG")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", proposal.header.path.stem).strip("-") or "catalog"
    try:
        config.parent.mkdir(parents=True, exist_ok=True)
        profile.write_text(proposal.profile_toml(name), encoding="utf-8")
        config.write_text(proposal.config_toml(config.parent, profile), encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {exc.filename}: {exc.strerror}") from None
    return profile
