"""The README's promises: the two commands, and a configuration reference that is current."""

from __future__ import annotations

from pathlib import Path

from scripts.docs import render

README = Path("README.md").read_text()


def test_quick_start_is_the_two_commands() -> None:
    quick = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = [
        line.split("#")[0].strip() for line in quick.splitlines() if line.startswith("make ")
    ]
    assert commands == ["make demo", "make test"]


def test_configuration_reference_is_generated_from_the_settings() -> None:
    assert render(README) == README, "README is stale: run `make docs`"


def test_every_cli_command_is_documented() -> None:
    from agents.cli import _parser

    sub = next(a for a in _parser()._actions if a.dest == "==SUPPRESS==" or a.choices)
    for command in sub.choices:  # type: ignore[union-attr]
        assert f"rebate-engine {command}" in README, command
