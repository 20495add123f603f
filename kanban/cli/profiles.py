"""`kanban profiles`: the agent profiles this board can use."""

from __future__ import annotations

import sys
from typing import Any

import click

from kanban.cli._common import Group, State, emit_json, json_option, pass_state


@click.group(cls=Group)
def profiles_group() -> None:
    """List, show and check agent profiles.

    Profiles are looked up in the repository's `profiles/`, then `~/.config/kanban/profiles/`,
    then the ones shipped with kanban (claude-code, codex, aider, hermes, shell, demo).

    \b
    Example:
      kanban profiles ls
    """


def _repo(state: State) -> Any:
    return state.settings(require_board=False).repo


@profiles_group.command("ls")
@json_option
@pass_state
def ls(state: State, as_json: bool) -> None:
    """List the available profiles, where each comes from, and whether its program is installed.

    \b
    Example:
      kanban profiles ls --json
    """
    from kanban import profiles

    good, bad = profiles.load_all(repo=_repo(state))
    rows = [
        {
            "name": n,
            "source": p.source,
            "installed": not profiles.check(p),
            "description": p.description,
        }
        for n, p in sorted(good.items())
    ]
    rows += [
        {"name": n, "source": "?", "installed": False, "error": e} for n, e in sorted(bad.items())
    ]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        mark = (
            click.style("ok ", fg="green") if row["installed"] else click.style("-- ", fg="yellow")
        )
        text = row.get("description") or row.get("error", "")
        click.echo(f"{mark} {row['name']:<12} {row['source']:<8} {text}")


@profiles_group.command()
@click.argument("name")
@json_option
@pass_state
def show(state: State, name: str, as_json: bool) -> None:
    """Show a profile as kanban reads it (file, command, limits, environment allow-list).

    \b
    Example:
      kanban profiles show claude-code
    """
    from kanban import profiles

    profile = profiles.load(name, repo=_repo(state))
    data = profile.to_json()
    if as_json:
        emit_json(data)
        return
    for key, value in data.items():
        if key == "persona":
            value = f"{len(value)} characters" if value else "-"
        click.echo(f"{key:<22} {value}")


@profiles_group.command()
@click.argument("names", nargs=-1)
@json_option
@pass_state
def check(state: State, names: tuple[str, ...], as_json: bool) -> None:
    """Check profiles: the file parses, its placeholders are known, its program is installed.
    Exits 1 when any named profile (default: all) has a problem.

    \b
    Example:
      kanban profiles check claude-code codex
    """
    from kanban import errors, profiles

    repo = _repo(state)
    selected = list(names) or sorted(profiles.available(repo=repo))
    results: dict[str, list[str]] = {}
    for name in selected:
        try:
            results[name] = profiles.check(profiles.load(name, repo=repo))
        except errors.ProfileError as exc:
            results[name] = [exc.message]
    if as_json:
        emit_json(results)
    else:
        for name, problems in results.items():
            if problems:
                for problem in problems:
                    click.echo(f"{name}: {problem}")
            else:
                click.echo(f"{name}: ok")
    if any(results.values()):
        sys.exit(1)
