"""Configuration that is wrong in type is one clear line, never a traceback; the bundled
mapping profiles work copied elsewhere and from an installed wheel; the CLI starts light."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from syncer.cli.main import cli
from syncer.config.settings import BUNDLED_MAPPINGS
from syncer.state.version import HEAD
from tests.conftest import catalog_row, write_catalog, write_config

REPO = Path(__file__).resolve().parents[1]


def plan(folder: Path, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--config", str(folder / "syncer.toml"), "plan", *args])


def assert_one_error_line(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.output, result.exception)
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def shop(tmp_path: Path, *, mapping: str = "default", extra: str = "",
         grade: str = "EXCELLENT") -> Path:
    write_config(tmp_path, state_url=f"sqlite:///{tmp_path / 'state' / 'syncer.db'}",
                 extra=extra)
    config = tmp_path / "syncer.toml"
    config.write_text(config.read_text().replace('mapping = "default"',
                                                 f'mapping = "{mapping}"'))
    write_catalog(tmp_path / "catalog.csv", [catalog_row("SKU-1", grade=grade)])
    return tmp_path


def profile_copy(tmp_path: Path, edit: tuple[str, str] | None = None) -> Path:
    """The bundled default profile copied to a folder of its own, as its header suggests."""
    folder = tmp_path / "profiles"
    folder.mkdir()
    text = (BUNDLED_MAPPINGS / "default.toml").read_text(encoding="utf-8")
    if edit is not None:
        assert edit[0] in text
        text = text.replace(*edit)
    (folder / "mine.toml").write_text(text, encoding="utf-8")
    return folder / "mine.toml"


# --- item 8: wrong types are one line naming file, key and expected type ------------------

def test_a_catalog_encoding_that_is_not_a_text_encoding_is_one_error_line(
        tmp_path: Path) -> None:
    folder = shop(tmp_path)
    config = folder / "syncer.toml"
    config.write_text(config.read_text().replace('[catalog]\n', '[catalog]\nencoding = "rot13"\n'))
    assert_one_error_line(plan(folder), str(config), "catalog.encoding", "'rot13'",
                          "not a text encoding")


MINIMAL_PROFILE = """
[offer]
sku = "sku"
ean = "ean"
grade = "grade"
stock = "stock"
"""
PER_STORE = """
[offer.per_store]
price = "price_{country}"
"""


@pytest.mark.parametrize(("before", "after", "key", "expected"), [
    ('profile = "x"', PER_STORE, "profile", "expected a table, got 'x'"),
    ('product = "abc"', PER_STORE, "product", "expected a table, got 'abc'"),
    ("[profile]\nname = 5", PER_STORE, "profile.name", "expected a string, got 5"),
    ("[profile]\ngrades = true", PER_STORE, "profile.grades", "expected a string"),
    ("[profile]\ncolour = 'x'", PER_STORE, "profile.colour", "unknown key"),
    ("stores = 3", PER_STORE, "stores", "expected a table"),
    ("", 'per_store = "price"', "offer.per_store", "expected a table"),
    ("", 'shipping = "x"\n' + PER_STORE, "offer.shipping", "expected a list"),
    ("", "shipping = [1]\n" + PER_STORE, "offer.shipping.0", "expected a table"),
    ('offer = "x"', "", "offer", "expected a table"),
])
def test_a_profile_with_a_wrong_type_is_one_error_line_naming_the_key(
        tmp_path: Path, before: str, after: str, key: str, expected: str) -> None:
    profile = tmp_path / "mine.toml"
    body = "" if before.startswith("offer") else MINIMAL_PROFILE + after
    profile.write_text(before + "\n" + body, encoding="utf-8")
    result = plan(shop(tmp_path, mapping=str(profile)))
    assert_one_error_line(result, str(profile), f"{key}: {expected}")


@pytest.mark.parametrize(("grades", "key", "expected"), [
    ('grades = ["a"]', "grades", "expected a table"),
    ('[grades]\nGOOD = "abc"', "grades.GOOD", "expected a list, got 'abc'"),
    ('[grades]\nGOOD = [["Good"]]', "grades.GOOD.0", "expected a string"),
])
def test_a_grades_file_with_a_wrong_type_is_one_error_line(
        tmp_path: Path, grades: str, key: str, expected: str) -> None:
    # A string where a list is expected is refused, not read as one-letter grades.
    profile = profile_copy(tmp_path, ('grades = "grades.toml"', 'grades = "my_grades.toml"'))
    (profile.parent / "my_grades.toml").write_text(grades + "\n", encoding="utf-8")
    result = plan(shop(tmp_path, mapping=str(profile)))
    assert_one_error_line(result, str(profile.parent / "my_grades.toml"), key, expected)


def test_a_carriers_file_with_a_wrong_type_is_one_error_line(tmp_path: Path) -> None:
    profile = profile_copy(tmp_path, ('carriers = "carriers.toml"',
                                      'carriers = "my_carriers.toml"'))
    (profile.parent / "my_carriers.toml").write_text('fallback = 3\n', encoding="utf-8")
    result = plan(shop(tmp_path, mapping=str(profile)))
    assert_one_error_line(result, "my_carriers.toml", "fallback", "expected a string")


def test_a_damaged_schema_version_in_the_state_is_one_error_line(tmp_path: Path) -> None:
    folder = shop(tmp_path)
    (folder / "state").mkdir()
    with sqlite3.connect(folder / "state" / "syncer.db") as db:
        db.execute("CREATE TABLE schema_info (key VARCHAR PRIMARY KEY, value VARCHAR)")
        db.execute("INSERT INTO schema_info VALUES ('schema_version', '2b')")
    db.close()
    assert_one_error_line(plan(folder), "syncer.db", "schema_version", "'2b'",
                          "expected a whole number")


@pytest.mark.parametrize("content", ["[1, 2]", '"plan"', "3"])
def test_a_saved_plan_that_is_not_a_json_object_is_one_error_line(
        tmp_path: Path, content: str) -> None:
    folder = shop(tmp_path)
    saved = folder / "plan.json"
    saved.write_text(content, encoding="utf-8")
    result = CliRunner().invoke(cli, ["--config", str(folder / "syncer.toml"), "apply",
                                      "--plan", str(saved)])
    assert_one_error_line(result, str(saved), "is not a plan")


# --- item 10: a copied profile works wherever it is ----------------------------------------

def test_a_copy_of_the_default_profile_elsewhere_finds_the_bundled_vocabularies(
        tmp_path: Path) -> None:
    profile = profile_copy(tmp_path)
    folder = shop(tmp_path, mapping=str(profile), grade="Shiny")
    result = plan(folder, "--format", "json")
    assert result.exit_code == 2, (result.stderr, result.exception)
    planned = json.loads(result.stdout)
    assert planned["rejections"] == []
    assert {c["target"]["grade"] for c in planned["changes"]} == {"EXCELLENT"}


def test_a_value_table_beside_the_profile_wins_over_the_bundled_one(tmp_path: Path) -> None:
    profile = profile_copy(tmp_path)
    (profile.parent / "grades.toml").write_text('[grades]\nGOOD = ["Shiny"]\n')
    result = plan(shop(tmp_path, mapping=str(profile), grade="Shiny"), "--format", "json")
    assert {c["target"]["grade"] for c in json.loads(result.stdout)["changes"]} == {"GOOD"}


def test_a_profile_without_a_grades_file_does_not_offer_words_it_refuses(
        tmp_path: Path) -> None:
    profile = profile_copy(tmp_path, ('grades = "grades.toml"\n', ""))
    result = plan(shop(tmp_path, mapping=str(profile), grade="Shiny"), "--format", "json")
    [rejection] = json.loads(result.stdout)["rejections"]
    assert rejection["field"] == "grade"
    assert "Shiny" not in rejection["expected"] and "EXCELLENT" in rejection["expected"]


# --- item 15: an installed wheel carries the bundled profiles ------------------------------

def _run(*command: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.wheel
def test_the_installed_wheel_plans_the_example_with_the_bundled_profile(
        tmp_path: Path) -> None:
    # What examples/deploy/Dockerfile copies, built away from the checkout (no build/ left
    # in it); the build backend comes from the package index.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source)
    for name in ("syncer", "mappings"):
        shutil.copytree(REPO / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    built = _run(sys.executable, "-m", "pip", "wheel", source, "--no-deps", "--quiet",
                 "-w", tmp_path / "dist", cwd=tmp_path)
    if built.returncode != 0:
        pytest.skip(f"cannot build the wheel here: {built.stderr.strip()[-300:]}")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv).check_returncode()
    [wheel] = (tmp_path / "dist").glob("*.whl")
    installed = _run(venv / "bin" / "python", "-m", "pip", "install", "--quiet", wheel)
    if installed.returncode != 0:
        pytest.skip(f"cannot install the wheel's dependencies: "
                    f"{installed.stderr.strip()[-300:]}")
    # The example, copied away from the repository: only the wheel can provide "default".
    example = tmp_path / "example"
    example.mkdir()
    shutil.copy(REPO / "examples" / "catalog.csv", example)
    config = (REPO / "examples" / "syncer.toml").read_text(encoding="utf-8")
    assert 'mapping = "default"' in config
    (example / "syncer.toml").write_text(
        config.replace("sqlite:///../state/syncer.db", "sqlite:///state/syncer.db"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _run(venv / "bin" / "syncer", "--config", example / "syncer.toml", "plan",
                  cwd=elsewhere)
    assert result.returncode == 2, result.stderr
    assert "Store fr (fr-fr)" in result.stdout
    located = _run(venv / "bin" / "python", "-c",
                   "import syncer.config.settings as c; print(c.BUNDLED_MAPPINGS)", cwd=elsewhere)
    assert str(venv) in located.stdout, located
    # The state's Alembic revisions ship too: a publishing open of a new state stamps head.
    state = tmp_path / "state.db"
    opened = _run(venv / "bin" / "python", "-c",
                  "from syncer.state.store import StateStore; from syncer.state.version "
                  f"import alembic_head; StateStore.open('sqlite:///{state}').close(); "
                  "print(alembic_head())", cwd=elsewhere)
    assert opened.stdout.strip() == HEAD, opened  # every revision shipped, up to the head
    with sqlite3.connect(state) as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
    db.close()


# --- item 16: the command line starts without the database and emulator layers ------------

def test_importing_the_cli_leaves_the_heavy_layers_unimported() -> None:
    probe = textwrap.dedent("""
        import sys
        import syncer.cli.main
        heavy = ("sqlalchemy", "sqlmodel", "pydantic")
        layers = ("syncer.emulator", "syncer.state")  # any module of these packages
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy
                     or any(m.startswith(layer + ".") for layer in layers)))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                            check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_help_lists_the_commands_without_loading_them() -> None:
    result = subprocess.run([sys.executable, "-m", "syncer", "--help"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                            check=True, timeout=60)
    for command in ("plan", "apply", "run"):
        assert f"  {command} " in result.stdout
