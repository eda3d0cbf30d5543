"""Refused calls as audit events, written in batches beside the access log.

A refusal costs the call only an append to a list; a background task writes the batch in one
transaction every `interval` seconds. The backlog is bounded, so a flood of bad credentials can
neither grow memory nor queue writes without end: past `limit` pending events, further ones are
counted in `geogate_audit_events_dropped_total` (and still appear in the access log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter

from geogate.gateway.observe import CallLog
from geogate.store import Event, Store

log = logging.getLogger(__name__)

DROPPED = Counter(
    "geogate_audit_events_dropped",
    "Refusal audit events not written because the backlog was full.",
)


class RefusalTrail:
    def __init__(self, store: Store, *, interval: float = 0.5, limit: int = 10_000) -> None:
        self._store = store
        self._interval = interval
        self._limit = limit
        self._pending: list[Event] = []
        self._task: asyncio.Task[None] | None = None

    def refused(self, call: CallLog) -> None:
        if len(self._pending) >= self._limit:
            DROPPED.inc()
            return
        detail = {"code": call.code, "connection": call.connection, "request_id": call.request_id}
        self._pending.append(Event("call.refused", call.subject, call.user, detail))

    def start(self) -> None:
        self._task = asyncio.create_task(self._write_forever(), name="geogate-refusal-trail")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def flush(self) -> None:
        events, self._pending = self._pending, []
        if not events:
            return
        try:
            await self._store.record_events(events)
        except Exception as exc:
            log.warning("could not write %d refusal audit events: %s", len(events), exc)
            self._pending[:0] = events[: self._limit - len(self._pending)]

    async def _write_forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
