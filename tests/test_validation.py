"""Mapping and validation of catalog rows: every outcome is a valid offer or a rejection
that names the row, the SKU, the field, the value and what was expected."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from stdnum import ean as ean_check

from syncer.config.settings import BUNDLED_MAPPINGS
from syncer.config.stores import StoreSettings
from syncer.errors import ConfigError
from syncer.planning.cells import BadValue, parse_amount, parse_count, parse_product_id
from syncer.planning.mapping import compile_mapping, load_profile
from syncer.planning.validation import Validator
from tests.conftest import HEADER, catalog_row

STORES = [StoreSettings(name="fr", locale="fr-fr"), StoreSettings(name="de", locale="de-de")]


def validator(header: str = HEADER, stores: list[StoreSettings] = STORES) -> Validator:
    profile = load_profile(BUNDLED_MAPPINGS / "default.toml")
    return Validator(compile_mapping(profile, header.split(";"), stores))


def run(row: str, v: Validator | None = None, number: int = 2):  # type: ignore[no-untyped-def]
    return (v or validator()).validate(number, row.split(";"))


def only_problem(row: str) -> tuple[str, str | None, str]:
    result = run(row)
    assert not result.offers, result.offers
    assert len(result.rejections) == 1, result.rejections
    r = result.rejections[0]
    return r.field, r.value, r.expected


def test_valid_row_gives_one_offer_per_store() -> None:
    result = run(catalog_row("SKU-1", comment_fr="Très bon", price_de="209,90"))
    assert not result.rejections
    fr, de = result.offers
    assert (fr.store, fr.price, fr.currency, fr.comment) == ("fr", Decimal("199.90"), "EUR",
                                                             "Très bon")
    assert (de.store, de.price) == ("de", Decimal("209.90"))
    assert fr.grade == de.grade == "EXCELLENT"
    assert fr.ean == "4006381333931"


@pytest.mark.parametrize("word, grade", [
    ("EXCELLENT", "EXCELLENT"), ("very_good", "VERY_GOOD"), ("0", "EXCELLENT"),
    ("2", "GOOD"), ("9", "PREMIUM"), ("Shiny", "EXCELLENT"), ("gold", "VERY_GOOD"),
    ("Silver", "GOOD"), ("BRONZE", "FAIR"), ("Stallone", "STALLONE"),
    ("Parfait état", "EXCELLENT"), ("Très bon état", "VERY_GOOD"), ("tres bon etat", "VERY_GOOD"),
    ("Bon état", "GOOD"), ("État correct", "FAIR"), ("  Very Good ", "VERY_GOOD"),
])
def test_every_grade_vocabulary_is_accepted(word: str, grade: str) -> None:
    result = run(catalog_row("G", grade=word))
    assert not result.rejections
    assert {o.grade for o in result.offers} == {grade}


def test_unknown_grade_is_rejected_with_the_vocabulary() -> None:
    field, value, expected = only_problem(catalog_row("G", grade="Mint"))
    assert (field, value) == ("grade", "Mint")
    assert "EXCELLENT" in expected and "Shiny" in expected and "Bon état" in expected


def test_bad_ean_check_digit_is_rejected() -> None:
    field, value, expected = only_problem(catalog_row("E", ean="4006381333932"))
    assert (field, value) == ("ean", "4006381333932")
    assert "check digit" in expected


def test_ean_mangled_by_a_spreadsheet_is_rejected() -> None:
    field, value, _ = only_problem(catalog_row("E", ean="4.00638E+12"))
    assert (field, value) == ("ean", "4.00638E+12")


def test_row_without_product_link_is_rejected() -> None:
    field, value, expected = only_problem(catalog_row("N", ean=""))
    assert field == "product_id" and value is None
    assert "EAN" in expected and "UUID" in expected


def test_product_uuid_is_taken_from_a_back_market_url() -> None:
    url = ("https://www.backmarket.fr/fr-fr/p/iphone-13-128-go-minuit-debloque/"
           "3B4F1E2A-1111-4222-8333-944455556666?l=10#scroll=false")
    result = run(catalog_row("U", ean="", product_id=url))
    assert not result.rejections
    assert result.offers[0].product_id == "3b4f1e2a-1111-4222-8333-944455556666"


def test_url_without_uuid_is_rejected() -> None:
    field, _, expected = only_problem(
        catalog_row("U", ean="", product_id="https://www.backmarket.fr/fr-fr/p/iphone"))
    assert field == "product_id" and "URL" in expected


@pytest.mark.parametrize("price", ["0", "-5", "-0", "abc", "1.234,56", "1,234.56", "1e3",
                                   "NaN", "Infinity", "12.345", "€12", "12 €"])
def test_malformed_or_non_positive_price_is_rejected_for_that_store_only(price: str) -> None:
    result = run(catalog_row("P", price_fr=price))
    assert [o.store for o in result.offers] == ["de"]
    (r,) = result.rejections
    assert (r.field, r.value, r.store, r.row, r.sku) == ("price", price, "fr", 2, "P")


def test_decimal_comma_price_is_accepted() -> None:
    assert parse_amount("12,5") == Decimal("12.5")
    assert parse_amount(" 199.90 ") == Decimal("199.90")


def test_currency_other_than_the_stores_is_rejected() -> None:
    header = HEADER + ";currency_fr"
    v = validator(header)
    result = v.validate(2, (catalog_row("C") + ";USD").split(";"))
    (r,) = result.rejections
    assert (r.field, r.value, r.store) == ("currency", "USD", "fr")
    assert "EUR" in r.expected


def test_warranty_under_the_store_minimum_is_rejected() -> None:
    stores = [StoreSettings(name="fr", locale="fr-fr", warranty_min_months=6),
              StoreSettings(name="de", locale="de-de", warranty_min_months=12)]
    result = run(catalog_row("W", warranty_fr="6", warranty_de="6"), validator(stores=stores))
    assert [o.store for o in result.offers] == ["fr"]
    (r,) = result.rejections
    assert (r.field, r.value, r.store) == ("warranty", "6", "de")
    assert "at least 12 months" in r.expected


def test_comment_over_500_characters_is_rejected() -> None:
    result = run(catalog_row("L", comment_de="x" * 501))
    (r,) = result.rejections
    assert (r.field, r.store) == ("comment", "de")
    assert r.expected == "at most 500 characters (found 501)"
    assert [o.store for o in result.offers] == ["fr"]


def test_comment_of_exactly_500_characters_is_accepted_whole() -> None:
    result = run(catalog_row("L", comment_fr="é" * 499 + "x"))  # characters, not bytes
    assert not result.rejections
    assert len(result.offers[0].comment or "") == 500


@pytest.mark.parametrize("ean", ["96385074", "4006381333931", "036000291452"],
                         ids=["ean-8", "ean-13", "upc-a-12"])
def test_ean_8_12_and_13_with_a_valid_check_digit_are_accepted(ean: str) -> None:
    result = run(catalog_row("E", ean=ean))
    assert not result.rejections
    assert {o.ean for o in result.offers} == {ean}


@pytest.mark.parametrize("ean", ["04006381333931", "14006381333938"],
                         ids=["zero-padded-ean-13", "gtin-14"])
def test_ean_of_another_length_is_rejected_even_with_a_valid_check_digit(ean: str) -> None:
    # Back Market takes an ean of at most 13 digits (reference/BACKMARKET.md): a GTIN-14 of
    # a case of units, or a zero-padded EAN-13, is not a product's EAN.
    assert ean_check.is_valid(ean)  # only the length is wrong
    field, value, expected = only_problem(catalog_row("E", ean=ean))
    assert (field, value, expected) == ("ean", ean, "an EAN of 8, 12 or 13 digits")


@pytest.mark.parametrize("min_price, accepted", [
    ("199.89", True), ("199.90", True), ("199.91", False)], ids=["below", "equal", "above"])
def test_min_price_may_equal_the_price_but_not_exceed_it_by_a_cent(min_price: str,
                                                                   accepted: bool) -> None:
    v = validator(HEADER + ";min_price_fr")
    result = v.validate(2, (catalog_row("B", price_fr="199.90") + f";{min_price}").split(";"))
    assert [o.store for o in result.offers] == (["fr", "de"] if accepted else ["de"])
    if accepted:
        assert not result.rejections
        assert result.offers[0].min_price == Decimal(min_price)
    else:
        (r,) = result.rejections
        assert (r.field, r.value, r.store, r.expected) == \
            ("min_price", "199.91", "fr", "at most the price 199.90")


@pytest.mark.parametrize("min_price, accepted", [
    ("185.10", True), ("185.09", False), ("100.00", False)],
    ids=["band-edge", "a-cent-below-the-band", "far-below"])
def test_min_price_keeps_the_price_within_the_backpricer_band(min_price: str,
                                                             accepted: bool) -> None:
    """min_price <= price <= min_price x 1.08: 185.10 x 1.08 = 199.908 holds 199.90,
    185.09 x 1.08 = 199.8972 does not."""
    v = validator(HEADER + ";min_price_fr")
    result = v.validate(7, (catalog_row("B", price_fr="199.90") + f";{min_price}").split(";"))
    assert [o.store for o in result.offers] == (["fr", "de"] if accepted else ["de"])
    if accepted:
        assert not result.rejections
        assert result.offers[0].min_price == Decimal(min_price)
    else:
        (r,) = result.rejections
        assert (r.row, r.sku, r.field, r.column, r.value, r.store) == \
            (7, "B", "min_price", "min_price_fr", min_price, "fr")
        assert r.expected.startswith("between 185.10 and the price 199.90")
        assert "INVALID_BACKPRICER_RANGE" in r.expected


@pytest.mark.parametrize("price, accepted", [("108", True), ("108.01", False),
                                           ("100", True)], ids=["top", "above", "bottom"])
def test_the_backpricer_band_holds_both_its_ends(price: str, accepted: bool) -> None:
    """min_price 100: the band is 100 to 108.00, both included."""
    v = validator(HEADER + ";min_price_fr")
    result = v.validate(2, (catalog_row("E", price_fr=price) + ";100").split(";"))
    assert ("fr" in [o.store for o in result.offers]) is accepted
    assert [r.field for r in result.rejections] == ([] if accepted else ["min_price"])


def test_the_backpricer_band_check_can_be_turned_off_per_store() -> None:
    stores = [StoreSettings(name="fr", locale="fr-fr", backpricer_band=False), STORES[1]]
    v = validator(HEADER + ";min_price_fr", stores)
    result = v.validate(2, (catalog_row("B", price_fr="199.90") + ";100").split(";"))
    assert not result.rejections
    assert result.offers[0].min_price == Decimal("100")
    result = v.validate(3, (catalog_row("C", price_fr="199.90") + ";199.91").split(";"))
    assert [r.field for r in result.rejections] == ["min_price"]  # still at most the price


def test_negative_stock_is_rejected_in_every_store() -> None:
    field, value, expected = only_problem(catalog_row("S", stock="-2"))
    assert (field, value) == ("stock", "-2")
    assert "0 or more" in expected


@pytest.mark.parametrize("stock, safety, maximum, published", [
    ("10", "0", "", 10), ("10", "3", "", 7), ("2", "5", "", 0), ("10", "1", "4", 4),
    ("10.0", "0", "", 10),
])
def test_published_quantity_applies_safety_and_max(stock: str, safety: str, maximum: str,
                                                   published: int) -> None:
    result = run(catalog_row("Q", stock=stock, safety=safety, max_quantity=maximum))
    assert not result.rejections
    assert {o.quantity for o in result.offers} == {published}


def test_duplicate_sku_differing_in_case_is_rejected() -> None:
    v = validator()
    assert not run(catalog_row("Dup-1"), v, 2).rejections
    result = run(catalog_row("DUP-1"), v, 3)
    (r,) = result.rejections
    assert (r.field, r.value, r.row) == ("sku", "DUP-1", 3)
    assert "row 2" in r.expected


def test_all_problems_of_a_row_are_reported_at_once() -> None:
    result = run(catalog_row("M", ean="123", grade="?", stock="x", price_fr="0"))
    fields = {r.field for r in result.rejections}
    assert {"ean", "grade", "stock", "price"} <= fields
    assert not result.offers
    assert result.rejected_stores == {"fr", "de"}


def test_row_with_wrong_field_count_is_rejected_and_tied_to_no_sku() -> None:
    # Which cell of a shifted row is its SKU cannot be known: no guess, even from column 1.
    result = validator().validate(7, ["TRUNC", "", "4006381333931"])
    (r,) = result.rejections
    assert (r.row, r.sku, r.field) == (7, None, "row")
    assert result.key is None and not result.sku_certain
    assert "no offer is zeroed" in r.expected


@pytest.mark.parametrize("sku", ['IPH12-64-WHT"', "IPH\u200b12", "\ufeffIPH12", "IPH\u00a012",
                                 "IPH\u206012", "IPH\u200e12", "IPH\u00ad12", "IPH\u202812",
                                 "IPH\U000e0041"])
def test_a_bad_sku_cell_is_rejected_and_ties_the_row_to_no_sku(sku: str) -> None:
    result = run(catalog_row(sku))
    assert [r.field for r in result.rejections] == ["sku"]
    assert result.key is None and not result.sku_certain and not result.offers
    message = result.rejections[0].message()
    assert message.isprintable() and (sku.isprintable() or "<U+" in message)  # shown visibly


def test_a_blank_store_price_is_reported_with_its_column() -> None:
    result = run(catalog_row("FRONLY", price_de=""))
    assert result.unpriced == {"de": "price_de"}


def test_blank_store_price_means_not_offered_there() -> None:
    result = run(catalog_row("FRONLY", price_de=""))
    assert [o.store for o in result.offers] == ["fr"]
    assert result.listed_stores == {"fr"}
    assert not result.rejections


def test_rejection_message_names_row_sku_field_value_and_expectation() -> None:
    result = run(catalog_row("MSG-1", ean="4006381333932"), number=14)
    message = result.rejections[0].message()
    assert message.startswith("row 14 (SKU MSG-1): ean is '4006381333932'; expected ")


def test_missing_required_column_is_a_config_error_naming_it() -> None:
    profile = load_profile(BUNDLED_MAPPINGS / "default.toml")
    with pytest.raises(ConfigError, match="no column 'grade' for field grade"):
        compile_mapping(profile, ["sku", "ean", "stock", "price_fr", "price_de"], STORES)


def test_profile_with_unknown_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[offer]\nsku = "sku"\ngrade = "g"\nstock = "s"\nean = "e"\ncolour = "c"\n'
                    '[offer.per_store]\nprice = "p"\n')
    with pytest.raises(ConfigError, match="unknown fields \\['colour'\\]"):
        load_profile(path)


def test_profile_constant_and_store_override(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[offer]\nsku = "ref"\ngrade = { value = "GOOD" }\nstock = "qty"\n'
                    'ean = "ean"\n[offer.per_store]\nprice = "price_{country}"\n'
                    'warranty = { value = "24" }\n[stores.fr]\nprice = "prix"\n')
    profile = load_profile(path)
    v = Validator(compile_mapping(profile, ["ref", "qty", "ean", "prix", "price_de"], STORES))
    result = v.validate(2, ["R1", "3", "4006381333931", "10", "12"])
    assert not result.rejections
    assert [(o.store, o.sku, o.quantity, o.price, o.grade, o.warranty_delay)
            for o in result.offers] == [("fr", "R1", 3, Decimal("10"), "GOOD", 24),
                                        ("de", "R1", 3, Decimal("12"), "GOOD", 24)]


@pytest.mark.parametrize("text", ["", "abc", "-1", "1.5", "1e3"])
def test_parse_count_refuses_non_whole_numbers(text: str) -> None:
    with pytest.raises(BadValue):
        parse_count(text)


def test_parse_product_id_lowercases_uuid() -> None:
    assert parse_product_id("AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE") == \
        "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"


def test_a_rejection_names_the_sellers_column_and_reads_as_english() -> None:
    # The field is "price"; the seller's column to fix is price_fr (or prix_fr, or ...).
    result = run(catalog_row("A-1", price_fr="1.2.3", stock="x"))
    messages = sorted(r.message() for r in result.rejections)
    assert any("price (column 'price_fr') is '1.2.3'; expected a positive amount like 199.90"
               in m for m in messages), messages
    assert any("stock is 'x'" in m for m in messages), messages  # column named as the field
    assert all("a positive an" not in m for m in messages)
    assert {r.field: r.to_dict()["column"] for r in result.rejections} == {
        "price": "price_fr", "stock": "stock"}
