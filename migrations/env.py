"""Alembic environment for kanban boards.

Programmatic use (kanban.db.upgrade) hands over an open connection in
`config.attributes["connection"]`, already inside the board's write transaction.
From the command line: `alembic -x db=PATH_OR_URL upgrade head` (or KANBAN_DB).
"""

from __future__ import annotations

import os

from alembic import context

from kanban import db, models

config = context.config


def run(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=models.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # type: ignore[attr-defined]
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    target = (
        context.get_x_argument(as_dictionary=True).get("db")
        or os.environ.get("KANBAN_DB")
        or config.get_main_option("sqlalchemy.url")
    )
    if not target:
        raise SystemExit(
            "give the board: alembic -x db=PATH_OR_URL upgrade head (or set KANBAN_DB)"
        )
    url = db.resolve_url(target)
    engine = db.create_engine(url, foreign_keys=False)
    with engine.connect() as conn:
        conn.execution_options(kanban_write=True)
        run(conn)
        conn.commit()
    engine.dispose()
