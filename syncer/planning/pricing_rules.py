"""Pricing rules: a mapping profile's ``[pricing]`` table, per store (its
``[pricing.stores.<name>]`` overrides merged), and the row columns pricing reads
(``[pricing.columns]``), checked like the rest of the profile: a wrong key or type names the
file, the key and what was expected. Pure: what ``syncer.planning.pricing`` applies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from syncer.core.offers import CENT
from syncer.errors import ConfigError

if TYPE_CHECKING:
    from syncer.planning.sources import Source

Strategy = Literal["catalog", "win", "match"]
MinPriceMode = Literal["catalog", "band", "backpricer"]
STRATEGIES: Final = ("catalog", "win", "match")
# The profile's [pricing.columns]: catalog cells, per store (column templates as elsewhere).
PRICING_COLUMNS: Final = ("cost", "shipping", "floor", "ceiling", "strategy")
ZERO: Final = Decimal(0)


# --- configuration ------------------------------------------------------------------------------

def _decimal(value: Any) -> Any:
    """A share or an amount from TOML: a number, "0.10", or "10%". TOML numbers are floats:
    they are read through their shortest text (0.1 -> Decimal("0.1")), never as binary."""
    if isinstance(value, bool):
        raise ValueError(f"expected a number such as 0.10 or \"10%\", got {value!r}")
    if isinstance(value, int | float):
        value = repr(value)
    if isinstance(value, str):
        text = value.strip()
        percent = text.endswith("%")
        try:
            number = Decimal(text.removesuffix("%").strip())
        except InvalidOperation:
            raise ValueError(f"expected a number such as 0.10 or \"10%\", got {value!r}") \
                from None
        if not number.is_finite():
            raise ValueError(f"expected a finite number, got {value!r}")
        return number / 100 if percent else number
    return value


Amount = Annotated[Decimal, BeforeValidator(_decimal)]


class PricingRules(BaseModel):
    """One store's pricing rules (a ``[pricing]`` table, with a store's overrides merged)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # The kill switch: false, and every offer goes out at its catalog price.
    enabled: bool = True
    strategy: Strategy = "catalog"
    # Back Market's commission, a share of the selling price.
    commission: Amount = Field(Decimal("0.10"), ge=0, lt=1)
    margin_amount: Amount = Field(ZERO, ge=0)
    margin_share: Amount = Field(ZERO, ge=0, lt=1)
    ceiling_share: Amount = Field(ZERO, ge=0)
    # "win" sets the price to win minus this step.
    step: Amount = Field(CENT, ge=0)
    max_change_per_run: Amount = Field(Decimal("0.05"), ge=0, le=1)
    max_change_per_day: Amount = Field(Decimal("0.15"), ge=0)
    cooldown_minutes: float = Field(60, ge=0)
    max_age_minutes: float = Field(60, gt=0)
    # "catalog": the catalog's min_price goes out as mapped (its band bounds our prices);
    # "band": min_price follows the price, the lowest the band allows, never under the floor;
    # "backpricer": we move no price, we send a min_price and leave BackBox moves to Back
    # Market's BackPricer.
    min_price: MinPriceMode = "catalog"
    # The mass-change guard: a plan stops when more than this share of the live offers (and
    # more than the allowance) would change price by more than mass_change_move.
    mass_change_share: Amount = Field(Decimal("0.20"), ge=0, le=1)
    mass_change_move: Amount = Field(Decimal("0.10"), ge=0)
    mass_change_allowance: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _room_for_a_price(self) -> PricingRules:
        if self.commission + self.margin_share >= 1:
            raise ValueError(f"commission {share_text(self.commission)} + margin_share "
                             f"{share_text(self.margin_share)} must stay under 100% of the price")
        return self


@dataclass(frozen=True)
class PricingProfile:
    """A mapping profile's ``[pricing]``: the rules per store and the row columns."""

    base: PricingRules = field(default_factory=PricingRules)
    stores: Mapping[str, PricingRules] = field(default_factory=dict)
    columns: Mapping[str, Source] = field(default_factory=dict)

    def rules(self, store: str) -> PricingRules:
        return self.stores.get(store, self.base)


_MESSAGES: Final = {
    "bool_type": "expected true or false", "string_type": "expected a string",
    "int_type": "expected a whole number", "float_type": "expected a number",
    "dict_type": "expected a table", "extra_forbidden": "unknown key",
    "decimal_type": "expected a number such as 0.10 or \"10%\"",
}


def load_pricing(table: Any, path: Path) -> PricingProfile:
    """The ``[pricing]`` table of a profile, checked: a wrong key or type names the file, the
    key and what was expected, as the rest of the profile does."""
    from syncer.planning.sources import parse_sources as _sources

    if table is None:
        return PricingProfile()
    if not isinstance(table, dict):
        raise ConfigError(f"mapping file {path}: pricing: expected a table")
    table = dict(table)
    columns = _sources(table.pop("columns", {}), PRICING_COLUMNS, f"{path} [pricing.columns]")
    overrides = table.pop("stores", {})
    if not isinstance(overrides, dict):
        raise ConfigError(f"mapping file {path}: pricing.stores: expected a table")
    base = _rules(table, path, "pricing")
    stores = {}
    for name, override in overrides.items():
        if not isinstance(override, dict):
            raise ConfigError(f"mapping file {path}: pricing.stores.{name}: expected a table")
        stores[str(name)] = _rules({**table, **override}, path, f"pricing.stores.{name}")
    return PricingProfile(base, stores, columns)


def _rules(data: dict[str, Any], path: Path, at: str) -> PricingRules:
    try:
        return PricingRules.model_validate(data)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            where = ".".join([at, *(str(p) for p in error["loc"])])
            kind = error["type"]
            if kind == "literal_error":
                expected = "expected " + error["msg"].removeprefix("Input should be ")
            else:
                expected = _MESSAGES.get(kind, error["msg"].removeprefix("Value error, "))
            if kind not in ("extra_forbidden", "value_error"):
                expected += f", got {error['input']!r}"[:80]
            problems.append(f"{where}: {expected}")
        raise ConfigError(f"mapping file {path}: " + "; ".join(dict.fromkeys(problems))) \
            from None


def share_text(share: Decimal) -> str:
    """0.1 -> "10%"."""
    text = f"{(share * 100).normalize():f}"
    return f"{text}%"
