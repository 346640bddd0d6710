"""Which offer field a column of a seller's export feeds, by its name: the names French,
German, English and Spanish exports commonly use, compared as the grade tables are (case,
accents, ``_``/``-`` and punctuation do not matter), and the country a price column names by
a code at its end or start (``Prix FR``, ``price_de``, ``fr_prix``). Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from syncer.core.vocabulary import PLATFORM_OF
from syncer.planning.mapping import normalise

# Phrase (as ``_phrase`` makes it) -> the languages it is a word of ("" when any).
Synonyms = dict[str, str]


GLOBAL_SYNONYMS: Final[dict[str, Synonyms]] = {
    "sku": {"sku": "", "seller sku": "en", "merchant sku": "en", "sku vendeur": "fr",
            "reference": "fr", "reference vendeur": "fr", "reference interne": "fr",
            "ref": "fr", "ref interne": "fr", "artikelnummer": "de", "artikel nr": "de",
            "artikelnr": "de", "art nr": "de", "referencia": "es", "ref vendedor": "es",
            "codigo": "es", "item number": "en"},
    "product_id": {"product id": "", "backmarket id": "", "back market id": "", "bm id": "",
                   "backmarket product id": "", "id backmarket": "", "id back market": "",
                   "product uuid": "en"},
    "ean": {"ean": "", "ean13": "", "ean 13": "", "gtin": "", "gtin13": "", "code ean": "fr",
            "ean code": "", "codigo ean": "es"},
    "grade": {"grade": "en", "condition": "", "state": "en", "etat": "fr",
              "grade esthetique": "fr", "zustand": "de", "estado": "es", "condicion": "es"},
    "stock": {"stock": "", "quantity": "en", "qty": "en", "available quantity": "en",
              "quantite": "fr", "qte": "fr", "quantite disponible": "fr",
              "stock disponible": "fr", "bestand": "de", "lagerbestand": "de", "menge": "de",
              "cantidad": "es", "existencias": "es", "inventario": "es"},
    "safety_quantity": {"safety stock": "en", "safety quantity": "en",
                        "stock de securite": "fr", "stock securite": "fr",
                        "sicherheitsbestand": "de", "mindestbestand": "de",
                        "stock de seguridad": "es", "stock minimo": "es"},
    "max_quantity": {"max quantity": "en", "maximum quantity": "en", "quantite max": "fr",
                     "quantite maximale": "fr", "hochstmenge": "de", "max menge": "de",
                     "cantidad maxima": "es", "cantidad max": "es"},
    "deee": {"deee": "fr", "d3e": "fr", "eco participation": "fr", "ecoparticipation": "fr",
             "taxe deee": "fr", "weee": "en"},
}


STORE_SYNONYMS: Final[dict[str, Synonyms]] = {
    "price": {"price": "en", "selling price": "en", "sale price": "en", "prix": "fr",
              "prix de vente": "fr", "prix ttc": "fr", "prix vente": "fr", "preis": "de",
              "verkaufspreis": "de", "vk preis": "de", "precio": "es",
              "precio de venta": "es", "pvp": "es"},
    "currency": {"currency": "en", "devise": "fr", "wahrung": "de", "moneda": "es",
                 "divisa": "es"},
    "warranty": {"warranty": "en", "warranty months": "en", "warranty delay": "en",
                 "garantie": "fr de", "garantie mois": "fr", "garantie en mois": "fr",
                 "duree de garantie": "fr", "garantie monate": "de",
                 "garantie in monaten": "de", "gewahrleistung": "de", "garantia": "es",
                 "garantia meses": "es", "garantia en meses": "es"},
    "comment": {"comment": "en", "comments": "en", "commentaire": "fr",
                "commentaires": "fr", "kommentar": "de", "bemerkung": "de",
                "comentario": "es", "comentarios": "es", "observaciones": "es"},
    "min_price": {"min price": "en", "minimum price": "en", "price min": "en",
                  "prix min": "fr", "prix minimum": "fr", "mindestpreis": "de",
                  "preis min": "de", "precio minimo": "es", "precio min": "es"},
    "max_price": {"max price": "en", "maximum price": "en", "price max": "en",
                  "prix max": "fr", "prix maximum": "fr", "hochstpreis": "de",
                  "preis max": "de", "precio maximo": "es", "precio max": "es"},
}


# Shipping options use the default profile's names: shipper_1, shipping_price_1_fr, ...
SHIPPING_GLOBAL: Final = re.compile(r"(shipper|shipping delay) ([123])")


SHIPPING_PRICE: Final = re.compile(r"shipping price ([123])")


# A country code in a column name -> the Back Market market it sells on.
COUNTRY_LOCALE: Final = {
    "fr": "fr-fr", "be": "fr-be", "es": "es-es", "de": "de-de", "at": "de-at",
    "it": "it-it", "gb": "en-gb", "uk": "en-gb", "nl": "nl-nl", "pt": "pt-pt",
    "ie": "en-ie", "gr": "el-gr", "sk": "sk-sk", "se": "sv-se", "us": "en-us",
    "jp": "ja-jp", "au": "en-au",
}


# The market a price column with no country is for, by the header's language (English is
# spoken in too many markets to tell).
LANGUAGE_LOCALE: Final = {"fr": "fr-fr", "de": "de-de", "es": "es-es"}


def _phrase(name: str) -> str:
    return " ".join(re.sub(r"[^a-z0-9]+", " ", normalise(name)).split())


@dataclass(frozen=True)
class Match:
    field: str          # a GLOBAL or STORE field, or shipper_N / shipping_delay_N / ...
    column: str
    index: int
    rank: int           # position of the synonym in its list: lower is a surer match
    languages: str
    locale: str | None = None   # per-store fields: the market the column names, if any
    code: str | None = None     # the country code (or locale) as the column spells it


def match_column(index: int, name: str) -> Match | None:
    phrase = _phrase(name)
    if not phrase:
        return None
    for fieldname, synonyms in GLOBAL_SYNONYMS.items():
        if phrase in synonyms:
            return Match(fieldname, name, index, list(synonyms).index(phrase),
                         synonyms[phrase])
    if found := SHIPPING_GLOBAL.fullmatch(phrase):
        kind = "shipper" if found.group(1) == "shipper" else "delay"
        return Match(f"shipping_{kind}_{found.group(2)}", name, index, 0, "en")
    store_match = _store_match(index, name, phrase, None, None)
    if store_match is not None:
        return store_match
    tokens = phrase.split()
    for rest, code in _country_splits(tokens):
        locale = COUNTRY_LOCALE.get(code) if " " not in code else \
            code.replace(" ", "-") if code.replace(" ", "-") in PLATFORM_OF else None
        if locale is not None:
            spelled = _spelled(name, code)
            if spelled is not None and (found_store := _store_match(
                    index, name, rest, locale, spelled)) is not None:
                return found_store
    return None


def _store_match(index: int, name: str, phrase: str, locale: str | None,
                 code: str | None) -> Match | None:
    for fieldname, synonyms in STORE_SYNONYMS.items():
        if phrase in synonyms:
            return Match(fieldname, name, index, list(synonyms).index(phrase),
                         synonyms[phrase], locale, code)
    if found := SHIPPING_PRICE.fullmatch(phrase):
        return Match(f"shipping_price_{found.group(1)}", name, index, 0, "en", locale, code)
    return None


def _country_splits(tokens: list[str]) -> list[tuple[str, str]]:
    """(rest of the name, country code or "xx yy" locale) for a code at the end or start."""
    splits = []
    if len(tokens) >= 3:
        splits.append((" ".join(tokens[:-2]), " ".join(tokens[-2:])))
    if len(tokens) >= 2:
        splits.append((" ".join(tokens[:-1]), tokens[-1]))
        splits.append((" ".join(tokens[1:]), tokens[0]))
    return splits


def _spelled(name: str, code: str) -> str | None:
    """The code as the column name writes it (``FR``, ``fr-BE``), for its template."""
    pattern = r"[\W_]+".join(re.escape(part) for part in code.split())
    found = re.search(rf"(?i)(?:^|(?<=[\W_])){pattern}(?=[\W_]|$)", name)
    return found.group() if found else None
