"""agent usage: tokens and cost per run, cost caps per card and goal, the `stalled` outcome

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_OUTCOMES = (
    "'done', 'failed', 'crashed', 'timed_out', 'reclaimed', 'rate_limited', 'spawn_failed', "
    "'blocked', 'cancelled'"
)
_WITH_STALLED = (
    "'done', 'failed', 'crashed', 'timed_out', 'stalled', 'reclaimed', 'rate_limited', "
    "'spawn_failed', 'blocked', 'cancelled'"
)


def upgrade() -> None:
    with op.batch_alter_table("cards") as batch_op:
        batch_op.add_column(sa.Column("max_cost_usd", sa.Double(), nullable=True))
    with op.batch_alter_table("goals") as batch_op:
        batch_op.add_column(sa.Column("max_cost_usd", sa.Double(), nullable=True))
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("tokens_in", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("tokens_out", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("cost_usd", sa.Double(), nullable=True))
        batch_op.drop_constraint(op.f("ck_runs_outcome"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_runs_outcome"), f"outcome IS NULL OR outcome IN ({_WITH_STALLED})"
        )


def downgrade() -> None:
    op.execute("UPDATE runs SET outcome = 'failed' WHERE outcome = 'stalled'")
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_constraint(op.f("ck_runs_outcome"), type_="check")
        batch_op.create_check_constraint(
            op.f("ck_runs_outcome"), f"outcome IS NULL OR outcome IN ({_OUTCOMES})"
        )
        batch_op.drop_column("cost_usd")
        batch_op.drop_column("tokens_out")
        batch_op.drop_column("tokens_in")
    with op.batch_alter_table("goals") as batch_op:
        batch_op.drop_column("max_cost_usd")
    with op.batch_alter_table("cards") as batch_op:
        batch_op.drop_column("max_cost_usd")
