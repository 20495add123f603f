"""`kanban db`: the board's schema."""

from __future__ import annotations

import click

from kanban.cli._common import Group, State, emit_json, json_option, pass_state


@click.group(cls=Group)
def db_group() -> None:
    """Inspect and upgrade the board's schema.

    Every command upgrades an older board by itself; these are for operators who want to
    do it at a chosen moment (before a deploy) or check what a board is at.

    \b
    Example:
      kanban db current
    """


@db_group.command()
@json_option
@pass_state
def upgrade(state: State, as_json: bool) -> None:
    """Bring the board's schema to this kanban's version.

    \b
    Example:
      kanban --db postgresql://kanban@db/kanban db upgrade
    """
    from kanban import db  # SQLAlchemy and Alembic: only for the commands that need them

    config = state.settings()
    path = db.sqlite_path(config.db_url)
    if path is not None and not db.check_sqlite_file(path) and not path.exists():
        db.create_sqlite_file(path)
    engine = db.create_engine(config.db_url)
    try:
        before, after = db.upgrade(engine)
    finally:
        engine.dispose()
    if as_json:
        emit_json({"before": before, "after": after, "head": db.SCHEMA_HEAD})
    elif before == after:
        click.echo(f"schema already at {after}")
    else:
        click.echo(f"schema upgraded {before or '(empty)'} -> {after}")


@db_group.command()
@json_option
@pass_state
def current(state: State, as_json: bool) -> None:
    """Print the board's schema revision and this kanban's.

    \b
    Example:
      kanban db current --json
    """
    from kanban import db

    config = state.settings()
    path = db.sqlite_path(config.db_url)
    revision = None
    if path is None or db.check_sqlite_file(path):
        engine = db.create_engine(config.db_url)
        try:
            revision = db.read_version(engine)
        finally:
            engine.dispose()
    if as_json:
        emit_json({"current": revision, "head": db.SCHEMA_HEAD, "db": config.db_url})
    else:
        state_text = "up to date" if revision == db.SCHEMA_HEAD else "needs `kanban db upgrade`"
        click.echo(f"board {revision or '(no board)'}, kanban {db.SCHEMA_HEAD}: {state_text}")
