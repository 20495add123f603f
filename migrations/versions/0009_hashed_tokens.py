"""hashed lease tokens: runs.token holds the SHA-256 of the token, never the token itself

Revision ID: 0009
Revises: 0005
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0005"
branch_labels = None
depends_on = None

_runs = sa.table("runs", sa.column("id", sa.Integer()), sa.column("token", sa.String(64)))


def upgrade() -> None:
    # A live run's supervisor still holds its plaintext token; the digest stored here matches
    # it, so runs in flight across the upgrade keep their lease.
    conn = op.get_bind()
    for run_id, token in conn.execute(sa.select(_runs.c.id, _runs.c.token)).all():
        conn.execute(
            sa.update(_runs)
            .where(_runs.c.id == run_id)
            .values(token=hashlib.sha256(token.encode()).hexdigest())
        )


def downgrade() -> None:
    # A digest cannot be turned back into its token: live runs lose their lease (their
    # supervisors stop their agents) and ended runs never needed one.
    pass
