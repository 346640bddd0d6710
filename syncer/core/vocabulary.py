"""Back Market's fixed vocabularies, as its published API spec defines them."""

from __future__ import annotations

from typing import Final

# Markets (the Accept-Language values) of each platform.
LOCALES: Final[dict[str, tuple[str, ...]]] = {
    "EU": (
        "fr-fr", "fr-be", "es-es", "de-de", "de-at", "it-it", "en-gb",
        "nl-nl", "pt-pt", "en-ie", "el-gr", "sk-sk", "sv-se",
    ),
    "US": ("en-us",),
    "AP": ("ja-jp", "en-au"),
}
PLATFORM_OF: Final = {loc: plat for plat, locs in LOCALES.items() for loc in locs}
# Markets whose currency is not EUR; they must send `currency` with a price.
MARKET_CURRENCY: Final = {
    "en-gb": "GBP", "sv-se": "SEK", "en-us": "USD", "ja-jp": "JPY", "en-au": "AUD",
}


def market_currency(locale: str) -> str:
    return MARKET_CURRENCY.get(locale, "EUR")


# AestheticGradeValue, best first, with the deprecated integer ``state`` of each grade.
GRADES: Final = ("PREMIUM", "EXCELLENT", "VERY_GOOD", "GOOD", "FAIR", "STALLONE")
GRADE_STATE: Final = {
    "PREMIUM": 9, "EXCELLENT": 0, "VERY_GOOD": 1, "GOOD": 2, "FAIR": 3, "STALLONE": 4,
}
STATE_GRADE: Final = {state: grade for grade, state in GRADE_STATE.items()}

# The ``Shipper`` enum: the carrier names Back Market accepts on listings and shipments.
SHIPPERS: Final = frozenset({
    'Allied Express',
    'Aramex Australia',
    'Australia Post',
    'Australia Post Express',
    'Austrian Post',
    'BPost',
    'BRT',
    'Chronopost',
    'Chronopost Express',
    'ColisPrivé',
    'Colissimo',
    'Correos',
    'Correos Express',
    'Couriers Please',
    'CTT',
    'Cubyn',
    'Cubyn Express',
    'DB Schenker',
    'Deutsche Post',
    'DHL',
    'DHL DE',
    'DHL Express',
    'DHL  EXPRESS',
    'DHL NL',
    'DHL Parcel Spain',
    'DHL SP',
    'DPD',
    'DPD Benelux',
    'DPD DE',
    'DPD FR',
    'DPD International',
    'DPD UK',
    'DPD UK Express',
    'DTDC Australia',
    'FedEx',
    'FedEx - 2Days',
    'FedEx Express',
    'FedEx International',
    'FedEx - Overnight',
    'Geodis',
    'Girard Agediss - Livraison dans la pièce de votre choix sur RDV',
    'GLS',
    'GLS - DE',
    'GLS - FR',
    'GLS International',
    'GLS - IT',
    'GLS-SPAIN',
    'GLS Spain Express',
    'Hermes - DE',
    'Hermes - UK',
    'Japan Post',
    'Livraison au pied du camion',
    'Livraison dans la pièce de votre choix',
    'Logoix',
    'MRW',
    'Murfy transporteur',
    'NACEX',
    'ParcelForce Express',
    'Parcelforce (Worldwide)',
    'Parcelpoint Pty Ltd',
    'Poste Italiane',
    'Post NL',
    'Private Transporter',
    'Royal Mail',
    'Royal Mail Express',
    'Sagawa',
    'Seino',
    'Sendle',
    'Seur',
    'Socolissimo',
    'Star Track Express',
    'TIPSA',
    'TIPSA Express',
    'TNT',
    'TNT Australia',
    'TNT Express',
    'Tourline',
    'UPS',
    'UPS 2 days',
    'UPS 2nd Day Air',
    'UPS Express',
    'UPS express save',
    'UPS Ground',
    'UPS next day',
    'UPS Overnight',
    'UPS standard',
    'USPS',
    'USPS Express',
    'USPS - First Class',
    'USPS - Priority Mail',
    'USPS - Priority Mail Express',
    'VIR',
    'Yamato',
    'Zeleris',
    'Other',
})

# Limits of the UpdateOrder fields (shipping an order), as the spec and Back Market's back
# office apply them.
MAX_TRACKING_NUMBER: Final = 200
MAX_TRACKING_URL: Final = 300
MAX_SERIAL: Final = 50
IMEI_DIGITS: Final = 15
# The shipper of a shipment is free text (real orders carry names outside ``SHIPPERS``, the
# known values): only its length is bounded.
MAX_SHIPPER: Final = 200
