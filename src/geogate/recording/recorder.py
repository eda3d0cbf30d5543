"""The recorder: every call's record is stored before the call is forwarded.

    recorder = await Recorder.start(config.gateway, store.recorded)
    await recorder.write_ahead(calls.call(...))   # stored, or RecordingUnavailable
    recorder.append(calls.reply(...))             # stored with the next batch
    await recorder.close()                        # last batch, flush, signed checkpoint

A record reaches the operating system before its call goes on, so a crash or `kill -9` of
the gateway loses no record of a forwarded call. Disk flushes are grouped (group commit): by
default (`recordings.sync: 10ms`) one flush every 10 ms covers everything written since, a
lone call record is appended by its caller at once, and replies go with the next call's
record or the next flush; with `sync: 0s` each batch is flushed before its calls go on, and
records that arrive meanwhile go together in the next batch, one append and one flush for
all of them. An object store acknowledges a write once it is durable.

Each process writes a log of its own (`host.N`, N taken with a lock file beside the audit
key), signs a checkpoint of it every `checkpoints.records` records or `checkpoints.interval`,
copies checkpoints to the witness, deletes segments past `retention` (recording the deletion
in the log itself) and keeps the session index in the state store up to date.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from geogate.config import Gateway
from geogate.recording import calls
from geogate.recording.log import (
    SEGMENT_BYTES,
    LogReader,
    LogState,
    Record,
    Segment,
    checkpoint_path,
    ordered,
    origin,
    recover,
    saved,
    seal,
    segment_folder,
    segment_name,
    state_path,
    timestamp,
)
from geogate.recording.merkle import leaf_hash
from geogate.recording.note import AuditKey, Checkpoint
from geogate.recording.storage import Storage, StorageError, open_storage
from geogate.store import RecordIndex

_log = logging.getLogger("geogate.recording")

LOST = Counter(
    "geogate_records_lost",
    "Reply and refusal records that could not be stored (the store failed and the backlog "
    "was full); write-ahead records are never lost: their calls are refused instead.",
)
FAILING = Gauge(
    "geogate_recording_failing",
    "1 while the recording store refuses writes (calls are refused with recording_unavailable).",
    multiprocess_mode="max",
)
BACKLOG = 10_000
INDEX_INTERVAL = 1.0
"""Seconds between writes of the session index: `sessions list` shows a call at most this
long after it ended."""


class RecordingUnavailable(Exception):
    """The record could not be stored, so the call must not be forwarded."""


@dataclass(slots=True)
class _Pending:
    record: Record
    done: asyncio.Future[int] | None
    """Set for a write-ahead record, whose call waits for it."""


@dataclass(slots=True)
class _IndexQueue:
    """Rows on their way to the session index. A call's row waits for its reply, so each call
    is one insert; the log's mark stays at the first call still open, so after a crash the
    gateway indexes again from there."""

    done: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)
    """Replies to calls whose row was written before them (by the process before a restart)."""
    open: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    floor: int | None = None
    """The first position whose row was dropped (the store failed too long): the mark stays
    below it, so the next start indexes it again."""

    def put(self, log: str, position: int, record: Record, at: datetime | None = None) -> None:
        row = calls.index_row(log, position, record, at)
        if row is None:
            return
        kind, columns = row
        if kind == "finish":
            held = self.open.pop(columns["request_id"], None)
            if held is None:
                self.late.append(columns)
            else:
                held[1].update(columns)
                self.done.append(held[1])
        elif record.get("kind") == "call":
            self.open[columns["request_id"]] = (position, columns)
        else:
            self.done.append(columns)

    def close_open(self) -> None:
        """Calls that will get no reply (the process that forwarded them has stopped)."""
        self.done += [row for _, row in self.open.values()]
        self.open.clear()

    def mark(self, size: int) -> int:
        marks = [position for position, _ in self.open.values()]
        if self.floor is not None:
            marks.append(self.floor)
        return min(marks, default=size)


class Recorder:
    def __init__(
        self,
        gateway: Gateway,
        storage: Storage,
        log: str,
        state: LogState,
        key: AuditKey,
        witness: Storage | None,
        index: RecordIndex | None,
        lock: int,
    ) -> None:
        settings = gateway.recordings
        self.storage = storage
        self.log = log
        self.state = state
        self.key = key
        self.witness = witness
        self.index = index
        self._sync_every = settings.sync
        self._direct = storage.appends and settings.sync > 0
        """Whether a lone record is appended by its caller (see `write_ahead`)."""
        self._checkpoint_every = settings.checkpoints.records
        self._checkpoint_interval = settings.checkpoints.interval
        self._retention = settings.retention
        self._lock = lock
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._signed = 0
        self._failing = False
        """The last batch could not be stored: its unwaited records wait for the next one."""
        self._cut: tuple[str, int] | None = None
        """A segment to cut back to its size before the next append (a failed append)."""
        self._indexing = _IndexQueue()
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, gateway: Gateway, index: RecordIndex | None) -> Recorder:
        settings = gateway.recordings
        try:
            key = await asyncio.to_thread(AuditKey.load, gateway.audit_key)
        except (ValueError, OSError) as exc:  # NoteError is a ValueError
            raise RecordingUnavailable(f"cannot load the audit key: {exc}") from exc
        folder = Path(gateway.audit_key).parent
        try:
            lock, log = _claim_log(folder)
        except OSError as exc:
            raise RecordingUnavailable(
                f"cannot take a log of this process's own: the lock files go in {folder}, the "
                f"folder of gateway.audit_key, which must be writable ({exc})"
            ) from exc
        storage = open_storage(settings.store, dict(settings.options))
        witness = (
            open_storage(settings.witness, dict(settings.witness_options))
            if settings.witness
            else None
        )
        try:
            state = await recover(storage, log)
        except (StorageError, OSError) as exc:
            os.close(lock)
            raise RecordingUnavailable(f"cannot open the recording log {log}: {exc}") from exc
        recorder = cls(gateway, storage, log, state, key, witness, index, lock)
        recorder._signed = await recorder._last_signed()
        if index is not None:
            await recorder._reindex()
        recorder._tasks = [
            asyncio.create_task(recorder._write_forever(), name="geogate-recorder"),
            asyncio.create_task(
                recorder._every(recorder._checkpoint_interval, recorder._sign_quietly)
            ),
            asyncio.create_task(recorder._every(INDEX_INTERVAL, recorder._write_index)),
        ]
        if recorder._sync_every > 0:
            recorder._tasks.append(
                asyncio.create_task(recorder._every(recorder._sync_every, recorder._flush))
            )
        if recorder._retention is not None:
            recorder._tasks.append(asyncio.create_task(recorder._every(3600.0, recorder.expire)))
            await recorder.expire()
        return recorder

    # --- what the data path calls --------------------------------------------------------

    async def write_ahead(self, record: Record) -> int:
        """Store `record` before the caller goes on; returns its position in the log.

        With nothing else being written, a local folder that is flushed on a timer takes the
        record at once: the append does not wait, so handing it to the writer task would only
        add two trips through the event loop. Otherwise it joins the next batch."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        pending = _Pending(ordered(record), done)
        if self._direct and self._idle.is_set() and self._cut is None:
            batch, self._pending = [*self._pending, pending], []  # with the replies held
            await self._batch(batch)
            if self._pending:
                self._wake.set()
        else:
            self._pending.append(pending)
            self._wake.set()
        return await done

    def append(self, record: Record) -> None:
        """Store `record` with the next batch; nobody waits for it.

        With a flush timer (`sync` > 0) it goes with the next call's record or, at the
        latest, just before the next flush: it is on disk as soon as it would have been,
        and a call at concurrency 1 costs one append instead of two."""
        if len(self._pending) >= BACKLOG:
            LOST.inc()
            return
        self._pending.append(_Pending(ordered(record), None))
        if self._sync_every == 0:
            self._wake.set()

    async def drain(self) -> None:
        """Wait until everything handed in so far is stored (or failed)."""
        while not self._idle.is_set() or (self._pending and not self._failing):
            self._wake.set()
            await asyncio.sleep(0.001)

    async def close(self) -> None:
        await self.drain()
        if self._pending:  # the store is down: what could not wait is lost, and counted
            LOST.inc(len(self._pending))
            self._pending = []
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(StorageError):
            await self._flush()
            await self.checkpoint()
        self._indexing.close_open()
        await self._write_index()
        await self.storage.close()
        if self.witness is not None:
            await self.witness.close()
        os.close(self._lock)

    # --- group commit ---------------------------------------------------------------------

    async def _write_forever(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._write_pending()

    async def _write_pending(self) -> None:
        while self._pending and self._idle.is_set():
            batch, self._pending = self._pending, []
            if not await self._batch(batch):
                break  # retried with the next record handed in, not in a busy loop

    async def _batch(self, batch: list[_Pending]) -> bool:
        """Write one batch, with nothing else writing meanwhile; whether it was stored."""
        self._idle.clear()
        try:
            return await self._write(batch)
        except Exception as exc:  # a bug here must not stop recording for good
            _log.exception("recording failed")
            for pending in batch:
                if pending.done is not None and not pending.done.done():
                    pending.done.set_exception(RecordingUnavailable(repr(exc)))
            return False
        finally:
            self._idle.set()

    async def _write(self, batch: list[_Pending]) -> bool:
        records = [pending.record for pending in batch]
        first = self.state.size
        now = datetime.now(UTC)
        at = timestamp(now)
        try:
            data, tree, prev = seal(self.state, records, at)
            segment = self._segment(len(data), at[:10])
            path = f"{segment_folder(self.log)}/{segment_name(segment.first)}"
            if self._cut is not None:
                await self.storage.truncate(*self._cut)
                self._cut = None
            try:
                await self.storage.append(path, data)
                if self._sync_every == 0:
                    await self.storage.sync()
            except StorageError:
                if self.storage.appends:
                    self._cut = (path, segment.size)
                raise
        except (StorageError, OSError) as exc:
            self._failed(batch, exc)
            return False
        if self._failing:
            self._failing = False
            FAILING.set(0)
        if not self.state.segments or self.state.segments[-1] is not segment:
            self.state.segments.append(segment)
        segment.last = tree.size - 1
        segment.size += len(data)
        segment.newest = now
        self.state.tree, self.state.prev = tree, prev
        for offset, pending in enumerate(batch):
            self._indexing.put(self.log, first + offset, pending.record, now)
            if pending.done is not None and not pending.done.done():
                pending.done.set_result(first + offset)
        if self.state.size - self._signed >= self._checkpoint_every:
            await self._sign_quietly()
        return True

    def _segment(self, size: int, today: str) -> Segment:
        """The segment this batch goes to: the open one while it has room and is today's (a
        local folder), or a new one (every batch of an object store is an object)."""
        current = self.state.segments[-1] if self.state.segments else None
        if (
            self.storage.appends
            and current is not None
            and not current.deleted
            and current.opened == today
            and current.size + size <= SEGMENT_BYTES
        ):
            return current
        return Segment(self.state.size, self.state.size - 1, 0, today)

    def _failed(self, batch: list[_Pending], exc: BaseException) -> None:
        """Refuse the calls that waited; keep the rest for the next batch (bounded)."""
        _log.error("recording failed: %s", exc)
        self._failing = True
        FAILING.set(1)
        kept: list[_Pending] = []
        for pending in batch:
            pending.record.pop("i", None)
            pending.record.pop("prev", None)
            if pending.done is not None:
                if not pending.done.done():
                    pending.done.set_exception(RecordingUnavailable(str(exc)))
            elif len(kept) + len(self._pending) < BACKLOG:
                kept.append(pending)
            else:
                LOST.inc()
        self._pending[:0] = [_Pending(ordered(p.record), None) for p in kept]

    async def _flush(self) -> None:
        """The timer's flush, with the records held for it (see `append`) written first;
        while the store fails, they wait for the next call's record instead of a timer."""
        if not self._failing:
            await self._write_pending()
        await self.storage.sync()

    # --- checkpoints --------------------------------------------------------------------

    async def checkpoint(self) -> Checkpoint | None:
        """Sign the log as it stands (after flushing it), if it grew since the last one."""
        if self.state.size == self._signed:
            return None
        checkpoint = Checkpoint(origin(self.log), self.state.size, self.state.tree.root())
        snapshot = saved(self.state)  # taken with the checkpoint: both cover what is flushed
        await self.storage.sync()
        note = self.key.sign(checkpoint)
        await self.storage.write(checkpoint_path(self.log, checkpoint.size), note)
        await self.storage.write(state_path(self.log), snapshot)
        self._signed = max(self._signed, checkpoint.size)
        if self.witness is not None:
            try:
                await self.witness.write(checkpoint_path(self.log, checkpoint.size), note)
            except StorageError as exc:
                _log.error("could not copy checkpoint %d to the witness: %s", checkpoint.size, exc)
        return checkpoint

    async def _sign_quietly(self) -> None:
        try:
            await self.checkpoint()
        except StorageError as exc:
            _log.error("could not write a checkpoint: %s", exc)

    async def _last_signed(self) -> int:
        names = await self.storage.list(f"checkpoints/{self.log}")
        sizes = [int(name) for name in names if name.isdigit()]
        return max((size for size in sizes if size <= self.state.size), default=0)

    # --- retention ----------------------------------------------------------------------

    async def expire(self) -> None:
        """Delete segments whose newest record is older than `retention`, leaving their leaf
        hashes (so the tree, and every checkpoint, still verifies) and a record that says so."""
        if self._retention is None:
            return
        horizon = datetime.now(UTC) - timedelta(seconds=self._retention)
        for segment in list(self.state.segments[:-1]):
            if segment.deleted or segment.newest is None or segment.newest >= horizon:
                continue
            folder = segment_folder(self.log)
            try:
                data = await self.storage.read(f"{folder}/{segment_name(segment.first)}")
                leaves = b"".join(leaf_hash(line) for line in data.split(b"\n") if line)
                await self.storage.write(
                    f"{folder}/{segment_name(segment.first, 'hashes')}", leaves
                )
                await self.write_ahead(
                    {
                        "kind": "retention",
                        "first": segment.first,
                        "last": segment.last,
                        "newest": timestamp(segment.newest),
                        "leaves": leaf_hash(leaves).hex(),
                    }
                )
                await self.storage.delete(f"{folder}/{segment_name(segment.first)}")
            except FileNotFoundError:
                pass  # deleted already: retention stopped after the deletion last time
            except (StorageError, RecordingUnavailable) as exc:
                _log.error("retention could not delete segment %d: %s", segment.first, exc)
                return
            segment.deleted = True

    # --- the session index ----------------------------------------------------------------

    async def _write_index(self) -> None:
        if self.index is None:
            return
        queue = self._indexing
        done, late, queue.done, queue.late = queue.done, queue.late, [], []
        try:
            await self.index.add(self.log, done, queue.mark(self.state.size))
            await self.index.finish(late)
        except Exception as exc:  # the log has it all; the index catches up
            _log.warning("could not index %d recorded calls: %s", len(done) + len(late), exc)
            if len(queue.done) + len(done) < BACKLOG:
                queue.done[:0], queue.late[:0] = done, late
            else:
                lowest = min((row["first_index"] for row in done), default=self.state.size)
                queue.floor = min(lowest, queue.floor if queue.floor is not None else lowest)

    async def _reindex(self) -> None:
        """Index what the log holds beyond the index (the last batches before a crash)."""
        assert self.index is not None
        start = await self.index.indexed_to(self.log)
        if start >= self.state.size:
            return
        async for stored in LogReader(self.storage, self.log).records(start):
            if stored.record is not None:
                self._indexing.put(self.log, stored.position, stored.record)
        self._indexing.close_open()  # their process is gone: no reply will come
        await self._write_index()

    async def _every(self, seconds: float, job: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except StorageError as exc:
                _log.error("recording: %s", exc)


def _claim_log(folder: Path) -> tuple[int, str]:
    """A log of this process's own: the first `host.N` whose lock file no process holds."""
    folder.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()) or "gateway"
    slot = 0
    while True:
        descriptor = os.open(folder / f".recorder.{slot}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            slot += 1
            continue
        return descriptor, f"{host}.{slot}"
