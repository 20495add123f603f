"""goals and their turns; schedules and their fires; cards belong to goals

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "goals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("objective", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("planner", sa.String(length=128), nullable=True),
        sa.Column("judge", sa.String(length=128), nullable=True),
        sa.Column("max_turns", sa.Integer(), nullable=False),
        sa.Column("auto", sa.Boolean(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('planning', 'proposed', 'working', 'judging', 'done', 'blocked', 'cancelled')",
            name=op.f("ck_goals_status"),
        ),
        sa.CheckConstraint("length(objective) > 0", name=op.f("ck_goals_objective_not_empty")),
        sa.CheckConstraint("max_turns >= 1", name=op.f("ck_goals_max_turns_positive")),
        sa.CheckConstraint("turn >= 0", name=op.f("ck_goals_turn_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_goals")),
    )
    op.create_index("ix_goals_status", "goals", ["status"])
    _add_card_columns()
    op.create_index("ix_cards_goal", "cards", ["goal_id"])
    op.create_table(
        "goal_turns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("goal_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("feedback", sa.Text(), nullable=True),
        sa.Column("planner_card_id", sa.Integer(), nullable=True),
        sa.Column("plan", sa.JSON(), nullable=True),
        sa.Column("proposed_at", sa.DateTime(), nullable=True),
        sa.Column("approved_at", sa.DateTime(), nullable=True),
        sa.Column("judge_card_id", sa.Integer(), nullable=True),
        sa.Column("verdict_done", sa.Boolean(), nullable=True),
        sa.Column("verdict_reason", sa.Text(), nullable=True),
        sa.Column("judged_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["goal_id"], ["goals.id"], name=op.f("fk_goal_turns_goal_id_goals"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["planner_card_id"],
            ["cards.id"],
            name=op.f("fk_goal_turns_planner_card_id_cards"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["judge_card_id"],
            ["cards.id"],
            name=op.f("fk_goal_turns_judge_card_id_cards"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_goal_turns")),
        sa.UniqueConstraint("goal_id", "number", name=op.f("uq_goal_turns_goal_id")),
    )
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.String(length=255), nullable=False),
        sa.Column("tz", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("template", sa.JSON(), nullable=False),
        sa.Column("overlap", sa.String(length=8), nullable=False),
        sa.Column("catch_up", sa.String(length=8), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("last_fire_at", sa.DateTime(), nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.CheckConstraint("kind IN ('card', 'goal')", name=op.f("ck_schedules_kind")),
        sa.CheckConstraint("overlap IN ('skip', 'allow')", name=op.f("ck_schedules_overlap")),
        sa.CheckConstraint(
            "catch_up IN ('none', 'latest', 'all')", name=op.f("ck_schedules_catch_up")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
        sa.UniqueConstraint("name", name=op.f("uq_schedules_name")),
    )
    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=False),
        sa.Column("fire_at", sa.DateTime(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("card_id", sa.Integer(), nullable=True),
        sa.Column("goal_id", sa.Integer(), nullable=True),
        sa.Column("skipped", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["schedule_id"],
            ["schedules.id"],
            name=op.f("fk_schedule_fires_schedule_id_schedules"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["cards.id"],
            name=op.f("fk_schedule_fires_card_id_cards"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["goal_id"],
            ["goals.id"],
            name=op.f("fk_schedule_fires_goal_id_goals"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_fires")),
        sa.UniqueConstraint("schedule_id", "fire_at", name=op.f("uq_schedule_fires_schedule_id")),
    )


# Batch mode copies SQLite's cards table; it cannot reflect the DESC indexes, so the card
# indexes are dropped before the copy and made again after it.
_CARD_INDEXES = {
    "ix_cards_queue": (["status", sa.text("priority DESC"), "ready_at"], {}),
    "ix_cards_profile_queue": (["status", "profile", sa.text("priority DESC"), "ready_at"], {}),
    "ix_cards_backoff": (
        ["not_before"],
        {
            "sqlite_where": sa.text("not_before IS NOT NULL"),
            "postgresql_where": sa.text("not_before IS NOT NULL"),
        },
    ),
}


def _copying_cards() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _drop_card_indexes() -> None:
    if _copying_cards():
        for name in _CARD_INDEXES:
            op.drop_index(name, table_name="cards")


def _create_card_indexes() -> None:
    if _copying_cards():
        for name, (columns, options) in _CARD_INDEXES.items():
            op.create_index(name, "cards", columns, **options)


def _add_card_columns() -> None:
    _drop_card_indexes()
    with op.batch_alter_table("cards") as batch:
        batch.add_column(sa.Column("goal_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("role", sa.String(length=16), nullable=True))
        batch.create_foreign_key(
            op.f("fk_cards_goal_id_goals"), "goals", ["goal_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_check_constraint(
            op.f("ck_cards_role"), "role IS NULL OR role IN ('planner', 'judge')"
        )
    _create_card_indexes()


def _drop_card_columns() -> None:
    _drop_card_indexes()
    with op.batch_alter_table("cards") as batch:
        batch.drop_constraint(op.f("ck_cards_role"), type_="check")
        batch.drop_constraint(op.f("fk_cards_goal_id_goals"), type_="foreignkey")
        batch.drop_column("role")
        batch.drop_column("goal_id")
    _create_card_indexes()


def downgrade() -> None:
    op.drop_table("schedule_fires")
    op.drop_table("schedules")
    op.drop_table("goal_turns")
    op.drop_index("ix_cards_goal", table_name="cards")
    _drop_card_columns()
    op.drop_index("ix_goals_status", table_name="goals")
    op.drop_table("goals")
