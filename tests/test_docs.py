"""Docs are part of the feature: every command has help with an example, the CLI reference
is generated from --help and current, and docs/ mention every command."""

from __future__ import annotations

from pathlib import Path

import click

from kanban.cli import cli, reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _commands() -> list[tuple[tuple[str, ...], click.Command]]:
    return [(path, cmd) for path, cmd in reference.walk(cli)]


def test_every_command_has_help_text_with_an_example() -> None:
    missing = []
    for path, command in _commands():
        text = command.help or ""
        if len(text.strip()) < 20 or "Example" not in text:
            missing.append(" ".join(path) or "kanban")
    assert missing == [], f"commands without help or an example: {missing}"


def test_cli_reference_is_generated_from_help_and_current() -> None:
    current = (DOCS / "reference" / "cli.md").read_text()
    assert current == reference.render(), (
        "docs/reference/cli.md is stale: python -m kanban.cli.reference > docs/reference/cli.md"
    )


def test_every_command_is_explained_outside_the_reference() -> None:
    """The reference says how; the guides must say when to reach for each command."""
    guides = (
        "\n".join(p.read_text() for p in DOCS.rglob("*.md") if p.name != "cli.md")
        + (ROOT / "README.md").read_text()
    )
    missing = [
        " ".join(path)
        for path, _ in _commands()
        if path and f"kanban {' '.join(path)}" not in guides
    ]
    assert missing == [], f"commands no guide mentions: {missing}"
