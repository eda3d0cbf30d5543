"""Reviews: calls held for, or refused until, a human's approval.

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


def upgrade() -> None:
    op.create_table(
        "reviews",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("binding", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("subject", sa.String(320), nullable=False),
        sa.Column("user", sa.String(320), nullable=False),
        sa.Column("connection", sa.String(128), nullable=False),
        sa.Column("policy", sa.String(128), nullable=False),
        sa.Column("policy_version", sa.String(32), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("min_approvals", sa.Integer(), nullable=False),
        sa.Column("votes", sa.JSON(), nullable=False),
        sa.Column("grant", sa.Float(), nullable=False),
        sa.Column("timeout", sa.Float(), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grant_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_reviews"),
    )
    for column in ("binding", "status", "subject"):
        op.create_index(f"ix_reviews_{column}", "reviews", [column])


def downgrade() -> None:
    op.drop_table("reviews")
