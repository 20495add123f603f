"""Generate docs/reference/cli.md from the commands' own --help.

    python -m kanban.cli.reference > docs/reference/cli.md

tests/test_docs.py fails when the file is stale, or a command has no help or example.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

HEADER = """# CLI reference

Generated from `kanban --help` by `python -m kanban.cli.reference > docs/reference/cli.md`;
do not edit by hand. Every command also takes `-h`/`--help`.
"""


def walk(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, (*path, name))


def help_text(command: click.Command, path: tuple[str, ...]) -> str:
    from kanban.cli import cli

    ctx = click.Context(
        cli,
        info_name="kanban",
        terminal_width=100,
        max_content_width=100,
        help_option_names=["-h", "--help"],
    )
    for name in path:
        assert isinstance(ctx.command, click.Group)
        sub = ctx.command.get_command(ctx, name)
        assert sub is not None
        ctx = click.Context(
            sub,
            info_name=name,
            parent=ctx,
            terminal_width=100,
            max_content_width=100,
            help_option_names=["-h", "--help"],
        )
    return command.get_help(ctx)


def render() -> str:
    from kanban.cli import cli

    parts = [HEADER]
    for path, command in walk(cli):
        title = " ".join(("kanban", *path))
        parts.append(f"\n## `{title}`\n\n```text\n{help_text(command, path).rstrip()}\n```\n")
    return "".join(parts)


if __name__ == "__main__":
    sys.stdout.write(render())
