"""The state tables, as SQLAlchemy declarative models.

The alembic migrations in `migrations/versions/` create exactly these tables; a test compares
the two so a model change without a migration fails. Timestamps are timezone-aware UTC in Python
whatever the database keeps (SQLite has no time zones).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Named constraints, so later migrations (SQLite batch mode included) can refer to them."""


class UtcDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime; stored naive on SQLite, which would otherwise drop the offset."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class User(Base):
    """A human: the login or email an API key or OIDC token is accountable to."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(320), unique=True)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deactivated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    scim_id: Mapped[str | None] = mapped_column(String(36), unique=True, nullable=True)
    """Set once an IdP provisions the user through SCIM; the id SCIM URLs use."""
    external_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    display_name: Mapped[str | None] = mapped_column(String(256), nullable=True)


class ServiceAccount(Base):
    """A non-human caller (a CI job, a bot); a human owner answers for it."""

    __tablename__ = "service_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    groups: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiKey(Base):
    """A gateway API key; only the SHA-256 of the key is kept, never the key."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(8))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    service_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("service_accounts.id"), nullable=True
    )
    groups: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Group(Base):
    """A group provisioned by SCIM; its members get it on top of the groups their token carries."""

    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(256), unique=True)
    external_id: Mapped[str | None] = mapped_column(String(256), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )


class Revision(Base):
    """Counters that other processes poll to learn cheaply that something changed.

    `directory` moves on every change to who is active and who is in which SCIM group, so
    each worker reloads its in-memory directory only when it must.
    """

    __tablename__ = "revisions"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class AuditEvent(Base):
    """An identity event: a (de)activation, a SCIM change, a key made or revoked, a refusal."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(320), nullable=True)
    """Who did it (`cli`, `scim`, a user); for a refused call, the caller if known."""
    subject: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    """Whom or what it is about: a user, a key id, a group."""
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class ConsoleSession(Base):
    """A signed-in console or API browser session; the cookie holds a key, we keep its hash."""

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_name: Mapped[str] = mapped_column(String(320), index=True)
    groups: Mapped[list[str]] = mapped_column(JSON)
    method: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)


class UsedOnce(Base):
    """Values that must never be accepted twice (SAML assertion ids) until they expire."""

    __tablename__ = "used_once"

    value: Mapped[str] = mapped_column(String(256), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class RecordedCall(Base):
    """The index of the recordings: one row per call, to list and filter sessions fast.

    The record itself (content, evidence, the signed log) is in the recording store; a row
    says where (`log`, `first_index` for the call, `last_index` for its reply) and is rebuilt
    from the log after a crash. Calls sharing `session_key` form one session.
    """

    __tablename__ = "recorded_calls"

    request_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    session_key: Mapped[str] = mapped_column(String(40), index=True)
    session: Mapped[str] = mapped_column(String(128))
    """The caller's own session id (`x-geogate-session`), or the request id."""
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    subject: Mapped[str | None] = mapped_column(String(320), nullable=True)
    user: Mapped[str | None] = mapped_column(String(320), nullable=True, index=True)
    connection: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    policy: Mapped[str | None] = mapped_column(String(128), nullable=True)
    decision: Mapped[str] = mapped_column(String(16))
    code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    region: Mapped[str | None] = mapped_column(String(128), nullable=True)
    status: Mapped[int] = mapped_column(Integer, default=0)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)
    masked: Mapped[dict[str, int] | None] = mapped_column(JSON, nullable=True)
    log: Mapped[str] = mapped_column(String(128))
    first_index: Mapped[int] = mapped_column(BigInteger)
    last_index: Mapped[int] = mapped_column(BigInteger)


class RecordedLog(Base):
    """How far the index has taken each recording log: a restart indexes from there."""

    __tablename__ = "recorded_logs"

    log: Mapped[str] = mapped_column(String(128), primary_key=True)
    indexed_to: Mapped[int] = mapped_column(BigInteger)
    """Every record before this position is indexed, or is a call still waiting for its
    reply (whose row is written with the reply)."""


class Review(Base):
    """A call held for (`hold`) or refused until (`ask`) a human's approval.

    `binding` is the SHA-256 of what the approval covers (caller, connection, method, target,
    request body, policy version): a retry of the same call finds its review by it. Votes are
    kept in the row; any denial decides, and so do `min_approvals` approvals.
    """

    __tablename__ = "reviews"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    binding: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    """pending | approved | denied | expired | used | withdrawn"""
    mode: Mapped[str] = mapped_column(String(8))
    request_id: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(320), index=True)
    user: Mapped[str] = mapped_column(String(320))
    connection: Mapped[str] = mapped_column(String(128))
    policy: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str] = mapped_column(String(32))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    """What approvers are shown: the call's facts and a masked preview, never raw values."""
    approvers: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    min_approvals: Mapped[int] = mapped_column(Integer)
    votes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    grant: Mapped[float] = mapped_column(Float)
    """Seconds an approval lets the caller use the connection; 0: this one call only."""
    timeout: Mapped[float] = mapped_column(Float)
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime)
    deadline: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    grant_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
