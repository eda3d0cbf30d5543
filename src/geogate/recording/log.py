"""The append-only audit log: records as JSON lines, leaves of an RFC 6962 Merkle tree.

Layout inside the recording store, one log per writing gateway process (`host.N`):

    logs/host.0/0000000000000000.jsonl     a segment: records 0, 1, ... one per line
    logs/host.0/0000000000052113.hashes    what retention left of a deleted segment: leaf hashes
    checkpoints/host.0/0000000000052113    a signed checkpoint of the first 52113 records

Each record carries its position `i` and the leaf hash of the record before it (`prev`), so a
changed, removed or reordered record is found exactly where it is; the signed checkpoints make
a rewrite of the whole log (or of its end) show too. A record's leaf is its line, as stored.
"""

from __future__ import annotations

import asyncio
import json
import re
from bisect import bisect_right
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from geogate.recording.merkle import Tree, leaf_hash
from geogate.recording.storage import Storage

_LOG_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]*")
"""What the recorder names logs (`host.N`)."""
SEGMENT_BYTES = 64 * 1024 * 1024
"""A local segment is closed past this size (or at the end of its UTC day)."""
VERSION = 1
Record = dict[str, Any]


def segment_folder(log: str) -> str:
    return f"logs/{log}"


def segment_name(first: int, suffix: str = "jsonl") -> str:
    return f"{first:016d}.{suffix}"


def checkpoint_path(log: str, size: int) -> str:
    return f"checkpoints/{log}/{size:016d}"


def origin(log: str) -> str:
    """The checkpoint origin line: which log a checkpoint is about."""
    return f"geogate/{log}"


def timestamp(moment: datetime | None = None) -> str:
    """`2026-12-02T21:10:00.123456Z` (UTC, microseconds)."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None or text[-1:] != "Z":
        raise ValueError(f"{text!r} is not a UTC timestamp")
    return moment


def encode(record: Mapping[str, Any]) -> bytes:
    """One line of compact UTF-8 JSON (orjson: the recorder encodes two records a call)."""
    return orjson.dumps(record)


@dataclass(slots=True)
class Segment:
    """A segment as the writer knows it: for rotation and retention."""

    first: int
    last: int
    """The index of its last record (first - 1 while empty)."""
    size: int
    """Bytes in it (a local segment); where a failed append is cut back to."""
    opened: str
    """The UTC day it was begun."""
    newest: datetime | None = None
    """When its last record was written."""
    deleted: bool = False


@dataclass(slots=True)
class LogState:
    """Where a log stands: its tree, the last leaf and its segments."""

    tree: Tree = field(default_factory=Tree)
    prev: bytes = b""
    segments: list[Segment] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.tree.size


@dataclass(frozen=True, slots=True)
class Stored:
    """A record read back: its position, its line as stored, and the parsed record (None when
    the line is not JSON: verification reports it, replay skips it)."""

    position: int
    """Its place in the log, counted by reading, whatever `i` it claims."""
    line: bytes
    record: Record | None
    segment: int
    deleted: bool = False
    """Only its leaf hash is left: retention deleted the segment."""


class LogReader:
    """Reads one log's records in order, from live segments and retention's hash files."""

    def __init__(self, storage: Storage, log: str) -> None:
        self.storage = storage
        self.log = log

    async def segments(self) -> list[tuple[int, str]]:
        """(first index, file name) of every segment and hash file, in log order."""
        found: dict[int, str] = {}
        for name in await self.storage.list(segment_folder(self.log)):
            stem, _, suffix = name.partition(".")
            if stem.isdigit() and suffix in ("jsonl", "hashes"):
                if found.get(int(stem), "").endswith(".jsonl"):
                    continue  # retention stopped half-way: the segment itself is still there
                found[int(stem)] = name
        return sorted(found.items())

    async def at(self, positions: Iterable[int]) -> dict[int, Record]:
        """The records at `positions`, reading each segment that holds one of them once.

        Positions in segments that retention deleted (only leaf hashes are left), or past the
        end, are absent; so are lines that are not records any more."""
        if not _LOG_NAME.fullmatch(self.log):  # a name from outside never leaves the store
            return {}
        segments = await self.segments()
        firsts = [first for first, _ in segments]
        wanted: dict[int, list[int]] = {}
        for position in sorted(set(positions)):
            index = bisect_right(firsts, position) - 1
            if index >= 0 and segments[index][1].endswith(".jsonl"):
                wanted.setdefault(index, []).append(position)
        found: dict[int, Record] = {}
        for index, chosen in wanted.items():
            first, name = segments[index]
            lines = await self._lines(name)
            for position in chosen:
                record = parsed(lines[position - first]) if position - first < len(lines) else None
                if record is not None:
                    found[position] = record
        return found

    async def between(self, low: int, high: int) -> AsyncIterator[tuple[int, Record]]:
        """Every record from position `low` to `high`, from the live segments that hold them."""
        segments = await self.segments()
        firsts = [first for first, _ in segments]
        start = max(0, bisect_right(firsts, low) - 1)
        for first, name in segments[start : bisect_right(firsts, high)]:
            if not name.endswith(".jsonl"):
                continue  # deleted by retention: only hashes are left
            for offset, line in enumerate(await self._lines(name)):
                if offset % 512 == 511:
                    await asyncio.sleep(0)  # a long read leaves the event loop to calls too
                record = parsed(line)
                if record is not None and low <= first + offset <= high:
                    yield first + offset, record

    async def _lines(self, name: str) -> list[bytes]:
        try:
            data = await self.storage.read(f"{segment_folder(self.log)}/{name}")
        except FileNotFoundError:  # deleted by retention since it was listed
            return []
        return [line for line in data.split(b"\n") if line]

    async def records(self, start: int = 0) -> AsyncIterator[Stored]:
        """The records from position `start` on (segments wholly before it are not read)."""
        segments = await self.segments()
        position = 0
        for number, (first, name) in enumerate(segments):
            following = segments[number + 1][0] if number + 1 < len(segments) else None
            if following is not None and following <= start:
                position = following  # trusted only when skipping: verify reads from 0
                continue
            data = await self.storage.read(f"{segment_folder(self.log)}/{name}")
            if name.endswith(".hashes"):
                for offset in range(0, len(data) - len(data) % 32, 32):
                    if position >= start:
                        yield Stored(position, data[offset : offset + 32], None, first, True)
                    position += 1
                continue
            for line in data.split(b"\n"):
                if not line:
                    continue
                if position >= start:
                    yield Stored(position, line, parsed(line), first)
                position += 1


def parsed(line: bytes) -> Record | None:
    """A record line as a record, or None when it is not one (verification says why)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def leaf_of(stored: Stored) -> bytes:
    return stored.line if stored.deleted else leaf_hash(stored.line)


def state_path(log: str) -> str:
    return f"{segment_folder(log)}/state.json"


def saved(state: LogState) -> bytes:
    """Where a log stood, so a restart reads only what was written since, not the whole log.

    It is a shortcut, never evidence: verification recomputes everything from the records."""
    segments = [
        [s.first, s.last, s.size, s.opened, s.newest and timestamp(s.newest), s.deleted]
        for s in state.segments
    ]
    return encode(
        {
            "size": state.size,
            "frontier": [node.hex() for node in state.tree.frontier],
            "prev": state.prev.hex(),
            "segments": segments,
        }
    )


def _restored(data: bytes) -> LogState | None:
    try:
        document = json.loads(data)
        segments = [
            Segment(first, last, size, opened, newest and parse_time(newest), deleted)
            for first, last, size, opened, newest, deleted in document["segments"]
        ]
        tree = Tree(document["size"], [bytes.fromhex(node) for node in document["frontier"]])
        return LogState(tree, bytes.fromhex(document["prev"]), segments)
    except (ValueError, KeyError, TypeError):
        return None


async def recover(storage: Storage, log: str) -> LogState:
    """Rebuild a log's state: from its saved state and the records written after it, or from
    all its records. A torn last line (a write a crash interrupted: never acknowledged, so no
    call was forwarded on its strength) is cut off."""
    segments = await LogReader(storage, log).segments()
    try:
        state = _restored(await storage.read(state_path(log)))
    except FileNotFoundError:
        state = None
    if state is not None and _agrees(state, segments):
        resumed = await _read_on(storage, log, segments, state)
        if resumed is not None:
            return resumed
    state = await _read_on(storage, log, segments, LogState())
    assert state is not None  # from nothing, every record is read
    return state


async def _read_on(
    storage: Storage, log: str, segments: list[tuple[int, str]], state: LogState
) -> LogState | None:
    """`state` moved on by the records after it; None if they contradict it (fewer lines
    than it counted: its last records were never flushed before a power cut)."""
    known = {segment.first for segment in state.segments[:-1]}
    counted = state.size
    if state.segments:
        state.segments.pop()  # the last saved segment may have grown since: read again
    for first, name in segments:
        if first in known:
            continue
        path = f"{segment_folder(log)}/{name}"
        data = await storage.read(path)
        if name.endswith(".hashes"):
            count = len(data) // 32
            for offset in range(0, count * 32, 32):
                if first + offset // 32 >= state.size:
                    state.tree.append(data[offset : offset + 32])
                    state.prev = data[offset : offset + 32]
            state.segments.append(Segment(first, first + count - 1, 0, "", None, deleted=True))
            continue
        good = data.rfind(b"\n") + 1
        if good < len(data) and (first, name) == segments[-1]:
            await storage.truncate(path, good)
            data = data[:good]
        segment = Segment(first, first - 1, len(data), "")
        for line in data.split(b"\n"):
            if not line:
                continue
            segment.last += 1
            if segment.last >= state.size:
                leaf = leaf_hash(line)
                state.tree.append(leaf)
                state.prev = leaf
            record = parsed(line)
            if record is not None and isinstance(record.get("at"), str):
                moment = parse_time(record["at"])
                segment.newest = moment
                segment.opened = segment.opened or moment.strftime("%Y-%m-%d")
        state.segments.append(segment)
    end = state.segments[-1].last + 1 if state.segments else 0
    return state if end == state.size >= counted else None


def _agrees(state: LogState, segments: list[tuple[int, str]]) -> bool:
    """Whether the saved state describes the segments the store holds (else: read them all)."""
    firsts = [first for first, _ in segments]
    saved_firsts = [segment.first for segment in state.segments]
    return bool(saved_firsts) and firsts[: len(saved_firsts)] == saved_firsts


def seal(state: LogState, records: list[Record], at: str) -> tuple[bytes, Tree, bytes]:
    """Number, time and chain `records` onto the log; returns their lines, the tree and last
    leaf they lead to. The state itself moves on only once the lines are stored."""
    tree = state.tree.copy()
    prev = state.prev
    lines: list[bytes] = []
    for record in records:
        record["i"] = tree.size
        record["prev"] = prev.hex()
        record["at"] = at
        line = encode(record)
        lines.append(line)
        prev = leaf_hash(line)
        tree.append(prev)
    return b"\n".join(lines) + b"\n", tree, prev


def ordered(record: Mapping[str, Any]) -> Record:
    """The record with its header fields first, so lines read well in a text editor (`seal`
    fills them in: position, previous leaf, and the time of the batch it is written in)."""
    head = {"v": VERSION, "i": 0, "prev": "", "at": ""}
    return head | {key: value for key, value in record.items() if key not in head}
