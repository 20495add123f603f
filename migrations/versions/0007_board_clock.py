"""board clock and PostgreSQL queue: each dispatcher's clock offset; queue indexes end in id

The candidate and claim queries sort ready cards on (priority, ready_at, id). SQLite's indexes
end in the rowid already; PostgreSQL's did not, so it sorted every ready card of a profile
in each tick (40 ms at 100,000 cards). The queue indexes now hold `id` as their last key.

Revision ID: 0007
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dispatchers") as batch_op:
        # This dispatcher's clock minus the database's, in seconds (None on SQLite).
        batch_op.add_column(sa.Column("clock_offset_s", sa.Double(), nullable=True))
    op.drop_index("ix_cards_queue", table_name="cards")
    op.drop_index("ix_cards_profile_queue", table_name="cards")
    op.create_index(
        "ix_cards_queue", "cards", ["status", sa.text("priority DESC"), "ready_at", "id"]
    )
    op.create_index(
        "ix_cards_profile_queue",
        "cards",
        ["status", "profile", sa.text("priority DESC"), "ready_at", "id"],
    )


def downgrade() -> None:
    op.drop_index("ix_cards_profile_queue", table_name="cards")
    op.drop_index("ix_cards_queue", table_name="cards")
    op.create_index(
        "ix_cards_profile_queue",
        "cards",
        ["status", "profile", sa.text("priority DESC"), "ready_at"],
    )
    op.create_index("ix_cards_queue", "cards", ["status", sa.text("priority DESC"), "ready_at"])
    with op.batch_alter_table("dispatchers") as batch_op:
        batch_op.drop_column("clock_offset_s")
