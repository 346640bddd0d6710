"""Where an offer field's raw text comes from: a profile's field specs (``Source``) and,
compiled against a catalog header, the getters that pull it out of a row (``Getter``).

Shared by the mapping profile (syncer.planning.mapping) and its ``[pricing]`` table
(syncer.planning.pricing), so neither imports the other's internals. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from syncer.config.stores import StoreSettings
from syncer.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Source:
    """Where one field's raw text comes from: a column (template), a default, or a constant.

    A default fills the column's empty cells. A column missing from the catalog's header is
    an error (a renamed column must not silently become its default for every row: a
    ``safety_stock`` renamed would raise every quantity), unless ``optional`` says the
    catalog may not have it at all."""

    column: str | None = None
    default: str | None = None
    constant: str | None = None
    optional: bool = False

    @classmethod
    def parse(cls, spec: Any, where: str) -> Source:
        if isinstance(spec, str):
            return cls(column=spec)
        if isinstance(spec, dict):
            unknown = set(spec) - {"column", "default", "value", "optional"}
            if unknown:
                raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; expected "
                                  "column, default, optional or value")
            optional = spec.get("optional", False)
            if not isinstance(optional, bool):
                raise ConfigError(f"{where}: optional must be true or false, got {optional!r}")
            if "value" in spec:
                if "column" in spec:
                    raise ConfigError(f"{where}: give either column or value, not both")
                return cls(constant=str(spec["value"]))
            if "column" not in spec:
                raise ConfigError(f"{where}: a table needs column = \"...\" or value = \"...\"")
            default = spec.get("default")
            return cls(column=str(spec["column"]),
                       default=None if default is None else str(default), optional=optional)
        raise ConfigError(f"{where}: expected a column name or a table, got {spec!r}")

    def for_store(self, store: StoreSettings) -> Source:
        if self.column is None:
            return self
        try:
            column = self.column.format(country=store.country, locale=store.locale,
                                        store=store.name)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"column template {self.column!r}: unknown placeholder {exc}; use {{country}}, "
                "{locale} or {store}"
            ) from None
        return Source(column=column, default=self.default, optional=self.optional)


def parse_sources(table: Any, allowed: Sequence[str], where: str) -> dict[str, Source]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(table) - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown fields {sorted(unknown)}; expected some of "
                          + ", ".join(allowed))
    return {name: Source.parse(spec, f"{where} {name}") for name, spec in table.items()}


@dataclass(frozen=True, slots=True)
class Getter:
    """Pulls one field's raw text out of a row: the cell, else the default, else None."""

    index: int | None
    default: str | None
    column: str | None

    def __call__(self, values: Sequence[str]) -> str | None:
        if self.index is not None:
            cell = values[self.index].strip()
            if cell:
                return cell
        return self.default or None
