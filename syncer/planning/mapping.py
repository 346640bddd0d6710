"""Mapping profiles: which catalog column feeds which offer field, per store where needed.

A profile is TOML under ``mappings/`` (see ``mappings/default.toml``). This module reads it
(``load_profile``) and compiles it against one catalog header and the configured stores
(``compile_mapping``) into getters that pull raw text out of a row by index. It does no I/O
beyond reading the profile and its value tables, and it never interprets values: that is
validation's job.
"""

from __future__ import annotations

import tomllib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from syncer.config.settings import BUNDLED_MAPPINGS
from syncer.config.stores import StoreSettings
from syncer.core.vocabulary import GRADE_STATE, GRADES, SHIPPERS
from syncer.errors import ConfigError
from syncer.planning.pricing_rules import PricingProfile, load_pricing
from syncer.planning.sources import Getter, Source, parse_sources

GLOBAL_FIELDS: Final = (
    "sku", "product_id", "ean", "grade", "stock", "safety_quantity", "max_quantity", "deee",
)
STORE_FIELDS: Final = (
    "price", "currency", "warranty", "comment", "min_price", "max_price",
)
SHIPPING_FIELDS: Final = ("shipper", "price", "delay")
# Product content, for proposing products Back Market does not know yet. Title, description
# and price_new are per country: use {country}/{locale} in their column names.
PRODUCT_FIELDS: Final = (
    "title", "description", "brand", "price_new", "weight", "category_id",
    "image1", "image2", "image3", "image4", "image5", "image6", "width", "height", "depth",
)
REQUIRED: Final = frozenset({"sku", "grade", "stock", "price"})
MAX_SHIPPING_OPTIONS: Final = 3


def normalise(text: str) -> str:
    """Key for vocabulary lookups: case, accents, ``_``/``-`` and spacing do not matter."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.replace("_", " ").replace("-", " ").split())


@dataclass(frozen=True)
class Profile:
    name: str
    path: Path
    offer: dict[str, Source]
    per_store: dict[str, Source]
    shipping: tuple[dict[str, Source], ...]
    store_overrides: dict[str, dict[str, Source]]
    grades: dict[str, str]      # normalised vocabulary -> Back Market grade
    carriers: dict[str, str]    # normalised carrier name -> Back Market shipper
    carrier_fallback: str | None
    product: dict[str, Source] = field(default_factory=dict)
    # Back Market category attribute (its `field`) -> where its value comes from.
    attributes: dict[str, Source] = field(default_factory=dict)
    # The profile's own spellings of grades (its grades file), for messages.
    grade_words: tuple[str, ...] = ()
    # [pricing]: the rules per store and the row columns they read (syncer/planning/pricing.py).
    pricing: PricingProfile | None = None
    _seen_grades: dict[str, str | None] = field(default_factory=dict, repr=False,
                                                compare=False)

    def grade(self, text: str) -> str | None:
        try:
            return self._seen_grades[text]
        except KeyError:  # a catalog uses a handful of spellings: normalise each once
            found = self._seen_grades[text] = self.grades.get(normalise(text))
            return found

    def shipper(self, text: str) -> str | None:
        return self.carriers.get(normalise(text), self.carrier_fallback)

    def grade_vocabulary(self) -> str:
        """What this profile accepts, as loaded: never a word its tables do not hold."""
        states = sorted(str(state) for state in GRADE_STATE.values())
        plain = {normalise(g) for g in GRADES}.union(states)
        others = [w for w in dict.fromkeys(self.grade_words) if normalise(w) not in plain]
        shown = ", ".join(others[:12]) + (", ..." if len(others) > 12 else "")
        return ("a grade such as " + ", ".join(GRADES) + " (or " + ", ".join(states)
                + (f", {shown}" if shown else "") + ")")


# The shape of a profile and of its value tables, checked before anything is read from them
# so that a wrong type names the file, the key and what was expected (never a traceback).
# Field specs themselves (a column name or a table) are checked by Source.parse.
class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _ProfileTable(_Table):
    name: str | None = None
    description: str | None = None
    grades: str | None = None
    carriers: str | None = None


class _OfferTable(_Table):
    model_config = ConfigDict(extra="allow")
    per_store: dict[str, Any] = {}
    shipping: list[dict[str, Any]] = []


class _ProductTable(_Table):
    model_config = ConfigDict(extra="allow")
    attributes: dict[str, Any] = {}


class _ProfileFile(_Table):
    profile: _ProfileTable = _ProfileTable()
    offer: _OfferTable
    stores: dict[str, dict[str, Any]] = {}
    product: _ProductTable = _ProductTable()
    pricing: dict[str, Any] = {}  # checked by syncer.planning.pricing_rules.load_pricing


class _GradesFile(_Table):
    model_config = ConfigDict(extra="allow")  # a file may hold other tables
    grades: dict[str, list[str | int]] = {}


class _CarriersFile(_Table):
    model_config = ConfigDict(extra="allow")
    fallback: str | None = None
    carriers: dict[str, str] = {}


_EXPECTED: Final = {
    "model_type": "expected a table", "dict_type": "expected a table",
    "list_type": "expected a list", "string_type": "expected a string",
    "int_type": "expected a number", "bool_type": "expected true or false",
    "missing": "missing", "extra_forbidden": "unknown key",
}


M = TypeVar("M", bound=BaseModel)


def _checked(model: type[M], data: dict[str, Any], path: Path) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            # A union's member names (str, int) are not keys of the file.
            where = ".".join(str(p) for p in error["loc"]
                             if not (isinstance(p, str) and p in ("str", "int")))
            expected = _EXPECTED.get(error["type"], error["msg"])
            if error["type"] not in ("missing", "extra_forbidden"):
                expected += f", got {error['input']!r}"[:80]
            problems.append(f"{where or '(top level)'}: {expected}")
        raise ConfigError(f"mapping file {path}: " + "; ".join(dict.fromkeys(problems))) \
            from None


def load_profile(path: Path) -> Profile:
    data = _read_toml(path)
    if "offer" not in data:
        raise ConfigError(f"{path}: missing the [offer] table")
    checked = _checked(_ProfileFile, data, path)
    meta = checked.profile
    offer_table = data["offer"]
    per_store_table = checked.offer.per_store
    shipping_table = checked.offer.shipping

    offer = parse_sources(
        {k: v for k, v in offer_table.items() if k not in ("per_store", "shipping")},
        GLOBAL_FIELDS, f"{path} [offer]",
    )
    per_store = parse_sources(per_store_table, STORE_FIELDS, f"{path} [offer.per_store]")
    if not isinstance(shipping_table, list) or len(shipping_table) > MAX_SHIPPING_OPTIONS:
        raise ConfigError(f"{path}: [[offer.shipping]] holds at most {MAX_SHIPPING_OPTIONS} "
                          "options")
    shipping = tuple(
        parse_sources(option, SHIPPING_FIELDS, f"{path} [[offer.shipping]] #{i}")
        for i, option in enumerate(shipping_table, start=1)
    )
    overrides = {
        str(name): parse_sources(table, STORE_FIELDS, f"{path} [stores.{name}]")
        for name, table in checked.stores.items()
    }
    for required in ("sku", "grade", "stock"):
        if required not in offer:
            raise ConfigError(f"{path}: [offer] must map {required}")
    for table, sources in (("[offer]", offer), ("[offer.per_store]", per_store),
                           *((f"[stores.{name}]", o) for name, o in overrides.items())):
        for name in REQUIRED.intersection(sources):
            if sources[name].optional:
                raise ConfigError(f"{path} {table} {name}: a required field cannot be optional")
    if "product_id" not in offer and "ean" not in offer:
        raise ConfigError(f"{path}: [offer] must map product_id, ean, or both")
    if "price" not in per_store:
        raise ConfigError(f"{path}: [offer.per_store] must map price")

    product_table = dict(data.get("product", {}))
    attribute_table = product_table.pop("attributes", {})
    product = parse_sources(product_table, PRODUCT_FIELDS, f"{path} [product]")
    attributes = {str(name): Source.parse(spec, f"{path} [product.attributes] {name}")
                  for name, spec in attribute_table.items()}

    grades, grade_words = _grades(path.parent, meta.grades)
    carriers, fallback = _carriers(path.parent, meta.carriers)
    return Profile(
        name=meta.name or path.stem, path=path, offer=offer, per_store=per_store,
        shipping=shipping, store_overrides=overrides, grades=grades, carriers=carriers,
        carrier_fallback=fallback, product=product, attributes=attributes,
        grade_words=grade_words, pricing=load_pricing(data.get("pricing"), path),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read mapping file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"mapping file {path} is not valid TOML: {exc}") from None


def _value_table(folder: Path, file: str) -> Path:
    """A value table named by a profile: beside the profile, else a bundled one by that name,
    so a copy of a bundled profile keeps working wherever it is put."""
    beside = folder / file
    bundled = BUNDLED_MAPPINGS / file
    if not beside.is_file() and not Path(file).is_absolute() and bundled.is_file():
        return bundled
    return beside


def _grades(folder: Path, file: str | None) -> tuple[dict[str, str], tuple[str, ...]]:
    vocabulary = {normalise(g): g for g in GRADES}
    vocabulary.update({str(state): grade for grade, state in GRADE_STATE.items()})
    words: list[str] = []
    if file:
        path = _value_table(folder, file)
        table = _checked(_GradesFile, _read_toml(path), path).grades
        for grade, spellings in table.items():
            if grade not in GRADES:
                raise ConfigError(f"{path}: {grade!r} is not a Back Market grade; "
                                  "expected one of " + ", ".join(GRADES))
            for word in map(str, spellings):
                key = normalise(word)
                if vocabulary.get(key, grade) != grade:
                    raise ConfigError(f"{path}: {word!r} maps to both "
                                      f"{vocabulary[key]} and {grade}")
                vocabulary[key] = grade
                words.append(word)
    return vocabulary, tuple(words)


def _carriers(folder: Path, file: str | None) -> tuple[dict[str, str], str | None]:
    table = {normalise(s): s for s in SHIPPERS}
    fallback: str | None = None
    if file:
        path = _value_table(folder, file)
        data = _checked(_CarriersFile, _read_toml(path), path)
        for name, shipper in data.carriers.items():
            if shipper not in SHIPPERS:
                raise ConfigError(f"{path}: carrier {name!r} maps to {shipper!r}, which is not "
                                  "a Back Market shipper value")
            table[normalise(name)] = shipper
        fallback = data.fallback or None
        if fallback is not None and fallback not in SHIPPERS:
            raise ConfigError(f"{path}: fallback {fallback!r} is not a Back Market shipper value")
    return table, fallback


# --- compiled against a header ----------------------------------------------------------------

@dataclass(frozen=True)
class StoreMapping:
    store: StoreSettings
    fields: dict[str, Getter]
    shipping: tuple[dict[str, Getter], ...]
    product: dict[str, Getter] = field(default_factory=dict)
    attributes: dict[str, Getter] = field(default_factory=dict)
    pricing: dict[str, Getter] = field(default_factory=dict)  # [pricing.columns]


@dataclass(frozen=True)
class CompiledMapping:
    profile: Profile
    header: tuple[str, ...]
    offer: dict[str, Getter]
    stores: tuple[StoreMapping, ...]
    notes: tuple[str, ...] = field(default=())


def compile_mapping(
    profile: Profile, header: Sequence[str], stores: Sequence[StoreSettings]
) -> CompiledMapping:
    """Resolve every field to a column index, or fail naming the field and the column."""
    index: dict[str, int] = {}
    duplicates: set[str] = set()
    for i, name in enumerate(header):
        key = name.strip().casefold()
        if key in index:
            duplicates.add(name.strip())
        index.setdefault(key, i)
    notes: list[str] = []

    def getter(field_name: str, source: Source, required: bool) -> Getter:
        if source.constant is not None:
            return Getter(None, source.constant, None)
        assert source.column is not None
        key = source.column.strip().casefold()
        if key in {d.casefold() for d in duplicates}:
            raise ConfigError(f"catalog header has the column {source.column!r} more than once; "
                              f"cannot tell which one feeds {field_name}")
        if key not in index:
            if required or not source.optional:
                hint = "" if required else (
                    "; if the catalog really has no such column, mark it optional = true in "
                    f"the mapping {profile.path.name} (its default then applies to every row)")
                raise ConfigError(
                    f"catalog has no column {source.column!r} for field {field_name} (renamed "
                    f"or missing?); header is: {_shown_header(header)}{hint}"
                )
            if source.default != "":  # an empty default: the field is simply not given
                notes.append(f"column {source.column!r} for {field_name} is not in the "
                             "catalog" + ("" if source.default is None else
                                          f": {source.default!r} for every row"))
            return Getter(None, source.default, source.column)
        # Rejections name the column as the seller's header spells it ('Prix FR', not the
        # profile's 'Prix fr' from 'Prix {country}'): the header is matched ignoring case.
        return Getter(index[key], source.default, header[index[key]].strip())

    offer = {
        name: getter(name, source, name in REQUIRED)
        for name, source in profile.offer.items()
    }
    compiled_stores = []
    for store in stores:
        sources = dict(profile.per_store)
        sources.update(profile.store_overrides.get(store.name, {}))
        fields = {
            name: getter(f"{name} ({store.name})", source.for_store(store), name in REQUIRED)
            for name, source in sources.items()
        }
        shipping = tuple(
            {name: getter(f"shipping {name} ({store.name})", source.for_store(store), False)
             for name, source in option.items()}
            for option in profile.shipping
        )
        product = {name: getter(f"product {name} ({store.name})", source.for_store(store),
                                False)
                   for name, source in profile.product.items()}
        attributes = {name: getter(f"attribute {name} ({store.name})",
                                   source.for_store(store), False)
                      for name, source in profile.attributes.items()}
        pricing = {name: getter(f"pricing {name} ({store.name})", source.for_store(store),
                                False)
                   for name, source in (profile.pricing.columns if profile.pricing else {}
                                        ).items()}
        compiled_stores.append(StoreMapping(store, fields, shipping, product, attributes,
                                            pricing))
    links = [offer[name] for name in ("product_id", "ean") if name in offer]
    if links and all(g.index is None and g.column is not None for g in links):
        raise ConfigError(
            "catalog has neither of the product link columns "
            + " nor ".join(repr(g.column) for g in links)
            + f"; every row needs a product_id or an EAN; header is: {_shown_header(header)}")
    unknown_overrides = set(profile.store_overrides) - {s.name for s in stores}
    notes.extend(f"profile overrides store {name!r}, which is not configured"
                 for name in sorted(unknown_overrides))
    return CompiledMapping(profile, tuple(header), offer, tuple(compiled_stores), tuple(notes))


def _shown_header(header: Sequence[str], limit: int = 30) -> str:
    """The header for an error message, cut short when it is huge (or garbage)."""
    shown = ", ".join(name[:40] for name in header[:limit])
    return shown + (f", ... ({len(header)} columns)" if len(header) > limit else "")
