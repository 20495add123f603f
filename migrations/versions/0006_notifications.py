"""notifications: subscriptions and the outbox of their deliveries

Revision ID: 0006
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("url", sa.Text()),
        sa.Column("command", sa.JSON()),
        sa.Column("format", sa.String(16), nullable=False),
        sa.Column("kinds", sa.Text()),
        sa.Column("secret_env", sa.String(128)),
        sa.Column("card_id", sa.Integer()),
        sa.Column("goal_id", sa.Integer()),
        sa.Column("profile", sa.String(128)),
        sa.Column("created_by", sa.String(255)),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint(
            "(url IS NULL) <> (command IS NULL)", name=op.f("ck_subscriptions_one_target")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
        sa.UniqueConstraint("name", name=op.f("uq_subscriptions_name")),
    )
    op.create_table(
        "deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("card_id", sa.Integer()),
        sa.Column("goal_id", sa.Integer()),
        sa.Column("run_id", sa.Integer()),
        sa.Column("title", sa.Text()),
        sa.Column("status", sa.String(16)),
        sa.Column("reason", sa.Text()),
        sa.Column("summary", sa.Text()),
        sa.Column("data", sa.JSON()),
        sa.Column("body", sa.Text()),
        sa.Column("state", sa.String(8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", sa.DateTime(), nullable=False),
        sa.Column("lease_owner", sa.String(255)),
        sa.Column("lease_until", sa.DateTime()),
        sa.Column("answer", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("sent_at", sa.DateTime()),
        sa.CheckConstraint(
            "state IN ('pending', 'sent', 'dead')", name=op.f("ck_deliveries_state")
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_deliveries_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deliveries")),
        sa.UniqueConstraint("event_id", "subscription_id", name=op.f("uq_deliveries_event_id")),
    )
    op.create_index("ix_deliveries_due", "deliveries", ["state", "next_at"])
    op.create_index("ix_deliveries_subscription", "deliveries", ["subscription_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_subscription", table_name="deliveries")
    op.drop_index("ix_deliveries_due", table_name="deliveries")
    op.drop_table("deliveries")
    op.drop_table("subscriptions")
