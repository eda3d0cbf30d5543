"""`geogate audit verify`: recompute every log and say where it was tampered with.

    report = await verify(open_storage(url), AuditKey.load(path).verifier())
    report.ok                  # True when nothing was changed, removed or reordered
    report.logs[0].problems    # [Problem(position=41, kind="changed", message=...)]

For each log, every record must sit at the position it claims (`i`) and name the leaf hash of
the one before it (`prev`): the first record that does not is reported with its position, as
changed, removed or reordered. Every checkpoint must carry a valid signature by the audit key
and match the root of the records it covers; the witness's copies must match the store's; and
records the session index knows of must still be in the log (the end of a log cut off). A
segment deleted by retention must be announced by a retention record that names its hashes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from geogate.recording.log import (
    LogReader,
    Record,
    Stored,
    checkpoint_path,
    leaf_of,
    origin,
)
from geogate.recording.merkle import Tree, leaf_hash
from geogate.recording.note import NoteError, Verifier
from geogate.recording.storage import Storage, StorageError
from geogate.store import RecordIndex

YIELD_EVERY = 512
"""Records hashed between two turns of the event loop (a few milliseconds)."""


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    """changed | removed | reordered | unreadable | checkpoint | witness | retention"""
    message: str
    position: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "position": self.position, "message": self.message}


@dataclass(slots=True)
class LogReport:
    log: str
    records: int = 0
    deleted: int = 0
    """Records whose content retention deleted (their hashes remain)."""
    checkpoints: int = 0
    """Checkpoints that verified."""
    signed: int = 0
    """Records covered by the latest valid checkpoint."""
    problems: list[Problem] = field(default_factory=list)
    roots: dict[int, bytes] = field(default_factory=dict)
    """Size -> root of the store's checkpoints that verified (for reports; not in the JSON)."""

    @property
    def unsigned(self) -> int:
        """Records written after the latest checkpoint (signed at the next one)."""
        return max(0, self.records - self.signed)

    def to_json(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "records": self.records,
            "deleted": self.deleted,
            "checkpoints": self.checkpoints,
            "signed": self.signed,
            "unsigned": self.unsigned,
            "ok": not self.problems,
            "problems": [problem.to_json() for problem in self.problems],
        }


@dataclass(slots=True)
class Report:
    key: str
    """The verifier key (`name+id+key`) everything was checked against."""
    logs: list[LogReport] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    """Problems of the store as a whole (a log whose segments are all gone)."""

    @property
    def ok(self) -> bool:
        return not self.problems and all(not log.problems for log in self.logs)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "key": self.key,
            "logs": [log.to_json() for log in self.logs],
            "problems": [problem.to_json() for problem in self.problems],
        }


async def verify(
    storage: Storage,
    verifier: Verifier,
    *,
    witness: Storage | None = None,
    index: RecordIndex | None = None,
    on_record: Callable[[str, int, Record], None] | None = None,
) -> Report:
    """Recompute every log; `on_record(log, position, record)` sees each record as it is read
    (the audit report collects what only the log holds, without reading it twice)."""
    report = Report(verifier.vkey())
    logs = set(await storage.list("logs"))
    signed_logs = set(await storage.list("checkpoints"))
    if witness is not None:
        signed_logs |= set(await witness.list("checkpoints"))
    for log in sorted(signed_logs - logs):
        report.problems.append(
            Problem("removed", f"log {log}: checkpoints exist but every segment is gone")
        )
    for log in sorted(logs):
        report.logs.append(await _verify_log(storage, log, verifier, witness, index, on_record))
    return report


async def _verify_log(
    storage: Storage,
    log: str,
    verifier: Verifier,
    witness: Storage | None,
    index: RecordIndex | None,
    on_record: Callable[[str, int, Record], None] | None,
) -> LogReport:
    result = LogReport(log)
    roots = await _checkpoints(storage, log, verifier, result)
    result.roots = dict(roots)  # before the witness adds the ones the store lacks
    if witness is not None:
        await _compare_witness(storage, witness, log, verifier, roots, result)
    tree = Tree()
    prev = b""
    first_problem: Problem | None = None
    retained: dict[int, list[bytes]] = {}  # first index -> leaf hashes of a deleted segment
    announced: dict[int, dict[str, Any]] = {}
    good_size = 0
    try:
        async for stored in LogReader(storage, log).records():
            if stored.position % YIELD_EVERY == 0:
                await asyncio.sleep(0)  # a gateway verifying (admin API) keeps serving calls
            leaf = leaf_of(stored)
            if first_problem is None:
                first_problem = _check_link(stored, prev)
            elif first_problem.kind == "removed" and _claims(stored, first_problem.position):
                first_problem = Problem(  # not missing after all: it comes later
                    "reordered",
                    f"record {first_problem.position} appears at position {stored.position}: "
                    "records were reordered",
                    first_problem.position,
                )
            if stored.deleted:
                result.deleted += 1
                retained.setdefault(stored.segment, []).append(leaf)
            elif stored.record is not None and stored.record.get("kind") == "retention":
                announced[int(stored.record.get("first", -1))] = stored.record
            if on_record is not None and stored.record is not None:
                on_record(log, stored.position, stored.record)
            prev = leaf
            tree.append(leaf)
            root = roots.get(tree.size)
            if root is not None and root != tree.root():
                # with the chain intact up to here, the last record it covers is one that differs
                position = first_problem.position if first_problem else tree.size - 1
                result.problems.append(
                    Problem(
                        "checkpoint",
                        f"the checkpoint of the first {tree.size} records does not match "
                        f"them: a record after the last matching checkpoint (at "
                        f"{good_size}) and before {tree.size} was changed, or the records "
                        "were rewritten",
                        position,
                    )
                )
            elif root is not None:
                good_size = tree.size
    except StorageError as exc:
        result.problems.append(Problem("unreadable", str(exc)))
    result.records = tree.size
    if first_problem is not None:
        result.problems.insert(0, first_problem)
    beyond = [size for size in roots if size > tree.size]
    if beyond:
        result.problems.append(
            Problem(
                "removed",
                f"a signed checkpoint covers {max(beyond)} records but the log holds "
                f"{tree.size}: records {tree.size} to {max(beyond) - 1} were removed",
                tree.size,
            )
        )
    if index is not None:
        last = await index.last_index(log)
        if last >= tree.size:
            result.problems.append(
                Problem(
                    "removed",
                    f"the session index knows record {last} but the log ends at "
                    f"{tree.size - 1}: records from {tree.size} on were removed",
                    tree.size,
                )
            )
    for first, leaves in sorted(retained.items()):
        record = announced.get(first)
        last = first + len(leaves) - 1
        if (
            record is None
            or record.get("last") != last
            or record.get("leaves") != leaf_hash(b"".join(leaves)).hex()
        ):
            result.problems.append(
                Problem(
                    "retention",
                    f"records {first} to {last} were deleted without a retention record "
                    "that names them",
                    first,
                )
            )
    return result


def _claims(stored: Stored, position: int | None) -> bool:
    return stored.record is not None and stored.record.get("i") == position


def _check_link(stored: Stored, prev: bytes) -> Problem | None:
    """The first thing wrong with a record's place in the chain, if anything."""
    position = stored.position
    if stored.deleted:
        return None
    record = stored.record
    if record is None:
        return Problem("changed", f"record {position} is not a valid record any more", position)
    claimed = record.get("i")
    if not isinstance(claimed, int) or claimed < 0:
        return Problem("changed", f"record {position} has no valid position field", position)
    if claimed > position:
        return Problem(
            "removed",
            f"records {position} to {claimed - 1} are missing (the next one says it is "
            f"record {claimed})",
            position,
        )
    if claimed < position:
        return Problem(
            "reordered",
            f"record {claimed} appears at position {position}: records were reordered or copied",
            position,
        )
    if record.get("prev") != prev.hex():
        return Problem(
            "changed",
            f"record {position - 1} was changed (record {position} names a different hash for it)",
            position - 1,
        )
    return None


async def _checkpoints(
    storage: Storage, log: str, verifier: Verifier, result: LogReport
) -> dict[int, bytes]:
    """Root per size of the checkpoints that verify; the others are problems."""
    roots: dict[int, bytes] = {}
    for name in await storage.list(f"checkpoints/{log}"):
        if not name.isdigit():
            continue
        note = await storage.read(checkpoint_path(log, int(name)))
        try:
            checkpoint = verifier.verify(note)
        except NoteError as exc:
            result.problems.append(
                Problem("checkpoint", f"checkpoint {int(name)}: {exc}", int(name))
            )
            continue
        if checkpoint.origin != origin(log) or checkpoint.size != int(name):
            result.problems.append(
                Problem(
                    "checkpoint",
                    f"checkpoint {int(name)} is about {checkpoint.origin} at size "
                    f"{checkpoint.size}: it was moved from elsewhere",
                    int(name),
                )
            )
            continue
        roots[checkpoint.size] = checkpoint.root
        result.checkpoints += 1
        result.signed = max(result.signed, checkpoint.size)
    return roots


async def _compare_witness(
    storage: Storage,
    witness: Storage,
    log: str,
    verifier: Verifier,
    roots: dict[int, bytes],
    result: LogReport,
) -> None:
    """Every checkpoint the witness holds must be in the store, with the same root."""
    for name in await witness.list(f"checkpoints/{log}"):
        if not name.isdigit():
            continue
        try:
            copy = verifier.verify(await witness.read(checkpoint_path(log, int(name))))
        except NoteError as exc:
            result.problems.append(Problem("witness", f"witness checkpoint {name}: {exc}"))
            continue
        held = roots.get(copy.size)
        if held is None:
            roots[copy.size] = copy.root  # the log must still match what the witness saw
            result.problems.append(
                Problem(
                    "witness",
                    f"the witness holds a checkpoint of {copy.size} records that the store "
                    "lacks (removed, or replaced by a forged one)",
                    copy.size,
                )
            )
        elif held != copy.root:
            result.problems.append(
                Problem(
                    "witness",
                    f"the witness's checkpoint of {copy.size} records differs from the "
                    "store's: the log was rewritten",
                    copy.size,
                )
            )
