"""per-card model, arguments and variables; the model and agent session of each run

Revision ID: 0010
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("cards") as batch_op:
        batch_op.add_column(sa.Column("model", sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("agent_args", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("agent_env", sa.JSON(), nullable=True))
    with op.batch_alter_table("runs") as batch_op:
        batch_op.add_column(sa.Column("model", sa.String(200), nullable=True))
        batch_op.add_column(sa.Column("session_id", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch_op:
        batch_op.drop_column("session_id")
        batch_op.drop_column("model")
    with op.batch_alter_table("cards") as batch_op:
        batch_op.drop_column("agent_env")
        batch_op.drop_column("agent_args")
        batch_op.drop_column("model")
