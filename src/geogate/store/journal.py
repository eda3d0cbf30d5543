"""What every state change writes beside itself: an audit event, and a revision bump.

Both go into the same transaction as the change, so an event exists exactly when the change
happened. A change of the directory (who is active, who is in which group) is also announced,
once committed, through the `ChangeSignal` file beside the database: every process reads that
file on every call, through shared memory, and reloads its directory when it changed.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

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
    """Move revision `name` on; the caller's transaction must hold the write lock.

    Inside `changing`, the change is also announced to other processes once committed.
    """
    conn.info[_MOVED] = True
    result = await conn.execute(
        update(Revision).where(Revision.name == name).values(value=Revision.value + 1)
    )
    if result.rowcount == 0:
        await conn.execute(insert(Revision).values(name=name, value=1))


async def current(conn: AsyncConnection, name: str = DIRECTORY) -> int:
    value = (await conn.execute(select(Revision.value).where(Revision.name == name))).scalar()
    return int(value or 0)


_MOVED = "geogate_directory_moved"
_MARKER = 8


class ChangeSignal:
    """An 8-byte file that writers rewrite with a new random value after a directory change.

    Readers map it into memory, so looking at it costs a memory read, not a system call or a
    database lock: cheap enough for every call. A value that differs from the last one seen
    means "reload". The value is written after the commit, so a reader that sees it also sees
    the change.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._map: mmap.mmap | None = None

    def current(self) -> bytes:
        if self._map is None:
            self._map = self._open()
        return self._map[:_MARKER]

    def announce(self) -> None:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.pwrite(fd, os.urandom(_MARKER), 0)
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def _open(self) -> mmap.mmap:
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _MARKER:
                os.pwrite(fd, bytes(_MARKER), 0)  # never read past the end of the file
            return mmap.mmap(fd, _MARKER, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)


@asynccontextmanager
async def changing(writer: AsyncEngine, signal: ChangeSignal) -> AsyncIterator[AsyncConnection]:
    """A write transaction that announces a directory change once it is committed."""
    async with writer.begin() as conn:
        yield conn
        moved = conn.info.pop(_MOVED, False)
    if moved:
        signal.announce()
