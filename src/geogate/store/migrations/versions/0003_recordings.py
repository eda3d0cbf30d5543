"""The index of recorded calls and sessions.

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
        "recorded_calls",
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("session_key", sa.String(40), nullable=False),
        sa.Column("session", sa.String(128), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(320), nullable=True),
        sa.Column("user", sa.String(320), nullable=True),
        sa.Column("connection", sa.String(128), nullable=True),
        sa.Column("policy", sa.String(128), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("code", sa.String(64), nullable=True),
        sa.Column("region", sa.String(128), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("bytes_in", sa.BigInteger(), nullable=False),
        sa.Column("bytes_out", sa.BigInteger(), nullable=False),
        sa.Column("masked", sa.JSON(), nullable=True),
        sa.Column("log", sa.String(128), nullable=False),
        sa.Column("first_index", sa.BigInteger(), nullable=False),
        sa.Column("last_index", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("request_id", name="pk_recorded_calls"),
    )
    for column in ("session_key", "at", "user", "connection"):
        op.create_index(f"ix_recorded_calls_{column}", "recorded_calls", [column])
    op.create_table(
        "recorded_logs",
        sa.Column("log", sa.String(128), nullable=False),
        sa.Column("indexed_to", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("log", name="pk_recorded_logs"),
    )


def downgrade() -> None:
    op.drop_table("recorded_logs")
    op.drop_table("recorded_calls")
