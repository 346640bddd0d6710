"""The examples are meant to be copied as they are: they must at least parse and load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syncer.config import load_settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_configuration_loads() -> None:
    settings = load_settings(EXAMPLES / "syncer.toml")
    assert [s.name for s in settings.stores] == ["fr", "de"]
    assert settings.catalog_path().is_file()
    assert settings.mapping_path().is_file()


@pytest.mark.parametrize("path", sorted((EXAMPLES / "deploy").rglob("*.y*ml")),
                         ids=lambda p: p.name)
def test_deployment_manifests_parse(path: Path) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents


def test_kubernetes_configuration_is_a_valid_syncer_configuration(tmp_path: Path) -> None:
    manifests = yaml.safe_load_all((EXAMPLES / "deploy/kubernetes/configmap.yaml").read_text())
    config_map = next(m for m in manifests if m["kind"] == "ConfigMap")
    (tmp_path / "syncer.toml").write_text(config_map["data"]["syncer.toml"])
    settings = load_settings(tmp_path / "syncer.toml")
    assert {s.name for s in settings.stores} == {"fr", "de"}
    for store in ("fr", "de"):
        job = yaml.safe_load((EXAMPLES / f"deploy/kubernetes/cronjob-{store}.yaml").read_text())
        spec = job["spec"]
        assert spec["concurrencyPolicy"] == "Forbid"
        args = spec["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[-2:] == ["--store", store]
