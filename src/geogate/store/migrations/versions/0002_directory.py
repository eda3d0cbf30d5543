"""SCIM groups and user links, directory revisions, audit events, console sessions.

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
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("scim_id", sa.String(36), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(256), nullable=True))
        batch.add_column(sa.Column("display_name", sa.String(256), nullable=True))
        batch.create_unique_constraint("uq_users_scim_id", ["scim_id"])
    op.create_table(
        "groups",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("external_id", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_groups"),
        sa.UniqueConstraint("display_name", name="uq_groups_display_name"),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "user_id", name="pk_group_members"),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name="fk_group_members_group_id_groups",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_group_members_user_id_users", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "revisions",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_revisions"),
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(320), nullable=True),
        sa.Column("subject", sa.String(320), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
    )
    op.create_index("ix_audit_events_at", "audit_events", ["at"])
    op.create_index("ix_audit_events_subject", "audit_events", ["subject"])
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("user_name", sa.String(320), nullable=False),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name="pk_console_sessions"),
    )
    op.create_index("ix_console_sessions_user_name", "console_sessions", ["user_name"])
    op.create_table(
        "used_once",
        sa.Column("value", sa.String(256), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("value", name="pk_used_once"),
    )
    op.create_index("ix_used_once_expires_at", "used_once", ["expires_at"])


def downgrade() -> None:
    op.drop_table("used_once")
    op.drop_table("console_sessions")
    op.drop_table("audit_events")
    op.drop_table("revisions")
    op.drop_table("group_members")
    op.drop_table("groups")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_scim_id", type_="unique")
        batch.drop_column("display_name")
        batch.drop_column("external_id")
        batch.drop_column("scim_id")
