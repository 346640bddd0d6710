"""One catalog cell's text as a value, or ``BadValue`` saying what was expected instead:
amounts (a decimal comma accepted, nothing ambiguous), counts, product ids (a UUID or a
product URL), EANs (with their check digit) and SKUs. Pure.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal
from functools import lru_cache
from typing import Final

MAX_SKU: Final = 64


_BAD_SKU: Final = re.compile(r'[\r\n\t;"\x00-\x1f\x7f\ud800-\udfff]')


# Unicode categories a SKU never holds: controls, format characters (U+200B, U+FEFF, U+2060,
# bidi marks...), surrogates, private use, unassigned, and line/paragraph separators. They
# make two SKUs that look the same, and Back Market would hold them as two listings.
_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)


_AMOUNT: Final = re.compile(r"\d{1,9}(\.\d{1,2})?")


_PLAIN_AMOUNT: Final = re.compile(r"\d{1,9}(\.\d{1,2})?")


_INTEGER: Final = re.compile(r"\+?\d{1,9}(\.0+)?")


AMOUNT_EXPECTED: Final = "an amount like 199.90 (digits, at most 2 decimals, no thousands " \
    "separator or currency sign)"


class BadValue(ValueError):
    """A value that cannot be used, with what was expected instead."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


def parse_amount(text: str, *, positive: bool = True) -> Decimal:
    """A money amount. Accepts a decimal comma ("12,50"); refuses anything ambiguous."""
    if _PLAIN_AMOUNT.fullmatch(text):  # the common case, with nothing to clean or doubt
        value = Decimal(text)
        if value or not positive:
            return value
    result = _amount(text, positive)
    if isinstance(result, str):
        raise BadValue(result)
    return result


@lru_cache(maxsize=131_072)
def _amount(text: str, positive: bool) -> Decimal | str:
    """The amount, or what was expected instead (cached: catalogs repeat their prices)."""
    try:
        return _parse_amount(text, positive)
    except BadValue as exc:
        return exc.expected


def _parse_amount(text: str, positive: bool) -> Decimal:
    raw = text.strip()
    if raw.count(",") == 1 and "." not in raw:
        raw = raw.replace(",", ".")
    negative = raw.startswith("-")
    if negative:
        raw = raw[1:]
    if not _AMOUNT.fullmatch(raw):
        raise BadValue(AMOUNT_EXPECTED.replace("an amount", "a positive amount", 1) if positive
                       else AMOUNT_EXPECTED)
    value = Decimal(raw)
    if negative and value != 0:
        raise BadValue("a positive amount" if positive else "an amount of 0 or more")
    if positive and value <= 0:
        raise BadValue("an amount greater than 0")
    return value


def parse_count(text: str) -> int:
    """A whole number of items or months (spreadsheets may write 12 as 12.0)."""
    result = _count(text)
    if isinstance(result, str):
        raise BadValue(result)
    return result


@lru_cache(maxsize=65_536)
def _count(text: str) -> int | str:
    try:
        return _parse_count(text)
    except BadValue as exc:
        return exc.expected


def _parse_count(text: str) -> int:
    raw = text.strip()
    if raw.startswith("-") and _INTEGER.fullmatch(raw[1:]):
        raise BadValue("a whole number of 0 or more")
    if not _INTEGER.fullmatch(raw):
        raise BadValue("a whole number like 3")
    return int(Decimal(raw))


def parse_product_id(text: str) -> str:
    """A product UUID, or a Back Market product page URL carrying one."""
    raw = text.strip()
    if _UUID.fullmatch(raw):
        return raw.lower()
    if raw.lower().startswith(("http://", "https://")):
        found: list[str] = _UUID.findall(raw.split("?")[0].split("#")[0])
        if found:
            return found[-1].lower()
        raise BadValue("a Back Market product URL ending with the product's UUID")
    raise BadValue("a Back Market product UUID like 3f2b...-...-...-...-... or a product URL")


def parse_ean(text: str) -> str:
    raw = text.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) not in (8, 12, 13):
        raise BadValue("an EAN of 8, 12 or 13 digits")
    if ean_check_digit(raw[:-1]) != raw[-1]:
        raise BadValue("an EAN with a valid check digit")
    return raw


def ean_check_digit(digits: str) -> str:
    """The GS1 check digit of these ASCII digits, as ``stdnum.ean.calc_check_digit`` gives it
    (weights 3 and 1 from the right), without its generic cleaning and per-digit generator,
    which cost more than the rest of a row's validation: the digits are summed as their
    bytes (each its digit + 48), not one int() each."""
    raw = digits.encode("ascii")
    odd, even = raw[-1::-2], raw[-2::-2]
    total = 3 * sum(odd) + sum(even) - 48 * (3 * len(odd) + len(even))
    return "0123456789"[-total % 10]


def sku_problem(sku: str) -> str | None:
    """What is wrong with a SKU cell, as what was expected instead; None when it is valid."""
    if len(sku) > MAX_SKU:
        return f"at most {MAX_SKU} characters (found {len(sku)})"
    if _BAD_SKU.search(sku):
        return (f"a SKU of at most {MAX_SKU} characters, without tabs, line breaks, control "
                "characters, ';' or '\"'")
    if not sku.isascii():
        for char in sku:
            category = unicodedata.category(char)
            if category in _INVISIBLE_CATEGORIES or (category == "Zs" and char != " "):
                name = unicodedata.name(char, "unnamed")
                return (f"a SKU without invisible or special spaces (found U+{ord(char):04X} "
                        f"{name}, which would make a second SKU that looks the same)")
    return None
