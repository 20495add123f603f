"""dispatchers: liveness of each dispatcher; queue indexes for the dispatcher's tick

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dispatchers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.Column("interval_s", sa.Double(), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("last_tick", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatchers")),
        sa.UniqueConstraint("name", name=op.f("uq_dispatchers_name")),
    )
    op.create_index(
        "ix_cards_profile_queue",
        "cards",
        ["status", "profile", sa.text("priority DESC"), "ready_at"],
    )
    op.create_index(
        "ix_cards_backoff",
        "cards",
        ["not_before"],
        sqlite_where=sa.text("not_before IS NOT NULL"),
        postgresql_where=sa.text("not_before IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_cards_backoff", table_name="cards")
    op.drop_index("ix_cards_profile_queue", table_name="cards")
    op.drop_table("dispatchers")
