"""`syncer init`: a seller's export becomes a configuration, a mapping profile and a first
dry-run plan, whatever language its header is in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from syncer.catalog.columns import match_column
from syncer.catalog.onboarding import Header, propose
from syncer.cli.main import cli
from syncer.config.settings import load_settings
from syncer.errors import ConfigError
from syncer.planning.mapping import load_profile
from tests.conftest import TOKEN

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def syncer(*args: str, state: Path) -> Result:
    # The state is an empty file path of the test's: never the repository's state/.
    return CliRunner(env={"SYNCER_STATE_URL": f"sqlite:///{state}",
                          "BACKMARKET_TOKEN_EU": TOKEN}).invoke(
        cli, ["--log-format", "json", *args])


def comparable(plan: dict[str, Any]) -> dict[str, Any]:
    """The plan without what names the files it came from: when it was made, the catalog's
    path, the profile's name, and the row hashes (keyed by the profile's own text)."""
    for key in ("created_at", "catalog", "mapping"):
        plan.pop(key)
    for change in plan["changes"]:
        change.pop("source_hash")
    return plan


def test_init_on_the_bundled_example_plans_as_the_examples_own_configuration(
        tmp_path: Path) -> None:
    shop = tmp_path / "shop"
    shop.mkdir()
    shutil.copy(EXAMPLES / "catalog.csv", shop / "catalog.csv")
    state = tmp_path / "none.db"

    made = syncer("--config", str(shop / "syncer.toml"), "init", str(shop / "catalog.csv"),
                  "--format", "json", state=state)
    assert made.exit_code == 0, (made.stderr, made.exception)
    reference = syncer("--config", str(EXAMPLES / "syncer.toml"), "plan", "--format", "json",
                       state=state)
    assert reference.exit_code == 2, reference.stderr

    assert comparable(json.loads(made.stdout)) == comparable(json.loads(reference.stdout))
    assert not state.exists()  # init's plan is a dry run: it wrote no state
    assert "Matched:" in made.stderr and "'shipping_price_1_{country}'" in made.stderr


FRENCH = ("Référence;EAN;État;Quantité;Prix FR;Prix BE;Garantie (mois);Commentaire\r\n"
          "IPH13-128-BLK;5260181590836;Très bon état;4;226,00;231,50;12;"
          "Reconditionné en France\r\n"
          "IPH12-64-WHT;0824628194824;Parfait état;2;361,90;;24;Batterie neuve\r\n"
          "GS21-128-GRY;1318609139090;Correct;0;391,50;399,00;6;\r\n")


def test_init_on_a_french_cp1252_export_proposes_its_mapping_and_plans(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKMARKET_TOKEN_EU", TOKEN)
    export = tmp_path / "export_backmarket.csv"
    export.write_bytes(FRENCH.encode("cp1252"))
    made = syncer("--config", str(tmp_path / "syncer.toml"), "init", str(export), "--format",
                  "json", state=tmp_path / "state.db")
    assert made.exit_code == 0, (made.stderr, made.exception)

    settings = load_settings(tmp_path / "syncer.toml")
    assert [(s.name, s.locale) for s in settings.stores] == [("fr", "fr-fr"), ("be", "fr-be")]
    assert settings.catalog.legacy_encoding == "cp1252"
    assert settings.catalog_path() == export
    profile = load_profile(settings.mapping_path())
    assert {name: s.column for name, s in profile.offer.items()} == {
        "sku": "Référence", "ean": "EAN", "grade": "État", "stock": "Quantité"}
    assert profile.per_store["price"].column == "Prix {country}"
    assert profile.per_store["warranty"].column == "Garantie (mois)"
    assert profile.per_store["comment"].column == "Commentaire"
    assert profile.grade("Parfait état") == "EXCELLENT"  # the bundled grades table

    plan = json.loads(made.stdout)
    assert plan["summary"]["rejected"] == 0, plan["rejections"]
    created = {(c["store"], c["sku"]): c["target"] for c in plan["changes"]}
    assert created[("fr", "IPH13-128-BLK")]["price"] == "226.00"
    assert created[("be", "IPH13-128-BLK")]["price"] == "231.50"
    assert created[("fr", "IPH13-128-BLK")]["comment"] == "Reconditionné en France"
    assert created[("fr", "IPH12-64-WHT")]["grade"] == "EXCELLENT"
    assert created[("fr", "IPH12-64-WHT")]["warranty_delay"] == 24
    assert ("be", "IPH12-64-WHT") not in created  # no Belgian price: not offered there
    # The token is named, never written (the suite checks no file left behind holds it).
    assert {s.token_env for s in settings.stores} == {"BACKMARKET_TOKEN_EU"}
    assert settings.token(settings.stores[0]).get_secret_value() == TOKEN


@pytest.mark.parametrize(("header", "row", "locale", "comment"), [
    ("Artikelnummer,EAN,Zustand,Bestand,Preis,Garantie,Kommentar",
     "MBA-M1,5260181590836,Gold,3,799.00,24,Akku neu", "de-de", ("Akku neu", 24)),
    ("Referencia;EAN;Estado;Cantidad;precio_es;Garantía;Comentario",
     "PX7-128;5260181590836;Silver;5;377,90;12;Batería nueva", "es-es",
     ("Batería nueva", 12)),
])
def test_init_reads_german_and_spanish_headers(tmp_path: Path, header: str, row: str,
                                               locale: str, comment: tuple[str, int]) -> None:
    export = tmp_path / "katalog.csv"
    export.write_text(header + "\n" + row + "\n", encoding="utf-8")
    made = syncer("--config", str(tmp_path / "syncer.toml"), "init", str(export),
                  "--format", "json", state=tmp_path / "state.db")
    assert made.exit_code == 0, (made.stderr, made.exception)
    settings = load_settings(tmp_path / "syncer.toml")
    assert [s.locale for s in settings.stores] == [locale]
    assert settings.catalog.legacy_encoding is None
    plan = json.loads(made.stdout)
    assert plan["rejections"] == []
    [change] = plan["changes"]
    assert change["action"] == "create" and change["store"] == locale[:2]
    assert (change["target"]["comment"], change["target"]["warranty_delay"]) == comment


def test_a_header_with_nothing_recognisable_is_a_clear_error_and_writes_nothing(
        tmp_path: Path) -> None:
    export = tmp_path / "dump.csv"
    export.write_text("col_a;col_b;Notes\n1;2;3\n", encoding="utf-8")
    made = syncer("--config", str(tmp_path / "syncer.toml"), "init", str(export),
                  state=tmp_path / "state.db")
    assert made.exit_code == 1
    message = made.stderr
    assert message.startswith("error: cannot propose a mapping for catalog")
    assert "no column for sku" in message and "grade" in message and "price" in message
    assert "Columns seen: 'col_a', 'col_b', 'Notes'" in message
    assert not (tmp_path / "syncer.toml").exists() and not (tmp_path / "mapping.toml").exists()


def test_existing_configuration_is_not_overwritten_without_force(tmp_path: Path) -> None:
    shutil.copy(EXAMPLES / "catalog.csv", tmp_path / "catalog.csv")
    config = tmp_path / "syncer.toml"
    config.write_text("# the seller's own\n", encoding="utf-8")
    made = syncer("--config", str(config), "init", state=tmp_path / "state.db")
    assert made.exit_code == 1
    assert "already exists: not overwritten; pass --force" in made.stderr
    # The hint names the global option where it goes (`syncer init --config` is refused).
    assert "syncer --config DIR/syncer.toml init CATALOG" in made.stderr
    assert config.read_text(encoding="utf-8") == "# the seller's own\n"
    assert not (tmp_path / "mapping.toml").exists()

    # CATALOG left out: the folder's only .csv file
    forced = syncer("--config", str(config), "init", "--force", "--no-plan",
                    state=tmp_path / "state.db")
    assert forced.exit_code == 0, forced.stderr
    assert load_settings(config).catalog_path() == tmp_path / "catalog.csv"


def test_unreadable_catalogs_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "catalog.xlsx").write_bytes(b"PK\x03\x04\x00\x00")
    (tmp_path / "unicode.csv").write_text("sku;grade\n", encoding="utf-16")
    for name, expected in (("missing.csv", "not found"),
                           ("catalog.xlsx", "is a spreadsheet, not a CSV file"),
                           ("unicode.csv", "NUL bytes")):
        made = syncer("--config", str(tmp_path / "syncer.toml"), "init",
                      str(tmp_path / name), state=tmp_path / "state.db")
        assert made.exit_code == 1 and expected in made.stderr, (name, made.stderr)


def test_a_price_naming_no_country_needs_the_header_language_or_a_locale(
        tmp_path: Path) -> None:
    export = tmp_path / "catalog.csv"
    export.write_text("SKU,EAN,Condition,Quantity,Price\nA-1,5260181590836,GOOD,1,10.00\n",
                      encoding="utf-8")
    args = ("--config", str(tmp_path / "syncer.toml"), "init", str(export), "--no-plan")
    made = syncer(*args, state=tmp_path / "state.db")
    assert made.exit_code == 1 and "--locale fr-fr" in made.stderr
    made = syncer(*args, "--locale", "en-gb", state=tmp_path / "state.db")
    assert made.exit_code == 0, made.stderr
    assert [s.locale for s in load_settings(tmp_path / "syncer.toml").stores] == ["en-gb"]


@pytest.mark.parametrize(("column", "field", "locale"), [
    ("Prix de vente", "price", None),          # "de" is a word here, not Germany
    ("prix_ttc_fr", "price", "fr-fr"),
    ("price fr-be", "price", "fr-be"),
    ("DE Preis", "price", "de-de"),
    ("Stock de sécurité", "safety_quantity", None),
    ("Garantía", "warranty", None),
    ("EAN13", "ean", None),
    ("Description", None, None),
])
def test_column_names_match_their_field_and_country(column: str, field: str | None,
                                                     locale: str | None) -> None:
    match = match_column(0, column)
    assert (match.field if match else None, match.locale if match else None) == (field, locale)


def test_a_store_whose_column_breaks_the_pattern_gets_an_override(tmp_path: Path) -> None:
    header = Header(tmp_path / "c.csv", ("sku", "ean", "grade", "stock", "price_fr",
                                         "price_de", "Prix UK", "warranty_fr"), "c.csv", None)
    proposal = propose(header)
    text = proposal.profile_toml("c")
    assert 'price = "price_{country}"' in text
    assert '[stores.gb]\nprice = "Prix UK"\nwarranty = { value = "12" }' in text
    assert '[stores.de]\nwarranty = { value = "12" }' in text


def test_a_price_naming_no_country_beside_country_prices_is_the_home_market(
        tmp_path: Path) -> None:
    header = Header(tmp_path / "c.csv", ("Référence", "EAN", "État", "Quantité", "Prix",
                                         "Prix BE"), "c.csv", None)
    proposal = propose(header)
    assert [(s.name, s.locale) for s in proposal.stores] == [("fr", "fr-fr"),
                                                             ("be", "fr-be")]
    assert {s: m.column for s, m in proposal.per_store["price"].items()} == {
        "fr": "Prix", "be": "Prix BE"}


def test_a_mapped_column_twice_in_the_header_is_an_error(tmp_path: Path) -> None:
    header = Header(tmp_path / "c.csv", ("sku", "ean", "grade", "stock", "price_fr", "stock"),
                    "c.csv", None)
    with pytest.raises(ConfigError, match="'stock' more than once"):
        propose(header)


def test_a_locale_without_a_price_column_is_an_error(tmp_path: Path) -> None:
    header = Header(tmp_path / "c.csv", ("sku", "ean", "grade", "stock", "price_fr"),
                    "c.csv", None)
    with pytest.raises(ConfigError, match=r"no price column for de-de \(store de\)"):
        propose(header, ["fr-fr", "de-de"])
    assert [s.name for s in propose(header, ["fr-fr"]).stores] == ["fr"]


def test_the_fields_not_in_the_catalog_are_listed_in_one_aligned_column(tmp_path: Path) -> None:
    # "safety_quantity" is longer than any matched field here: its explanation still starts
    # where the others' do.
    export = tmp_path / "export.csv"
    export.write_text("Référence,EAN,État,Quantité,Prix de vente\nA-1,5260181590836,Bon état,1,"
                      "10\n", encoding="utf-8")
    made = syncer("--config", str(tmp_path / "syncer.toml"), "init", str(export), "--no-plan",
                  state=tmp_path / "state.db")
    assert made.exit_code == 0, made.stderr
    lines = made.stderr.split("Not in the catalog (so):\n")[1].split("Wrote ")[0].splitlines()
    assert any(line.startswith("  safety_quantity ") for line in lines), lines
    starts = {len(line) - len(line[2:].split(maxsplit=1)[1]) for line in lines}
    assert len(starts) == 1, lines
