"""The state store's implementation; `geogate.store` is its interface."""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from geogate.store import journal
from geogate.store.journal import Event
from geogate.store.models import (
    ApiKey,
    AuditEvent,
    ConsoleSession,
    Group,
    GroupMember,
    ServiceAccount,
    UsedOnce,
    User,
    UtcDateTime,
)
from geogate.store.recorded import RecordIndex
from geogate.store.reviews import ReviewStore
from geogate.store.rules import (
    StoreError,
    check_user_name,
    checked_groups,
    first_time,
    is_user_name,
    utc_now,
)
from geogate.store.scim import ScimDirectory

API_KEY_PREFIX = "gk_"
_API_KEY = re.compile(r"gk_[A-Za-z0-9_-]{43}")
_SERVICE_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MIGRATIONS = Path(__file__).parent / "migrations"
_WRITE = "geogate_write"
"""Execution option marking a connection whose transactions take the SQLite write lock at BEGIN."""
_BUSY_TIMEOUT_MS = 15_000
"""How long a write waits for another process's (workers, the CLI, a migration at start)."""
_MIGRATION_BUSY_TIMEOUT_MS = 60_000
"""Processes starting together migrate one after the other, each holding the write lock while
alembic runs (a second or more on a loaded machine): the last in line may wait that long."""


def new_api_key() -> str:
    """`gk_` and 256 random bits in URL-safe base64: 46 characters, safe in any header."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """SHA-256 hex: keys are 256-bit random, so a fast hash cannot be brute-forced."""
    return hashlib.sha256(key.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    """True for the shape `new_api_key` makes; tells API keys from OIDC tokens without I/O."""
    return _API_KEY.fullmatch(token) is not None


@dataclass(frozen=True, slots=True)
class UserInfo:
    name: str
    active: bool
    created_at: datetime
    deactivated_at: datetime | None


@dataclass(frozen=True, slots=True)
class DirectorySnapshot:
    """Who is switched off and who is in which SCIM group, as of `revision`.

    User names are casefolded: the directory matches users without regard to case.
    """

    revision: int
    inactive: frozenset[str]
    groups: Mapping[str, frozenset[str]]
    """SCIM groups by (casefolded) user name; users in none are absent."""


@dataclass(frozen=True, slots=True)
class ServiceAccountInfo:
    name: str
    owner: str
    owner_active: bool
    groups: tuple[str, ...]
    created_at: datetime
    keys: int
    """Keys neither revoked nor expired."""


@dataclass(frozen=True, slots=True)
class EventInfo:
    id: int
    at: datetime
    kind: str
    actor: str | None
    subject: str | None
    detail: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """A console session, found by the key its cookie holds."""

    user: str
    groups: frozenset[str]
    method: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What may be shown about a key: never the key or its hash."""

    id: str
    prefix: str
    """The first 8 characters after `gk_`, to tell keys apart."""
    owner: str
    service_account: str | None
    groups: tuple[str, ...]
    """The groups a caller with this key has (the key's and its service account's)."""
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreatedKey:
    info: KeyInfo
    key: str = field(repr=False)
    """The clear key; it exists nowhere else and cannot be shown again."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """Everything authentication needs about a key, read in one query."""

    id: str
    owner: str
    owner_active: bool
    service_account: str | None
    groups: frozenset[str]
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class Store:
    """Async access to the state database; one per process, shared by all tasks."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**{_WRITE: True})
        self._signal = journal.ChangeSignal(Path(f"{engine.url.database}-changes"))
        self._scim = ScimDirectory(self._engine, self._writer, self._signal)
        self._recorded = RecordIndex(self._engine, self._writer)
        self._reviews = ReviewStore(self._engine, self._writer)
        self.folder = Path(str(engine.url.database)).parent
        """Where the database file is; other processes of this host find each other there."""

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._signal.close()
        await self._engine.dispose()

    def directory_marker(self) -> bytes:
        """Changes whenever the directory does: cheap enough (a memory read) for every call.

        Any process that commits a directory change (CLI, SCIM, admin API, another worker)
        rewrites it right after the commit, so the very next call everywhere sees the change.
        """
        return self._signal.current()

    @property
    def scim(self) -> ScimDirectory:
        """SCIM provisioning: users an IdP manages, and its groups."""
        return self._scim

    @property
    def recorded(self) -> RecordIndex:
        """The index of recorded calls and sessions."""
        return self._recorded

    @property
    def reviews(self) -> ReviewStore:
        """Calls held for, or refused until, a human's approval."""
        return self._reviews

    async def ping(self) -> bool:
        """Whether the database answers, for readiness probes: never raises."""
        try:
            async with self._engine.connect() as conn:
                await conn.execute(select(1))
        except (OSError, SQLAlchemyError):
            return False
        return True

    async def create_key(
        self,
        owner: str,
        *,
        groups: Sequence[str],
        expires_in: float,
        service_account: str | None = None,
        actor: str = "cli",
    ) -> CreatedKey:
        """Mint a key for `owner` (created, active, if unknown).

        With `service_account`, the key acts as that account, which is created owned by `owner`
        (with `groups`) if it does not exist; an account owned by someone else is refused.
        """
        check_user_name(owner)
        key_groups = checked_groups(groups)
        if service_account is not None and not _SERVICE_ACCOUNT.fullmatch(service_account):
            raise StoreError(
                f"{service_account!r} is not a service account name; use up to 64 letters, "
                "digits, '.', '_' or '-', starting with a letter or digit."
            )
        now = utc_now()
        expires_at = _expiry(now, expires_in)
        key = new_api_key()
        key_id = "key_" + secrets.token_hex(6)
        prefix = key[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + 8]
        async with self._writer.begin() as conn:
            owner_id = await _owner_for_new_key(conn, owner, now, actor)
            account_id: int | None = None
            account_groups: list[str] = []
            if service_account is not None:
                account_id, account_groups = await _service_account_for_new_key(
                    conn, service_account, owner, owner_id, key_groups, now
                )
            await conn.execute(
                insert(ApiKey).values(
                    id=key_id,
                    key_hash=hash_api_key(key),
                    prefix=prefix,
                    owner_id=owner_id,
                    service_account_id=account_id,
                    groups=key_groups,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            detail = {"key_id": key_id, "service_account": service_account}
            await journal.write_events(conn, [Event("key.created", actor, owner, detail)])
        info = KeyInfo(
            id=key_id,
            prefix=prefix,
            owner=owner,
            service_account=service_account,
            groups=tuple(sorted({*key_groups, *account_groups})),
            created_at=now,
            expires_at=expires_at,
            revoked_at=None,
            last_used_at=None,
        )
        return CreatedKey(info=info, key=key)

    async def list_keys(self) -> list[KeyInfo]:
        """All keys, revoked and expired ones included, oldest first."""
        query = _keys_joined(
            ApiKey.id,
            ApiKey.prefix,
            User.name,
            ServiceAccount.name,
            ApiKey.groups,
            ServiceAccount.groups,
            ApiKey.created_at,
            ApiKey.expires_at,
            ApiKey.revoked_at,
            ApiKey.last_used_at,
        ).order_by(ApiKey.created_at, ApiKey.id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            KeyInfo(
                id=key_id,
                prefix=prefix,
                owner=owner,
                service_account=account,
                groups=tuple(sorted(_effective_groups(key_groups, account_groups))),
                created_at=created_at,
                expires_at=expires_at,
                revoked_at=revoked_at,
                last_used_at=last_used_at,
            )
            for (
                key_id,
                prefix,
                owner,
                account,
                key_groups,
                account_groups,
                created_at,
                expires_at,
                revoked_at,
                last_used_at,
            ) in rows
        ]

    async def find_key(self, key_hash: str) -> KeyRecord | None:
        """The key with this SHA-256, with its owner's state and service account, or None."""
        query = _keys_joined(
            ApiKey.id,
            User.name,
            User.active,
            ServiceAccount.name,
            ApiKey.groups,
            ServiceAccount.groups,
            ApiKey.expires_at,
            ApiKey.revoked_at,
            ApiKey.last_used_at,
        ).where(ApiKey.key_hash == key_hash)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        key_id, owner, active, account, key_groups, account_groups, expires, revoked, used = row
        return KeyRecord(
            id=key_id,
            owner=owner,
            owner_active=active,
            service_account=account,
            groups=_effective_groups(key_groups, account_groups),
            expires_at=expires,
            revoked_at=revoked,
            last_used_at=used,
        )

    async def revoke_key(self, key_id: str, *, actor: str = "cli") -> bool:
        """Revoke for good (the first revocation time is kept); False if there is no such key."""
        async with self._writer.begin() as conn:
            result = await conn.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(revoked_at=first_time(ApiKey.revoked_at, utc_now()))
            )
            if result.rowcount == 1:
                await journal.write_events(conn, [Event("key.revoked", actor, key_id)])
        return result.rowcount == 1

    async def touch_key(self, key_id: str, used_at: datetime) -> None:
        """Record that the key was used at `used_at` (never moves the time backwards)."""
        async with self._writer.begin() as conn:
            await conn.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    or_(ApiKey.last_used_at.is_(None), ApiKey.last_used_at < used_at),
                )
                .values(last_used_at=used_at)
            )

    async def list_users(self) -> list[UserInfo]:
        query = select(User.name, User.active, User.created_at, User.deactivated_at).order_by(
            User.name
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            UserInfo(name=name, active=active, created_at=created, deactivated_at=deactivated)
            for name, active, created, deactivated in rows
        ]

    async def find_user(self, name: str) -> UserInfo | None:
        query = select(User.name, User.active, User.created_at, User.deactivated_at).where(
            User.name == name
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else UserInfo(*row)

    async def set_user_active(
        self, name: str, active: bool, *, actor: str = "cli", create: bool = False
    ) -> bool:
        """(De)activate a user and so every key they own; False if there is no such user.

        A change of state is an audit event and moves the directory revision, which every
        worker polls, so tokens of a deactivated user stop working everywhere at once.
        With `create`, deactivating a user the gateway has not seen yet records them as
        deactivated, so their tokens are refused from their first call.
        """
        async with journal.changing(self._writer, self._signal) as conn:
            row = (await conn.execute(select(User.active).where(User.name == name))).first()
            if row is None and create and not active:
                check_user_name(name)
                now = utc_now()
                await conn.execute(
                    insert(User).values(name=name, active=False, created_at=now, deactivated_at=now)
                )
                events = [
                    Event("user.created", actor, name),
                    Event("user.deactivated", actor, name),
                ]
                await journal.write_events(conn, events)
                await journal.bump(conn)
                return True
            if row is None:
                return False
            if row[0] != active:
                await conn.execute(
                    update(User)
                    .where(User.name == name)
                    .values(
                        active=active,
                        deactivated_at=None
                        if active
                        else first_time(User.deactivated_at, utc_now()),
                    )
                )
                kind = "user.activated" if active else "user.deactivated"
                await journal.write_events(conn, [Event(kind, actor, name)])
                await journal.bump(conn)
        return True

    async def ensure_users(self, names: Iterable[str], *, actor: str) -> None:
        """Create (active) the users among `names` the gateway has not seen before."""
        wanted = {name for name in names if is_user_name(name)}
        if not wanted:
            return
        async with self._writer.begin() as conn:
            known = set(
                (await conn.execute(select(User.name).where(User.name.in_(wanted)))).scalars()
            )
            new = sorted(wanted - known)
            if new:
                now = utc_now()
                await conn.execute(
                    insert(User), [{"name": n, "active": True, "created_at": now} for n in new]
                )
                await journal.write_events(
                    conn, [Event("user.created", actor, name) for name in new]
                )

    async def directory_revision(self) -> int:
        """Cheap to poll: moves whenever `load_directory` would give something new."""
        async with self._engine.connect() as conn:
            return await journal.current(conn)

    async def load_directory(self) -> DirectorySnapshot:
        async with self._engine.connect() as conn:
            revision = await journal.current(conn)
            inactive = frozenset(
                name.casefold()
                for name in (
                    await conn.execute(select(User.name).where(User.active.is_(False)))
                ).scalars()
            )
            rows = await conn.execute(
                select(User.name, Group.display_name)
                .join(GroupMember, GroupMember.user_id == User.id)
                .join(Group, Group.id == GroupMember.group_id)
            )
            groups: dict[str, set[str]] = {}
            for user, group in rows:
                groups.setdefault(user.casefold(), set()).add(group)
        return DirectorySnapshot(
            revision, inactive, {user: frozenset(names) for user, names in groups.items()}
        )

    async def list_service_accounts(self) -> list[ServiceAccountInfo]:
        live = (
            select(func.count(ApiKey.id))
            .where(
                ApiKey.service_account_id == ServiceAccount.id,
                ApiKey.revoked_at.is_(None),
                ApiKey.expires_at > literal(utc_now(), UtcDateTime()),
            )
            .scalar_subquery()
        )
        query = (
            select(
                ServiceAccount.name,
                User.name,
                User.active,
                ServiceAccount.groups,
                ServiceAccount.created_at,
                live,
            )
            .join(User, User.id == ServiceAccount.owner_id)
            .order_by(ServiceAccount.name)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            ServiceAccountInfo(name, owner, active, tuple(sorted(groups)), created, keys)
            for name, owner, active, groups, created, keys in rows
        ]

    async def record_events(self, events: Sequence[Event]) -> None:
        """Write a batch of audit events in one transaction."""
        if events:
            async with self._writer.begin() as conn:
                await journal.write_events(conn, events)

    async def list_events(
        self,
        *,
        kind: str | None = None,
        subject: str | None = None,
        since: datetime | None = None,
        limit: int = 1000,
    ) -> list[EventInfo]:
        """Audit events, oldest first; `kind` may end in `.` to take a family (`user.`)."""
        query = select(
            AuditEvent.id,
            AuditEvent.at,
            AuditEvent.kind,
            AuditEvent.actor,
            AuditEvent.subject,
            AuditEvent.detail,
        )
        if kind is not None:
            query = query.where(
                AuditEvent.kind.startswith(kind, autoescape=True)
                if kind.endswith(".")
                else AuditEvent.kind == kind
            )
        if subject is not None:
            query = query.where(AuditEvent.subject == subject)
        if since is not None:
            query = query.where(AuditEvent.at >= literal(since, UtcDateTime()))
        query = query.order_by(AuditEvent.id).limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [EventInfo(*row) for row in rows]

    async def create_session(
        self, user: str, groups: Iterable[str], *, method: str, lifetime: float
    ) -> str:
        """Start a console session; returns the key its cookie carries (only its hash is kept)."""
        key = secrets.token_urlsafe(32)
        now = utc_now()
        async with self._writer.begin() as conn:
            await conn.execute(
                delete(ConsoleSession).where(
                    ConsoleSession.expires_at <= literal(now, UtcDateTime())
                )
            )
            await conn.execute(
                insert(ConsoleSession).values(
                    id_hash=hash_api_key(key),
                    user_name=user,
                    groups=sorted(set(groups)),
                    method=method,
                    created_at=now,
                    expires_at=_expiry(now, lifetime),
                )
            )
            await journal.write_events(conn, [Event("login", user, user, {"method": method})])
        return key

    async def find_session(self, key: str) -> SessionRecord | None:
        """The live session for a cookie's key, or None (unknown, ended or expired)."""
        query = select(
            ConsoleSession.user_name,
            ConsoleSession.groups,
            ConsoleSession.method,
            ConsoleSession.expires_at,
        ).where(
            ConsoleSession.id_hash == hash_api_key(key),
            ConsoleSession.expires_at > literal(utc_now(), UtcDateTime()),
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        user, groups, method, expires_at = row
        return SessionRecord(user, frozenset(groups), method, expires_at)

    async def end_session(self, key: str) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(
                delete(ConsoleSession).where(ConsoleSession.id_hash == hash_api_key(key))
            )

    async def use_once(self, value: str, expires_at: datetime) -> bool:
        """Claim `value` (a SAML assertion id) until `expires_at`; False if already claimed."""
        now = utc_now()
        async with self._writer.begin() as conn:
            await conn.execute(
                delete(UsedOnce).where(UsedOnce.expires_at <= literal(now, UtcDateTime()))
            )
            seen = (
                await conn.execute(select(UsedOnce.value).where(UsedOnce.value == value))
            ).first()
            if seen is not None:
                return False
            await conn.execute(insert(UsedOnce).values(value=value, expires_at=expires_at))
        return True


async def open_store(url: str, *, migrate: bool = True) -> Store:
    """Migrate the database at `url` to the current schema, then open it.

    Takes a SQLAlchemy URL such as `sqlite:///.geogate/state.db` (the folder is created).
    `migrate=False` skips the migration, for worker processes whose parent already ran it.
    """
    sync_url, async_url = driver_urls(url)
    try:
        if sync_url.database:
            Path(sync_url.database).parent.mkdir(parents=True, exist_ok=True)
        if migrate:
            await asyncio.to_thread(_migrate, sync_url)
    except (OSError, DBAPIError) as exc:
        reason = exc.orig if isinstance(exc, DBAPIError) else exc.strerror or exc
        raise StoreError(
            f"gateway.state {_shown(sync_url)!r}: cannot open the database ({reason}); "
            "check the path, its permissions, and that the file is a GeoGate state database."
        ) from exc
    engine = create_async_engine(async_url)
    _share_sqlite(engine.sync_engine)
    return Store(engine)


def driver_urls(url: str) -> tuple[URL, URL]:
    """(URL for the synchronous migration run, URL for the async engine) of `gateway.state`."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        # The URL itself is not repeated: it may hold a password.
        raise StoreError("gateway.state is not a database URL; write sqlite:///PATH") from None
    if parsed.get_backend_name() != "sqlite":
        raise StoreError(
            f"gateway.state {_shown(parsed)!r}: this GeoGate version keeps its state in "
            "SQLite only; write sqlite:///PATH"
        )
    if parsed.database in (None, "", ":memory:"):
        raise StoreError(
            f"gateway.state {_shown(parsed)!r}: the state must be a file that every process "
            "can open; write sqlite:///PATH"
        )
    return parsed.set(drivername="sqlite+pysqlite"), parsed.set(drivername="sqlite+aiosqlite")


def _shown(url: URL) -> str:
    return url.set(drivername=url.get_backend_name()).render_as_string(hide_password=True)


def _migrate(url: URL) -> None:
    """`alembic upgrade head`, holding the write lock so concurrent starts queue up."""
    engine = create_engine(url, poolclass=NullPool, execution_options={_WRITE: True})
    _share_sqlite(engine, busy_timeout_ms=_MIGRATION_BUSY_TIMEOUT_MS)
    config = AlembicConfig()
    config.set_main_option("script_location", str(_MIGRATIONS).replace("%", "%%"))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def _share_sqlite(engine: Engine, busy_timeout_ms: int = _BUSY_TIMEOUT_MS) -> None:
    """Make a SQLite engine safe to use beside other processes on the same file."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver's own implicit BEGIN would start writes as readers; `_begin` does it instead.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            f"busy_timeout = {busy_timeout_ms}",
            "journal_mode = WAL",
            "synchronous = NORMAL",
            "foreign_keys = ON",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once (SQLITE_BUSY) when
        # another process wrote in between; taking the lock up front makes writers wait instead.
        write = conn.get_execution_options().get(_WRITE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def _keys_joined(*columns: Any) -> Select[Any]:
    return (
        select(*columns)
        .select_from(ApiKey)
        .join(User, User.id == ApiKey.owner_id)
        .outerjoin(ServiceAccount, ServiceAccount.id == ApiKey.service_account_id)
    )


async def _owner_for_new_key(conn: AsyncConnection, owner: str, now: datetime, actor: str) -> int:
    row = (await conn.execute(select(User.id, User.active).where(User.name == owner))).first()
    if row is None:
        result = await conn.execute(
            insert(User).values(name=owner, active=True, created_at=now).returning(User.id)
        )
        await journal.write_events(conn, [Event("user.created", actor, owner)])
        return int(result.scalar_one())
    user_id, active = row
    if not active:
        raise StoreError(
            f"The user {owner} is deactivated; reactivate them with "
            f"`geogate users activate {owner}` before creating keys for them."
        )
    return int(user_id)


async def _service_account_for_new_key(
    conn: AsyncConnection,
    name: str,
    owner: str,
    owner_id: int,
    groups: list[str],
    now: datetime,
) -> tuple[int, list[str]]:
    """(id, groups) of the account, created with `groups` if new; refused if someone else's."""
    row = (
        await conn.execute(
            select(ServiceAccount.id, ServiceAccount.groups, User.id, User.name)
            .join(User, User.id == ServiceAccount.owner_id)
            .where(ServiceAccount.name == name)
        )
    ).first()
    if row is None:
        result = await conn.execute(
            insert(ServiceAccount)
            .values(name=name, owner_id=owner_id, groups=groups, created_at=now)
            .returning(ServiceAccount.id)
        )
        return result.scalar_one(), groups
    account_id, account_groups, account_owner_id, account_owner = row
    if account_owner_id != owner_id:
        raise StoreError(
            f"The service account {name} belongs to {account_owner}, not {owner}; "
            f"create its keys with --owner {account_owner}, or choose another account name."
        )
    return int(account_id), list(account_groups)


def _effective_groups(key_groups: list[str], account_groups: list[str] | None) -> frozenset[str]:
    """A service account's groups apply to every key it holds; a key may add its own."""
    return frozenset(key_groups).union(account_groups or ())


def _expiry(now: datetime, expires_in: float) -> datetime:
    if not (math.isfinite(expires_in) and expires_in > 0):
        raise StoreError(f"a key must expire a positive time from now, not in {expires_in!r}s")
    try:
        return now + timedelta(seconds=expires_in)
    except OverflowError:
        raise StoreError(f"an expiry {expires_in:g}s from now is past the year 9999") from None
