"""The import rules of the stages (issue 14), written as import-linter contracts in
pyproject.toml ``[tool.importlinter]``:

- pure-stages: syncer.planning and syncer.core import no I/O package;
- emulator-oracle: the emulator shares no engine code (only syncer.core.vocabulary);
- layers: cli > orders > pipeline > alerts | market > publish > backmarket | reports >
  catalog | state > planning > config > errors > core;
- acyclic: no import circle between packages, nor between the modules of one package.

Function-local imports count; imports under ``if TYPE_CHECKING:`` do not. An ignored import
in the contracts names the slice that removes it; an ignore that no longer matches an import
fails the contract, so a stale one cannot stay.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import grimp
from importlinter import configuration
from importlinter.application.use_cases import lint_imports

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"


def _contract(contract_id: str) -> dict[str, object]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return next(c for c in config["contracts"] if c["id"] == contract_id)


def test_the_import_contracts_are_kept() -> None:
    configuration.configure()  # what the lint-imports command does first
    # On failure, pytest shows lint-imports' report (captured stdout): the contract, the
    # import chain that breaks it.
    assert lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True)


def test_the_emulator_contract_forbids_every_engine_module() -> None:
    """A forbidden contract names what it forbids: a new engine package or core module must
    land in its list, or the emulator could import it unseen."""
    graph = grimp.build_graph("syncer", cache_dir=None)
    forbidden = _contract("emulator-oracle")["forbidden_modules"]
    assert isinstance(forbidden, list)
    allowed = {"syncer", "syncer.__main__", "syncer.core", "syncer.core.vocabulary"}
    for module in sorted(graph.modules):
        if module in allowed or module.startswith("syncer.emulator"):
            continue
        assert any(module == f or module.startswith(f + ".") for f in forbidden), (
            f"{module} is not in the emulator-oracle contract's forbidden_modules")


def test_the_layers_name_every_package_but_the_emulator() -> None:
    layers = _contract("layers")["layers"]
    assert isinstance(layers, list)
    named = {name.strip() for layer in layers for name in layer.split("|")}
    packages = {p.name for p in (ROOT / "syncer").iterdir()
                if (p / "__init__.py").is_file()} | {"errors"}
    assert packages - named == {"emulator"}
