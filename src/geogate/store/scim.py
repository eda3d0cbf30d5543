"""SCIM 2.0 provisioning on the state tables: users an IdP manages, and its groups.

    directory = store.scim
    user = await directory.create_user("alice@example.com", external_id="00u1")
    await directory.update_user(user.id, active=False)   # switched off in every worker

A SCIM user is a row of `users` with a `scim_id`; provisioning a name the gateway already knows
(from an API key or a token) links that row instead of making a second one. Every change to who
is active or who is in which group writes its audit events (actor `scim`) and moves the
`directory` revision in the same transaction, so workers reload exactly when they must.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final, Generic, Literal, TypeVar
from uuid import uuid4

from sqlalchemy import ColumnElement, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from geogate.store import journal
from geogate.store.journal import Event
from geogate.store.models import AuditEvent, Group, GroupMember, User
from geogate.store.rules import StoreError, checked_groups, first_time, is_user_name, utc_now

ACTOR = "scim"
_TEXT_LIMIT = 256
_USER_EVENTS = (
    "user.created",
    "user.activated",
    "user.deactivated",
    "scim.user.created",
    "scim.user.updated",
    "scim.user.deleted",
)
"""The audit events that change a user's SCIM resource: the latest one is its lastModified."""

T = TypeVar("T")
ScimType = Literal["uniqueness", "invalidValue", "mutability"]


class Keep(Enum):
    """Marks an attribute an update leaves as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


class ScimError(StoreError):
    """A SCIM change the directory refuses; `scim_type` is its RFC 7644 §3.12 error type."""

    def __init__(self, scim_type: ScimType, message: str) -> None:
        super().__init__(message)
        self.scim_type: ScimType = scim_type


@dataclass(frozen=True, slots=True)
class ScimRef:
    """A user's group or a group's member: its SCIM id and its name."""

    value: str
    display: str


@dataclass(frozen=True, slots=True)
class ScimUser:
    id: str
    user_name: str
    external_id: str | None
    display_name: str | None
    active: bool
    created_at: datetime
    modified_at: datetime
    groups: tuple[ScimRef, ...]


@dataclass(frozen=True, slots=True)
class ScimGroup:
    id: str
    display_name: str
    external_id: str | None
    created_at: datetime
    modified_at: datetime
    members: tuple[ScimRef, ...] | None
    """None when the caller asked for the group without its members."""


@dataclass(frozen=True, slots=True)
class ScimPage(Generic[T]):
    total: int
    """How many match the filter, whatever the page size."""
    items: tuple[T, ...]


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One step of a PATCH on a group's members; steps apply in request order."""

    op: Literal["add", "remove", "replace"]
    user_ids: frozenset[str]


class ScimDirectory:
    """The SCIM side of the store; `Store.scim` hands out the process's one instance."""

    def __init__(
        self,
        engine: AsyncEngine,
        writer: AsyncEngine,
        signal: journal.ChangeSignal,
        actor: str = ACTOR,
    ) -> None:
        self._engine = engine
        self._writer = writer
        self._signal = signal
        self._actor = actor

    def acting_as(self, actor: str) -> ScimDirectory:
        """The same directory, naming `actor` (an admin, rather than the IdP) in its events."""
        return ScimDirectory(self._engine, self._writer, self._signal, actor)

    async def create_user(
        self,
        user_name: str,
        *,
        external_id: str | None = None,
        display_name: str | None = None,
        active: bool = True,
    ) -> ScimUser:
        """Provision `user_name`, linking the row of a user the gateway already knows.

        A name that is already provisioned (compared case-insensitively) is a uniqueness error.
        """
        _check_user_name(user_name)
        _check_text("externalId", external_id)
        _check_text("displayName", display_name)
        now = utc_now()
        scim_id = str(uuid4())
        async with journal.changing(self._writer, self._signal) as conn:
            linked = (
                await conn.execute(
                    select(User.name).where(
                        func.lower(User.name) == func.lower(user_name), User.scim_id.is_not(None)
                    )
                )
            ).scalar()
            if linked is not None:
                raise ScimError(
                    "uniqueness",
                    f"The user {linked} is already provisioned; find them with "
                    f'filter=userName eq "{linked}" and update them with PUT or PATCH.',
                )
            row = (
                await conn.execute(select(User.id, User.active).where(User.name == user_name))
            ).first()
            attributes = {
                "scim_id": scim_id,
                "external_id": external_id,
                "display_name": display_name,
            }
            events: list[Event] = []
            if row is None:
                await conn.execute(
                    insert(User).values(
                        name=user_name,
                        active=active,
                        created_at=now,
                        deactivated_at=None if active else now,
                        **attributes,
                    )
                )
                moved = not active
            else:
                pk, was_active = row
                await conn.execute(update(User).where(User.id == pk).values(**attributes))
                moved = was_active != active
                if moved:
                    events.append(await _set_active(conn, pk, user_name, active, self._actor))
            detail = {"id": scim_id, "linked": row is not None}
            events.insert(0, Event("scim.user.created", self._actor, user_name, detail))
            await _commit(conn, events, moved)
            created = await _user(conn, scim_id)
        assert created is not None
        return created

    async def get_user(self, user_id: str) -> ScimUser | None:
        async with self._engine.connect() as conn:
            return await _user(conn, user_id)

    async def list_users(
        self,
        *,
        user_name: str | None = None,
        external_id: str | None = None,
        user_id: str | None = None,
        active: bool | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> ScimPage[ScimUser]:
        """Provisioned users matching every filter given, oldest first; userName ignores case."""
        conditions: list[ColumnElement[bool]] = [User.scim_id.is_not(None)]
        if user_name is not None:
            conditions.append(func.lower(User.name) == func.lower(user_name))
        if external_id is not None:
            conditions.append(User.external_id == external_id)
        if user_id is not None:
            conditions.append(User.scim_id == user_id)
        if active is not None:
            conditions.append(User.active.is_(active))
        async with self._engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(User).where(*conditions))
            ).scalar_one()
            users = await _users(conn, conditions, offset, limit)
        return ScimPage(total, tuple(users))

    async def update_user(
        self,
        user_id: str,
        *,
        user_name: str | Keep = KEEP,
        external_id: str | Keep | None = KEEP,
        display_name: str | Keep | None = KEEP,
        active: bool | Keep = KEEP,
    ) -> ScimUser | None:
        """Change the attributes given; None if no provisioned user has this id.

        `user_name` may only repeat the current name: keys and tokens are bound to it.
        """
        _check_text("externalId", external_id)
        _check_text("displayName", display_name)
        async with journal.changing(self._writer, self._signal) as conn:
            row = (
                await conn.execute(
                    select(
                        User.id, User.name, User.external_id, User.display_name, User.active
                    ).where(User.scim_id == user_id)
                )
            ).first()
            if row is None:
                return None
            pk, name, old_external_id, old_display_name, was_active = row
            if not isinstance(user_name, Keep) and user_name != name:
                raise ScimError(
                    "mutability",
                    f"userName cannot change from {name} to {user_name}: API keys and audit "
                    "records are bound to it; deprovision this user and provision the new "
                    "name as a new user.",
                )
            values: dict[str, Any] = {}
            if not isinstance(external_id, Keep) and external_id != old_external_id:
                values["external_id"] = external_id
            if not isinstance(display_name, Keep) and display_name != old_display_name:
                values["display_name"] = display_name
            events: list[Event] = []
            if values:
                await conn.execute(update(User).where(User.id == pk).values(**values))
                changed = sorted(_ATTRIBUTE_NAMES[column] for column in values)
                events.append(
                    Event("scim.user.updated", self._actor, name, {"attributes": changed})
                )
            moved = not isinstance(active, Keep) and active != was_active
            if moved:
                events.append(await _set_active(conn, pk, name, bool(active), self._actor))
            await _commit(conn, events, moved)
            return await _user(conn, user_id)

    async def delete_user(self, user_id: str) -> bool:
        """Deprovision: deactivate, leave every group and drop the SCIM link; keep the row.

        API keys and audit records refer to the row, and a later POST of the same name links
        it again. False if no provisioned user has this id.
        """
        now = utc_now()
        async with journal.changing(self._writer, self._signal) as conn:
            row = (
                await conn.execute(
                    select(User.id, User.name, User.active).where(User.scim_id == user_id)
                )
            ).first()
            if row is None:
                return False
            pk, name, was_active = row
            groups = (
                await conn.execute(
                    select(Group.id, Group.display_name)
                    .join(GroupMember, GroupMember.group_id == Group.id)
                    .where(GroupMember.user_id == pk)
                    .order_by(Group.display_name)
                )
            ).all()
            events: list[Event] = []
            if was_active:
                events.append(await _set_active(conn, pk, name, False, self._actor))
            if groups:
                await conn.execute(delete(GroupMember).where(GroupMember.user_id == pk))
                await conn.execute(
                    update(Group)
                    .where(Group.id.in_([group_id for group_id, _ in groups]))
                    .values(updated_at=now)
                )
            await conn.execute(
                update(User).where(User.id == pk).values(scim_id=None, external_id=None)
            )
            detail = {"id": user_id, "groups": [group_name for _, group_name in groups]}
            events.append(Event("scim.user.deleted", self._actor, name, detail))
            await _commit(conn, events, was_active or bool(groups))
        return True

    async def create_group(
        self,
        display_name: str,
        *,
        external_id: str | None = None,
        members: Iterable[str] = (),
    ) -> ScimGroup:
        """A new group with `members` (SCIM user ids); a taken displayName is a uniqueness error."""
        _check_group_name(display_name)
        _check_text("externalId", external_id)
        wanted = frozenset(members)
        now = utc_now()
        group_id = str(uuid4())
        async with journal.changing(self._writer, self._signal) as conn:
            await _check_free_group_name(conn, display_name, None)
            users = await _known_users(conn, wanted)
            await conn.execute(
                insert(Group).values(
                    id=group_id,
                    display_name=display_name,
                    external_id=external_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            if users:
                await conn.execute(
                    insert(GroupMember),
                    [{"group_id": group_id, "user_id": pk} for pk, _ in users.values()],
                )
            names = sorted(name for _, name in users.values())
            detail = {"id": group_id, "members": names}
            event = Event("scim.group.created", self._actor, display_name, detail)
            await _commit(conn, [event], bool(users))
            created = await _group(conn, group_id, members=True)
        assert created is not None
        return created

    async def get_group(self, group_id: str, *, members: bool = True) -> ScimGroup | None:
        async with self._engine.connect() as conn:
            return await _group(conn, group_id, members=members)

    async def list_groups(
        self,
        *,
        display_name: str | None = None,
        external_id: str | None = None,
        group_id: str | None = None,
        offset: int = 0,
        limit: int = 100,
        members: bool = True,
    ) -> ScimPage[ScimGroup]:
        """Groups matching every filter given, oldest first; displayName ignores case."""
        conditions: list[ColumnElement[bool]] = []
        if display_name is not None:
            conditions.append(func.lower(Group.display_name) == func.lower(display_name))
        if external_id is not None:
            conditions.append(Group.external_id == external_id)
        if group_id is not None:
            conditions.append(Group.id == group_id)
        async with self._engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(Group).where(*conditions))
            ).scalar_one()
            groups = await _groups(conn, conditions, offset, limit, members=members)
        return ScimPage(total, tuple(groups))

    async def update_group(
        self,
        group_id: str,
        *,
        display_name: str | Keep = KEEP,
        external_id: str | Keep | None = KEEP,
        members: Sequence[MemberChange] = (),
    ) -> ScimGroup | None:
        """Rename, re-tag and change members in one transaction; None if there is no such group.

        Adding or replacing with an id that is not a provisioned user is an invalidValue error;
        removing someone who is not a member is not an error.
        """
        if not isinstance(display_name, Keep):
            _check_group_name(display_name)
        _check_text("externalId", external_id)
        now = utc_now()
        async with journal.changing(self._writer, self._signal) as conn:
            row = (
                await conn.execute(
                    select(Group.display_name, Group.external_id).where(Group.id == group_id)
                )
            ).first()
            if row is None:
                return None
            name, old_external_id = row
            events: list[Event] = []
            values: dict[str, Any] = {}
            moved = False
            if not isinstance(display_name, Keep) and display_name != name:
                await _check_free_group_name(conn, display_name, group_id)
                values["display_name"] = display_name
                renamed = {"id": group_id, "from": name, "to": display_name}
                events.append(Event("scim.group.renamed", self._actor, display_name, renamed))
                name = display_name
                moved = True
            if not isinstance(external_id, Keep) and external_id != old_external_id:
                values["external_id"] = external_id
            if members:
                added, removed = await _change_members(conn, group_id, members)
                if added or removed:
                    changed = {"id": group_id, "added": added, "removed": removed}
                    events.append(Event("scim.group.members", self._actor, name, changed))
                    moved = True
            if values or moved:
                values["updated_at"] = now
                await conn.execute(update(Group).where(Group.id == group_id).values(**values))
            await _commit(conn, events, moved)
            return await _group(conn, group_id, members=True)

    async def delete_group(self, group_id: str) -> bool:
        """Delete the group and its memberships; False if there is no such group."""
        async with journal.changing(self._writer, self._signal) as conn:
            name = (
                await conn.execute(select(Group.display_name).where(Group.id == group_id))
            ).scalar()
            if name is None:
                return False
            result = await conn.execute(delete(GroupMember).where(GroupMember.group_id == group_id))
            await conn.execute(delete(Group).where(Group.id == group_id))
            detail = {"id": group_id, "members": result.rowcount}
            event = Event("scim.group.deleted", self._actor, name, detail)
            await _commit(conn, [event], result.rowcount > 0)
        return True


_ATTRIBUTE_NAMES = {"external_id": "externalId", "display_name": "displayName"}


def _check_user_name(name: str) -> None:
    if not is_user_name(name):
        raise ScimError(
            "invalidValue",
            f"userName {name[:64]!r} is not usable; send the person's login or email: "
            "1 to 320 printable characters without spaces.",
        )


def _check_text(attribute: str, value: str | Keep | None) -> None:
    if isinstance(value, str) and not (0 < len(value) <= _TEXT_LIMIT and value.isprintable()):
        raise ScimError(
            "invalidValue",
            f"{attribute} must be 1 to {_TEXT_LIMIT} printable characters, or left out.",
        )


def _check_group_name(name: str) -> None:
    try:
        checked_groups([name])
    except StoreError as exc:
        raise ScimError("invalidValue", f"displayName: {exc}") from None


async def _check_free_group_name(conn: AsyncConnection, name: str, group_id: str | None) -> None:
    query = select(Group.display_name).where(func.lower(Group.display_name) == func.lower(name))
    if group_id is not None:
        query = query.where(Group.id != group_id)
    taken = (await conn.execute(query)).scalar()
    if taken is not None:
        raise ScimError(
            "uniqueness",
            f"A group named {taken} already exists; find it with "
            f'filter=displayName eq "{taken}" and update it instead.',
        )


async def _known_users(
    conn: AsyncConnection, user_ids: frozenset[str]
) -> dict[str, tuple[int, str]]:
    """(row id, name) by SCIM id; an id that is not a provisioned user is an invalidValue error."""
    if not user_ids:
        return {}
    rows = await conn.execute(
        select(User.scim_id, User.id, User.name).where(User.scim_id.in_(user_ids))
    )
    known = {str(scim_id): (pk, name) for scim_id, pk, name in rows}
    unknown = sorted(user_ids - known.keys())
    if unknown:
        raise ScimError(
            "invalidValue",
            f"No provisioned user has the id {unknown[0][:64]!r}; provision the user with "
            "POST /Users first and use the id it returns as the member value.",
        )
    return known


async def _change_members(
    conn: AsyncConnection, group_id: str, changes: Sequence[MemberChange]
) -> tuple[list[str], list[str]]:
    """Apply `changes` in order; the (added, removed) user names."""
    rows = await conn.execute(
        select(User.scim_id, User.id, User.name)
        .join(GroupMember, GroupMember.user_id == User.id)
        .where(GroupMember.group_id == group_id)
    )
    current = {str(scim_id): (pk, name) for scim_id, pk, name in rows}
    wanted = {i for change in changes if change.op != "remove" for i in change.user_ids}
    users = {**current, **await _known_users(conn, frozenset(wanted - current.keys()))}
    final = set(current)
    for change in changes:
        if change.op == "add":
            final |= change.user_ids
        elif change.op == "remove":
            final -= change.user_ids
        else:
            final = set(change.user_ids)
    added = sorted(final - current.keys())
    removed = sorted(current.keys() - final)
    if removed:
        await conn.execute(
            delete(GroupMember).where(
                GroupMember.group_id == group_id,
                GroupMember.user_id.in_([current[i][0] for i in removed]),
            )
        )
    if added:
        await conn.execute(
            insert(GroupMember), [{"group_id": group_id, "user_id": users[i][0]} for i in added]
        )
    return sorted(users[i][1] for i in added), sorted(current[i][1] for i in removed)


async def _set_active(conn: AsyncConnection, pk: int, name: str, active: bool, actor: str) -> Event:
    """Switch the user on or off (keeping the first deactivation time); the event to write."""
    await conn.execute(
        update(User)
        .where(User.id == pk)
        .values(
            active=active,
            deactivated_at=None if active else first_time(User.deactivated_at, utc_now()),
        )
    )
    return Event("user.activated" if active else "user.deactivated", actor, name)


async def _commit(conn: AsyncConnection, events: Sequence[Event], moved: bool) -> None:
    """Write the change's audit events, and move the directory revision if it changed."""
    await journal.write_events(conn, events)
    if moved:
        await journal.bump(conn)


async def _user(conn: AsyncConnection, user_id: str) -> ScimUser | None:
    users = await _users(conn, [User.scim_id == user_id], 0, 1)
    return users[0] if users else None


async def _users(
    conn: AsyncConnection, conditions: Sequence[ColumnElement[bool]], offset: int, limit: int
) -> list[ScimUser]:
    modified = (
        select(func.max(AuditEvent.at))
        .where(AuditEvent.subject == User.name, AuditEvent.kind.in_(_USER_EVENTS))
        .correlate(User)
        .scalar_subquery()
    )
    query = (
        select(
            User.id,
            User.scim_id,
            User.name,
            User.external_id,
            User.display_name,
            User.active,
            User.created_at,
            modified,
        )
        .where(*conditions)
        .order_by(User.id)
        .offset(offset)
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    if not rows:
        return []
    groups: dict[int, list[ScimRef]] = {}
    memberships = await conn.execute(
        select(GroupMember.user_id, Group.id, Group.display_name)
        .join(Group, Group.id == GroupMember.group_id)
        .where(GroupMember.user_id.in_([row[0] for row in rows]))
        .order_by(Group.display_name)
    )
    for pk, group_id, group_name in memberships:
        groups.setdefault(pk, []).append(ScimRef(group_id, group_name))
    return [
        ScimUser(
            id=str(scim_id),
            user_name=name,
            external_id=external_id,
            display_name=display_name,
            active=active,
            created_at=created_at,
            modified_at=max(created_at, last_event or created_at),
            groups=tuple(groups.get(pk, ())),
        )
        for pk, scim_id, name, external_id, display_name, active, created_at, last_event in rows
    ]


async def _group(conn: AsyncConnection, group_id: str, *, members: bool) -> ScimGroup | None:
    groups = await _groups(conn, [Group.id == group_id], 0, 1, members=members)
    return groups[0] if groups else None


async def _groups(
    conn: AsyncConnection,
    conditions: Sequence[ColumnElement[bool]],
    offset: int,
    limit: int,
    *,
    members: bool,
) -> list[ScimGroup]:
    query = (
        select(Group.id, Group.display_name, Group.external_id, Group.created_at, Group.updated_at)
        .where(*conditions)
        .order_by(Group.created_at, Group.id)
        .offset(offset)
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    refs: dict[str, list[ScimRef]] | None = None
    if members and rows:
        refs = {}
        found = await conn.execute(
            select(GroupMember.group_id, User.scim_id, User.name)
            .join(User, User.id == GroupMember.user_id)
            .where(GroupMember.group_id.in_([row[0] for row in rows]))
            .order_by(User.name)
        )
        for group_id, scim_id, name in found:
            refs.setdefault(group_id, []).append(ScimRef(str(scim_id), name))
    return [
        ScimGroup(
            id=group_id,
            display_name=name,
            external_id=external_id,
            created_at=created_at,
            modified_at=updated_at,
            members=None if refs is None else tuple(refs.get(group_id, ())),
        )
        for group_id, name, external_id, created_at, updated_at in rows
    ]
