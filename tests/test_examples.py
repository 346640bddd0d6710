"""The examples are meant to be copied as they are: they load, and run commands that exist."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import click
import pytest
import yaml

from syncer.cli.main import cli
from syncer.config.settings import load_settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_example_configuration_loads() -> None:
    settings = load_settings(EXAMPLES / "syncer.toml")
    assert [s.name for s in settings.stores] == ["fr", "de"]
    assert settings.catalog_path().is_file()
    assert settings.mapping_path().is_file()


def deployed_command_lines() -> dict[str, list[list[str]]]:
    """The syncer command lines of each deployment example, without the program's name."""
    deploy = EXAMPLES / "deploy"
    found: dict[str, list[list[str]]] = {}

    def shell(name: str, line: str) -> None:
        match = re.search(r"(?:^|[\s/])syncer\s+(.*)", line)
        if match:
            words = shlex.split(match.group(1))
            cut = next((i for i, w in enumerate(words) if w[:1] in (">", "|") or
                        w.startswith("2>")), len(words))
            found.setdefault(name, []).append(words[:cut])

    for line in (deploy / "crontab").read_text().splitlines():
        if not line.startswith("#"):
            shell("crontab", line)
    for path in sorted((deploy / "systemd").glob("*.service")):
        for line in path.read_text().splitlines():
            if line.startswith("ExecStart="):
                shell(path.name, line)
    workflow = yaml.safe_load((deploy / "github-workflow.yml").read_text())
    for step in workflow["jobs"]["publish"]["steps"]:
        for line in str(step.get("run", "")).splitlines():
            if not line.lstrip().startswith("pip "):
                shell("github-workflow.yml", line)
    entrypoint = next(json.loads(line.split(None, 1)[1]) for line in
                      (deploy / "Dockerfile").read_text().splitlines()
                      if line.startswith("ENTRYPOINT"))
    assert entrypoint[0] == "syncer"
    for path in sorted((deploy / "kubernetes").glob("cronjob-*.yaml")):
        job = yaml.safe_load(path.read_text())
        for container in job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]:
            found.setdefault(path.name, []).append([*entrypoint[1:], *container["args"]])
    return found


def test_every_deployment_example_runs_a_command_line_the_cli_accepts() -> None:
    found = deployed_command_lines()
    assert set(found) == {"crontab", "backmarket-syncer.service",
                          "backmarket-syncer-daemon.service", "github-workflow.yml",
                          "cronjob-fr.yaml", "cronjob-de.yaml"}
    for name, lines in found.items():
        for words in lines:
            # Parsed as the CLI would (option names, values, choices), without running it.
            at = next(i for i, word in enumerate(words) if word in cli.commands)
            context = cli.make_context("syncer", words[:at])
            command, rest = cli.commands[words[at]], words[at + 1:]
            while isinstance(command, click.Group):
                context = command.make_context(command.name, [], parent=context)
                command, rest = command.commands[rest[0]], rest[1:]
            try:
                command.make_context(words[at], rest, parent=context)
            except click.ClickException as exc:
                pytest.fail(f"{name}: syncer {shlex.join(words)}: {exc.format_message()}")


def test_the_workflow_keeps_the_run_results_folder_of_apply_as_an_artifact() -> None:
    workflow = yaml.safe_load((EXAMPLES / "deploy" / "github-workflow.yml").read_text())
    steps = workflow["jobs"]["publish"]["steps"]
    [apply] = [words for words in deployed_command_lines()["github-workflow.yml"]
               if "apply" in words]
    results = Path(apply[apply.index("--results") + 1])
    uploaded = [Path(path.rstrip("/")) for step in steps
                if str(step.get("uses", "")).startswith("actions/upload-artifact")
                for path in str(step["with"]["path"]).split()]
    assert results.parent != Path(".") and results.parent in uploaded


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
