"""board identity (one row: the id its branches carry) and `runs.released_at` (when no process
of an ended run can still be alive; a card's next run waits for it)

Revision ID: 0005
Revises: 0007
"""

from __future__ import annotations

import datetime as dt
import secrets

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "board_identity",
        sa.Column("board_id", sa.String(16), primary_key=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)  # naive UTC, as every column
    op.bulk_insert(table, [{"board_id": secrets.token_hex(4), "created_at": now}])
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("released_at", sa.DateTime(), nullable=True))
    # Runs that ended before this revision: their processes were stopped the old way.
    op.execute("UPDATE runs SET released_at = ended_at WHERE outcome IS NOT NULL")
    where = "outcome IS NOT NULL AND released_at IS NULL"
    op.create_index(
        "ix_runs_unreleased",
        "runs",
        ["host"],
        sqlite_where=sa.text(where),
        postgresql_where=sa.text(where),
    )


def downgrade() -> None:
    op.drop_index("ix_runs_unreleased", table_name="runs")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("released_at")
    op.drop_table("board_identity")
