"""What every state change writes beside itself: an audit event, and a revision bump.

Both go into the same transaction as the change, so an event exists exactly when the change
happened, and a worker polling `revisions` sees the change as soon as it is committed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from geogate.store.models import AuditEvent, Revision

DIRECTORY = "directory"
"""The revision that moves when a user is (de)activated or SCIM group membership changes."""


@dataclass(frozen=True, slots=True)
class Event:
    """An audit event to write; `detail` holds small JSON facts, never credentials."""

    kind: str
    actor: str | None
    subject: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


async def write_events(conn: AsyncConnection, events: Sequence[Event]) -> None:
    if events:
        await conn.execute(
            insert(AuditEvent),
            [
                {
                    "at": event.at,
                    "kind": event.kind,
                    "actor": event.actor,
                    "subject": event.subject,
                    "detail": dict(event.detail),
                }
                for event in events
            ],
        )


async def bump(conn: AsyncConnection, name: str = DIRECTORY) -> None:
    """Move revision `name` on; the caller's transaction must hold the write lock."""
    result = await conn.execute(
        update(Revision).where(Revision.name == name).values(value=Revision.value + 1)
    )
    if result.rowcount == 0:
        await conn.execute(insert(Revision).values(name=name, value=1))


async def current(conn: AsyncConnection, name: str = DIRECTORY) -> int:
    value = (await conn.execute(select(Revision.value).where(Revision.name == name))).scalar()
    return int(value or 0)
