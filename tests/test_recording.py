"""The recorder and `verify` with a real log on disk: group commit, tampering of every kind
found with its position, the witness, retention, restarts, and `kill -9` of a real gateway.

Most tests run a `Recorder` on a folder of their own, write calls and replies as the gateway
does, close it (which signs the last checkpoint), then change the files as an attacker with
write access to the store would and check what `verify` says. The last ones run `geogate up`
under load, SIGKILL it, restart it and check that every call the upstream saw was recorded.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import openai
import pytest
from starlette.types import Message, Receive, Scope, Send

import geogate.recording.log as log_module
import geogate.recording.recorder as recorder_module
from geogate.config import Gateway, parse_config
from geogate.demo import DemoSettings, create_demo_app
from geogate.recording import AuditKey, Checkpoint, Recorder, Storage, calls, open_storage
from geogate.recording.log import Record, encode, origin
from geogate.recording.merkle import Tree, leaf_hash
from geogate.recording.storage import LocalStorage
from geogate.recording.verify import Report, verify
from geogate.store import open_store
from tests.gateways import ADDRESS_IN_USE, until_ready
from tests.servers import free_port, run_asgi

CALLS = 15
"""Calls of the standard log: 30 records (a call and a reply each)."""


@dataclass
class Clock:
    """The recorder's "now": noon UTC of a fixed day plus the real time elapsed, moved by
    `shift`. No test crosses midnight (segments also rotate at the end of a UTC day), and
    retention tests make records old by writing them in the past."""

    shift: timedelta = timedelta()
    base: datetime = datetime(2026, 12, 2, 12, tzinfo=UTC)
    started: float = field(default_factory=time.monotonic)

    def now(self) -> datetime:
        return self.base + self.shift + timedelta(seconds=time.monotonic() - self.started)


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()

    class Now(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> Now:
            moment = clock.now()
            return cls.fromtimestamp(moment.timestamp(), tz or UTC)

    monkeypatch.setattr(recorder_module, "datetime", Now)
    monkeypatch.setattr(log_module, "datetime", Now)
    return clock


def settings(folder: Path, **recordings: Any) -> Gateway:
    """`gateway` of a policy file whose recordings go to `folder/rec`, checkpoints every 10."""
    merged = {"store": f"file://{folder}/rec", "checkpoints": {"records": 10}} | recordings
    text = (
        "version: 1\ngateway:\n"
        f"  audit_key: {json.dumps(str(folder / 'audit.key'))}\n"
        f"  recordings: {json.dumps(merged)}\n"
    )
    return parse_config(text, base_dir=folder).gateway


def call(n: int) -> Record:
    prompt = json.dumps({"model": "demo", "messages": [{"role": "user", "content": f"q{n}"}]})
    return calls.call(
        request_id=f"req-{n}",
        session="ticket-7",
        subject="alice@example.com",
        user="alice@example.com",
        groups=["support"],
        via="api_key",
        credential="key-1",
        connection="llm",
        method="POST",
        target="https://llm.example/v1/chat/completions",
        policy="support",
        policy_version="v1",
        reasons=["groups: support"],
        region="onprem:test-eu",
        masked=None,
        request=calls.body(prompt.encode(), "application/json"),
    )


def reply(n: int) -> Record:
    return calls.reply(
        request_id=f"req-{n}",
        status=200,
        decision="allow",
        code=None,
        region="onprem:test-eu",
        evidence="onprem:test-eu; by=test",
        masked=None,
        bytes_in=40,
        bytes_out=20,
        latency_ms=1.5,
        content=calls.body(b'{"answer": "42"}', "application/json"),
    )


async def record(recorder: Recorder, numbers: range) -> list[int]:
    """Calls as the data path makes them: the call waits for its record, the reply does not."""
    positions = []
    for n in numbers:
        positions.append(await recorder.write_ahead(call(n)))
        recorder.append(reply(n))
    await recorder.drain()
    return positions


async def checked(folder: Path, *, witness: bool = False, key: str = "audit.key") -> Report:
    """`geogate audit verify` of `folder/rec`, with the witness at `folder/witness`."""
    verifier = AuditKey.load(folder / key, create=False).verifier()
    return await verify(
        open_storage(f"file://{folder}/rec"),
        verifier,
        witness=open_storage(f"file://{folder}/witness") if witness else None,
    )


def found(report: Report) -> list[tuple[str, int | None]]:
    """(kind, position) of every problem, in the order reported."""
    return [(p.kind, p.position) for p in report.problems] + [
        (p.kind, p.position) for log in report.logs for p in log.problems
    ]


@dataclass
class Log:
    """A closed log on disk: its folder (with `rec/` and the audit key) and its name."""

    folder: Path
    name: str

    def segments(self) -> list[Path]:
        return sorted((self.folder / "rec/logs" / self.name).glob("*.jsonl"))

    @property
    def segment(self) -> Path:
        (only,) = self.segments()
        return only

    def lines(self) -> list[bytes]:
        return self.segment.read_bytes().splitlines()

    def write_lines(self, lines: list[bytes]) -> None:
        self.segment.write_bytes(b"".join(line + b"\n" for line in lines))

    def checkpoints(self, store: str = "rec") -> dict[int, bytes]:
        folder = self.folder / store / "checkpoints" / self.name
        return {int(path.name): path.read_bytes() for path in sorted(folder.iterdir())}

    def checkpoint_file(self, size: int) -> Path:
        return self.folder / "rec/checkpoints" / self.name / f"{size:016d}"


async def signed_log(folder: Path, **recordings: Any) -> Log:
    recorder = await Recorder.start(settings(folder, **recordings), None)
    await record(recorder, range(CALLS))
    await recorder.close()
    return Log(folder, recorder.log)


@pytest.fixture
async def log(tmp_path: Path) -> Log:
    made = await signed_log(tmp_path)
    report = await checked(tmp_path)
    assert report.ok, report.to_json()
    assert report.logs[0].records == 2 * CALLS and report.logs[0].signed == 2 * CALLS
    assert len(made.checkpoints()) >= 3  # every 10 records, and the last one at close
    return made


def roots(lines: list[bytes]) -> dict[int, bytes]:
    """The Merkle root after each record, by size."""
    tree = Tree()
    found: dict[int, bytes] = {}
    for line in lines:
        tree.append(leaf_hash(line))
        found[tree.size] = tree.root()
    return found


def rewrite(log: Log, key: AuditKey, change: Callable[[list[Record]], None]) -> None:
    """What a forger who can write the store does: change records, chain them again (each
    `prev` recomputed) and sign every checkpoint anew with `key`."""
    records = [json.loads(line) for line in log.lines()]
    change(records)
    lines: list[bytes] = []
    prev = b""
    for record in records:
        record["prev"] = prev.hex()
        lines.append(encode(record))
        prev = leaf_hash(lines[-1])
    log.write_lines(lines)
    after = roots(lines)
    for size in log.checkpoints():
        note = key.sign(Checkpoint(origin(log.name), size, after[size]))
        log.checkpoint_file(size).write_bytes(note)


# --- group commit, restart -----------------------------------------------------------------


@pytest.mark.parametrize("sync", ["0s", "10ms"])
async def test_group_commit_flushes_concurrent_calls_together(tmp_path: Path, sync: str) -> None:
    """A disk flush per batch, never per call: with `sync: 0s` the calls that arrive while
    one batch is flushed go together in the next (one append, one flush); flushed on a timer,
    each call appends its own record at once (the append does not wait) and the timer
    flushes them all."""
    # no checkpoint in between: its flush must not stand in for the timer's
    recorder = await Recorder.start(
        settings(tmp_path, sync=sync, checkpoints={"records": 1000}), None
    )
    appends: list[int] = []
    flushes: list[int] = []
    real_append, real_sync = recorder.storage.append, recorder.storage.sync

    async def counted(path: str, data: bytes) -> None:
        appends.append(data.count(b"\n"))
        await real_append(path, data)

    async def flushed() -> None:
        flushes.append(sum(appends))
        await real_sync()

    recorder.storage.append = counted  # type: ignore[method-assign]
    recorder.storage.sync = flushed  # type: ignore[method-assign]
    positions = await asyncio.gather(*(recorder.write_ahead(call(n)) for n in range(200)))
    assert sorted(positions) == list(range(200))  # each its own place, no gap
    assert sum(appends) == 200
    if sync == "0s":
        assert len(appends) <= 10 and len(flushes) <= 10  # batches, not a write per record
        assert flushes[-1] == 200  # every record flushed before its call went on
    else:
        deadline = time.monotonic() + 10
        while not flushes or flushes[-1] != 200:  # the timer flushes them all
            assert time.monotonic() < deadline, f"the timer did not flush: {flushes}"
            await asyncio.sleep(0.005)
        assert len(set(flushes)) <= 10
    await recorder.close()
    log = Log(tmp_path, recorder.log)
    assert [json.loads(line)["i"] for line in log.lines()] == list(range(200))
    by_request = {json.loads(line)["request_id"]: json.loads(line)["i"] for line in log.lines()}
    assert [by_request[f"req-{n}"] for n in range(200)] == positions  # each call got its own
    report = await checked(tmp_path)
    assert report.ok, report.to_json()
    assert report.logs[0].signed == 200


@pytest.mark.parametrize("sync", ["0s", "10ms", "60s"])
async def test_a_reply_goes_with_the_next_call_or_the_next_flush(tmp_path: Path, sync: str) -> None:
    """Nobody waits for a reply record: flushed on a timer, it rides with the next call's
    record (one append for both) or is written by the timer before its flush; with
    `sync: 0s` it is written at once."""
    recorder = await Recorder.start(settings(tmp_path, sync=sync), None)
    appends: list[list[str]] = []
    real_append = recorder.storage.append

    async def counted(path: str, data: bytes) -> None:
        appends.append([json.loads(line)["kind"] for line in data.splitlines()])
        await real_append(path, data)

    async def replied(n: int) -> None:
        """The reply, then the trips through the event loop of sending it to the caller."""
        recorder.append(reply(n))
        for _ in range(5):
            await asyncio.sleep(0)

    recorder.storage.append = counted  # type: ignore[method-assign]
    await recorder.write_ahead(call(1))
    await replied(1)
    await recorder.write_ahead(call(2))
    await replied(2)
    if sync == "0s":
        assert appends == [["call"], ["reply"], ["call"], ["reply"]]
    elif sync == "60s":  # no flush comes: only the next call or closing writes a reply
        assert appends == [["call"], ["reply", "call"]]
        await asyncio.sleep(0.05)
        assert appends == [["call"], ["reply", "call"]]
    else:
        deadline = time.monotonic() + 5
        while appends[-1] != ["reply"]:  # the last reply, with no call after it
            assert time.monotonic() < deadline, f"the flush did not write the reply: {appends}"
            await asyncio.sleep(0.001)
    await recorder.close()
    log = Log(tmp_path, recorder.log)
    kinds = [(json.loads(line)["kind"], json.loads(line)["request_id"]) for line in log.lines()]
    assert kinds == [("call", "req-1"), ("reply", "req-1"), ("call", "req-2"), ("reply", "req-2")]
    report = await checked(tmp_path)
    assert report.ok, report.to_json()


async def test_a_restarted_recorder_continues_the_positions_and_the_chain(tmp_path: Path) -> None:
    first = await Recorder.start(settings(tmp_path), None)
    assert await record(first, range(5)) == [0, 2, 4, 6, 8]
    await first.close()
    again = await Recorder.start(settings(tmp_path), None)
    assert again.log == first.log and again.state.size == 10
    assert await record(again, range(5, 10)) == [10, 12, 14, 16, 18]
    await again.close()
    log = Log(tmp_path, first.log)
    assert [json.loads(line)["i"] for line in log.lines()] == list(range(20))
    report = await checked(tmp_path)
    assert report.ok, report.to_json()
    assert report.logs[0].records == 20 and report.logs[0].signed == 20


async def test_a_torn_last_line_is_cut_off_at_start(log: Log, tmp_path: Path) -> None:
    intact = log.segment.read_bytes()
    with log.segment.open("ab") as segment:  # a crash half-way through a write
        segment.write(b'{"v":1,"i":30,"prev":"9f86d0818')
    torn = await checked(tmp_path)
    assert found(torn) == [("changed", 30)]  # verify shows it: no longer a valid record
    recorder = await Recorder.start(settings(tmp_path), None)
    assert log.segment.read_bytes() == intact  # cut back to the last whole line
    assert await record(recorder, range(CALLS, CALLS + 1)) == [30]
    await recorder.close()
    report = await checked(tmp_path)
    assert report.ok, report.to_json()
    assert report.logs[0].records == 32


async def test_a_restart_reads_only_what_came_after_the_saved_state(
    tmp_path: Path, clock: Clock
) -> None:
    clock.shift = -timedelta(days=1)
    first = await Recorder.start(settings(tmp_path), None)
    await record(first, range(5))  # records 0-9 in yesterday's segment
    clock.shift = timedelta()
    await record(first, range(5, 10))  # records 10-19 in today's
    await first.close()  # signs and saves where the log stands
    read: list[str] = []
    original = LocalStorage.read

    async def counting(self: LocalStorage, path: str) -> bytes:
        read.append(path.rpartition("/")[2])
        return await original(self, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LocalStorage, "read", counting)
        again = await Recorder.start(settings(tmp_path), None)
    assert "0000000000000000.jsonl" not in read  # yesterday's segment was not read again
    assert again.state.size == 20 and again.state.tree.root() == first.state.tree.root()
    assert await record(again, range(10, 12)) == [20, 22]
    await again.close()
    report = await checked(tmp_path)
    assert report.ok, report.to_json()


@pytest.mark.parametrize("damage", ["garbled", "ahead of the log"])
async def test_a_saved_state_that_does_not_hold_is_not_trusted(tmp_path: Path, damage: str) -> None:
    first = await Recorder.start(settings(tmp_path), None)
    await record(first, range(5))
    await first.close()
    log = Log(tmp_path, first.log)
    state = tmp_path / "rec/logs" / first.log / "state.json"
    if damage == "garbled":
        state.write_text('{"size": 10, "frontier": ["zz"]')
    else:  # a power cut lost the last lines the saved state counts
        log.write_lines(log.lines()[:6])
    again = await Recorder.start(settings(tmp_path), None)
    expected = 10 if damage == "garbled" else 6
    assert again.state.size == expected  # counted from the records themselves
    assert await record(again, range(5, 6)) == [expected]
    await again.close()
    lines = log.lines()
    assert [json.loads(line)["i"] for line in lines] == list(range(expected + 2))


# --- tampering ------------------------------------------------------------------------------


async def test_a_changed_byte_in_the_middle_is_found_at_its_position(
    log: Log, tmp_path: Path
) -> None:
    lines = log.lines()
    assert b'"content\\": \\"q6\\"' in lines[12]  # call 6, with the prompt as JSON text
    lines[12] = lines[12].replace(b"q6", b"q7")
    json.loads(lines[12])  # still a valid record: only the hash chain gives it away
    log.write_lines(lines)
    report = await checked(tmp_path)
    assert found(report)[0] == ("changed", 12)
    assert all(position in (12, None) or position > 12 for _, position in found(report))


async def test_a_deleted_record_is_found_at_its_position(log: Log, tmp_path: Path) -> None:
    lines = log.lines()
    del lines[17]
    log.write_lines(lines)
    report = await checked(tmp_path)
    assert found(report)[0] == ("removed", 17)
    assert "records 17 to 17 are missing" in report.logs[0].problems[0].message


async def test_swapped_records_are_found_at_their_position(log: Log, tmp_path: Path) -> None:
    lines = log.lines()
    lines[12], lines[13] = lines[13], lines[12]
    log.write_lines(lines)
    report = await checked(tmp_path)
    kind, position = found(report)[0]
    # record 13 stands at 12, and record 12 turns up right after it
    assert (kind, position) == ("reordered", 12)
    assert not report.ok


async def test_a_cut_end_re_signed_with_another_key_fails_the_signature(
    log: Log, tmp_path: Path
) -> None:
    lines = log.lines()[:25]
    log.write_lines(lines)
    for size in log.checkpoints():
        if size > 25:
            log.checkpoint_file(size).unlink()
    forger = AuditKey.load(tmp_path / "forger.key")  # same name, "geogate-audit"
    log.checkpoint_file(25).write_bytes(
        forger.sign(Checkpoint(origin(log.name), 25, roots(lines)[25]))
    )
    report = await checked(tmp_path)
    assert found(report) == [("checkpoint", 25)]
    assert "no signature by geogate-audit+" in report.logs[0].problems[0].message


async def test_a_cut_end_is_found_by_the_checkpoints_that_cover_it(
    log: Log, tmp_path: Path
) -> None:
    log.write_lines(log.lines()[:25])
    report = await checked(tmp_path)
    assert found(report) == [("removed", 25)]
    assert "records 25 to 29 were removed" in report.logs[0].problems[0].message


async def test_the_last_record_changed_after_close_is_caught_by_the_final_checkpoint(
    log: Log, tmp_path: Path
) -> None:
    lines = log.lines()
    assert b'"status":200' in lines[29]  # the last reply
    lines[29] = lines[29].replace(b'"status":200', b'"status":500')
    log.write_lines(lines)
    report = await checked(tmp_path)
    assert found(report) == [("checkpoint", 29)]  # no record after it: only the signature


async def test_a_checkpoint_copied_from_another_log_is_reported(tmp_path: Path) -> None:
    config = settings(tmp_path)
    mine = await Recorder.start(config, None)
    other = await Recorder.start(config, None)  # a second process: a log of its own
    assert mine.log != other.log
    await record(mine, range(CALLS))
    await record(other, range(3))
    await other.close()
    await mine.close()
    assert (await checked(tmp_path)).ok
    ours, theirs = Log(tmp_path, mine.log), Log(tmp_path, other.log)
    (size,) = theirs.checkpoints()
    assert size not in ours.checkpoints()
    shutil.copy(theirs.checkpoint_file(size), ours.checkpoint_file(size))
    last = max(ours.checkpoints())
    ours.checkpoint_file(last).write_bytes(theirs.checkpoints()[size])  # and one replaced
    report = await checked(tmp_path)
    assert sorted(found(report)) == [("checkpoint", size), ("checkpoint", last)]
    assert all("moved from elsewhere" in p.message for p in report.logs[0].problems)
    assert report.logs[1].log == other.log and not report.logs[1].problems


async def test_checkpoints_signed_by_another_key_are_reported(log: Log, tmp_path: Path) -> None:
    AuditKey.load(tmp_path / "auditor-trusts.key")
    report = await checked(tmp_path, key="auditor-trusts.key")
    assert sorted(found(report)) == [("checkpoint", size) for size in log.checkpoints()]


# --- the witness ----------------------------------------------------------------------------


async def test_the_witness_gets_every_checkpoint(tmp_path: Path) -> None:
    log = await signed_log(tmp_path, witness=f"file://{tmp_path}/witness")
    assert log.checkpoints("witness") == log.checkpoints()
    report = await checked(tmp_path, witness=True)
    assert report.ok, report.to_json()


async def test_a_rewrite_signed_with_another_key_is_caught_by_the_witness(
    tmp_path: Path,
) -> None:
    log = await signed_log(tmp_path, witness=f"file://{tmp_path}/witness")
    sizes = sorted(log.checkpoints())

    def change(records: list[Record]) -> None:
        records[12]["request"]["text"] = records[12]["request"]["text"].replace("q6", "q7")

    rewrite(log, AuditKey.load(tmp_path / "forger.key"), change)
    report = await checked(tmp_path, witness=True)
    problems = found(report)
    # the forged notes are not signed by the audit key, so the witness's copies are missing
    assert [("checkpoint", size) for size in sizes] == problems[: len(sizes)]
    assert [("witness", size) for size in sizes] == [p for p in problems if p[0] == "witness"]
    # the witness's roots are held against the rewritten records: from record 12 on they differ
    later = [size for size in sizes if size > 12]
    assert problems[-len(later) :] == [("checkpoint", size - 1) for size in later]


async def test_a_rewrite_with_the_stolen_key_is_caught_only_by_the_witness(
    tmp_path: Path,
) -> None:
    log = await signed_log(tmp_path, witness=f"file://{tmp_path}/witness")

    def change(records: list[Record]) -> None:
        records[12]["request"]["text"] = records[12]["request"]["text"].replace("q6", "q7")

    rewrite(log, AuditKey.load(tmp_path / "audit.key"), change)
    alone = await checked(tmp_path)
    assert alone.ok  # consistent and signed: nothing in the store itself gives it away
    report = await checked(tmp_path, witness=True)
    later = [size for size in sorted(log.checkpoints()) if size > 12]
    assert found(report) == [("witness", size) for size in later]
    assert "the log was rewritten" in report.logs[0].problems[0].message


# --- retention ------------------------------------------------------------------------------


async def test_retention_deletes_old_segments_and_the_log_still_verifies(
    tmp_path: Path, clock: Clock
) -> None:
    config = settings(tmp_path, retention="1s")
    clock.shift = -timedelta(days=2)
    recorder = await Recorder.start(config, None)
    await record(recorder, range(5))  # records 0-9, two days ago
    clock.shift = timedelta()
    await record(recorder, range(5, 10))  # records 10-19, today: a new segment
    log = Log(tmp_path, recorder.log)
    assert [path.name for path in log.segments()] == [
        "0000000000000000.jsonl",
        "0000000000000010.jsonl",
    ]
    old = log.segments()[0].read_bytes()
    await recorder.expire()
    await recorder.close()
    folder = tmp_path / "rec/logs" / log.name
    assert sorted(path.name for path in folder.iterdir()) == [
        "0000000000000000.hashes",
        "0000000000000010.jsonl",
        "state.json",  # where the log stood at its last checkpoint, for a fast restart
    ]
    hashes = (folder / "0000000000000000.hashes").read_bytes()
    assert hashes == b"".join(leaf_hash(line) for line in old.splitlines())
    last = json.loads(log.lines()[-1])
    assert last["kind"] == "retention" and (last["first"], last["last"]) == (0, 9)
    assert last["i"] == 20 and last["leaves"] == leaf_hash(hashes).hex()
    report = await checked(tmp_path)
    assert report.ok, report.to_json()
    assert (report.logs[0].records, report.logs[0].deleted) == (21, 10)

    again = await Recorder.start(config, None)  # recovers from the hashes and goes on
    assert await record(again, range(10, 11)) == [21]
    await again.close()
    report = await checked(tmp_path)
    assert report.ok, report.to_json()


@pytest.fixture
async def three_days(tmp_path: Path, clock: Clock) -> Log:
    """A log of three segments, one per day (records 0-9, 10-19 and 20-29), no retention."""
    recorder = await Recorder.start(settings(tmp_path), None)
    for day, numbers in ((-2, range(5)), (-1, range(5, 10)), (0, range(10, 15))):
        clock.shift = timedelta(days=day)
        await record(recorder, numbers)
    await recorder.close()
    log = Log(tmp_path, recorder.log)
    assert [int(path.stem) for path in log.segments()] == [0, 10, 20]
    assert (await checked(tmp_path)).ok
    return log


async def test_a_segment_deleted_by_hand_is_reported_at_its_position(
    three_days: Log, tmp_path: Path
) -> None:
    three_days.segments()[1].unlink()
    report = await checked(tmp_path)
    assert found(report)[0] == ("removed", 10)
    assert "records 10 to 19 are missing" in report.logs[0].problems[0].message


async def test_a_segment_swapped_for_hashes_without_a_retention_record_is_reported(
    three_days: Log, tmp_path: Path
) -> None:
    segment = three_days.segments()[1]
    hashes = b"".join(leaf_hash(line) for line in segment.read_bytes().splitlines())
    segment.with_suffix(".hashes").write_bytes(hashes)  # as retention would leave it...
    segment.unlink()  # ...but no retention record in the log says so
    report = await checked(tmp_path)
    assert found(report) == [("retention", 10)]  # the chain and checkpoints still hold
    assert report.logs[0].deleted == 10


async def test_the_first_segment_deleted_by_hand_is_reported(
    three_days: Log, tmp_path: Path
) -> None:
    three_days.segments()[0].unlink()
    report = await checked(tmp_path)
    assert found(report)[0] == ("removed", 0)


# --- a gateway's upstream ---------------------------------------------------------------------


MARKER = re.compile(r"marker-[0-9a-f]{32}")

POLICY = """\
version: 1
gateway:
  region: onprem:test-eu
  state: "sqlite:///{folder}/state.db"
  audit_key: "{folder}/audit.key"
  recordings: {recordings}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
connections:
  llm: {{type: openai, url: "{upstream}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
policies:
  - name: support
    subjects: {{groups: [support]}}
    connections: [llm]
"""


class Upstream:
    """The demo LLM, noting every request that reaches it and the markers in their bodies."""

    def __init__(self) -> None:
        self.app = create_demo_app(DemoSettings(api_key="demo", chunk_delay=0.0))
        self.requests = 0
        self.markers: set[str] = set()
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self._lock:
            self.requests += 1
        body = bytearray()

        async def spy() -> Message:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                with self._lock:
                    self.markers.update(MARKER.findall(body.decode(errors="replace")))
            return message

        await self.app(scope, spy, send)


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    with run_asgi(app) as url:
        yield app, url


def policy(folder: Path, upstream: str, recordings: dict[str, Any]) -> str:
    return POLICY.format(folder=folder, upstream=upstream, recordings=json.dumps(recordings))


def log_lines(folder: Path) -> list[bytes]:
    """Every line of every local log, in order."""
    found: list[bytes] = []
    for segment in sorted(folder.glob("logs/*/*.jsonl")):
        found.extend(segment.read_bytes().splitlines())
    return found


# --- kill -9 of a real gateway ---------------------------------------------------------------


class Up:
    """`geogate up` in a folder of its own, in a process group the test can SIGKILL."""

    def __init__(self, folder: Path, workers: int) -> None:
        self.folder = folder
        self.workers = workers
        self.base_url = f"http://127.0.0.1:{free_port()}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        """Start and wait until ready; on another port if another process took this one."""
        for attempt in range(3):
            self.starts += 1
            output = (self.folder / f"up-{self.starts}.log").open("wb")
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "geogate",
                    "up",
                    "--listen",
                    self.base_url.removeprefix("http://"),
                    "--workers",
                    str(self.workers),
                ],
                cwd=self.folder,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: SIGKILL reaches every worker
            )
            output.close()
            if until_ready(self.process, self.base_url):
                return
            assert ADDRESS_IN_USE in self.output().lower() and attempt < 2, self.output()
            self.base_url = f"http://127.0.0.1:{free_port()}"

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        try:
            assert self.process.wait(timeout=20) == 0, self.output()
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise

    def output(self) -> str:
        return (self.folder / f"up-{self.starts}.log").read_text(errors="replace")


@pytest.fixture
def up(
    tmp_path: Path, upstream: tuple[Upstream, str], request: pytest.FixtureRequest
) -> Iterator[Up]:
    rec = {"store": f"file://{tmp_path}/recordings", "checkpoints": {"records": 25}}
    (tmp_path / "geogate.yaml").write_text(policy(tmp_path, upstream[1], rec))
    gateway = Up(tmp_path, request.param)
    try:
        yield gateway
    finally:
        if gateway.process is not None and gateway.process.poll() is None:
            os.killpg(gateway.process.pid, signal.SIGKILL)
            gateway.process.wait()


@dataclass
class Load:
    """Threads that call the gateway until `stop` or the gateway is gone, each call with a
    marker of its own and a connection of its own (so every worker gets some)."""

    base_url: str
    key: str
    threads: int
    stop: threading.Event = field(default_factory=threading.Event)
    errors: list[BaseException] = field(default_factory=list)
    """Anything but the connection failing when the gateway is killed."""
    _running: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._running = [
            threading.Thread(target=self._call, daemon=True) for _ in range(self.threads)
        ]
        for thread in self._running:
            thread.start()

    def _call(self) -> None:
        while not self.stop.is_set():
            client = openai.OpenAI(
                base_url=f"{self.base_url}/c/llm", api_key=self.key, max_retries=0
            )
            try:
                client.chat.completions.create(
                    model="demo",
                    messages=[{"role": "user", "content": f"marker-{uuid.uuid4().hex}"}],
                )
            except openai.APIConnectionError:
                return
            except Exception as exc:
                self.errors.append(exc)
                return
            finally:
                client.close()

    def end(self) -> None:
        self.stop.set()
        for thread in self._running:
            thread.join(10)
        assert not self.errors, self.errors


async def verified(storage: Storage, folder: Path, state: str | None = None) -> Report:
    """`geogate audit verify` of any store, with the session index of the state store if
    given (then a log cut short shows too)."""
    verifier = AuditKey.load(folder / "audit.key", create=False).verifier()
    if state is None:
        return await verify(storage, verifier)
    async with await open_store(state) as store:
        return await verify(storage, verifier, index=store.recorded)


def create_key(state: str) -> str:
    async def create() -> str:
        async with await open_store(state) as store:
            created = await store.create_key(
                "alice@example.com", groups=["support"], expires_in=3600.0
            )
            return created.key

    return asyncio.run(create())


@pytest.mark.parametrize("up", [1, 2], indirect=True, ids=["1-worker", "2-workers"])
def test_kill_9_under_load_loses_no_record_of_a_forwarded_call(
    up: Up, tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    app, _ = upstream
    state = f"sqlite:///{tmp_path}/state.db"
    rec = tmp_path / "recordings"
    up.start()
    key = create_key(state)
    load = Load(up.base_url, key, threads=8)
    deadline = time.monotonic() + 30

    def recorded_logs() -> list[str]:
        """The workers' logs that hold a record; a worker still starting has none yet."""
        folder = rec / "logs"
        if not folder.is_dir():
            return []
        return sorted(
            log.name for log in folder.iterdir() if any(p.stat().st_size for p in log.iterdir())
        )

    while len(app.markers) < 20 or len(recorded_logs()) < up.workers:
        # `/readyz` answers once one worker is up; the kill must find every worker recording
        assert time.monotonic() < deadline, (
            f"the load did not reach every worker: {recorded_logs()}"
        )
        time.sleep(0.01)
    time.sleep(0.5)
    up.kill()
    load.end()
    logs = sorted(path.name for path in (rec / "logs").iterdir())
    assert len(logs) == up.workers
    for log in logs:  # a batch written to the OS survives SIGKILL whole; a power cut may not
        with sorted((rec / "logs" / log).glob("*.jsonl"))[-1].open("ab") as segment:
            segment.write(b'{"v":1,"i":')

    def sizes() -> dict[str, int]:
        return {log: sum(p.stat().st_size for p in (rec / "logs" / log).iterdir()) for log in logs}

    killed = sizes()
    up.start()  # recovers each log: a torn last line is cut off
    load = Load(up.base_url, key, threads=2)
    deadline = time.monotonic() + 20
    while not all(size > killed[log] for log, size in sizes().items()):
        # each worker has started, and recovered its log, once it has recorded a call
        assert time.monotonic() < deadline, "not every worker recorded a call after the restart"
        time.sleep(0.01)
    load.end()
    up.stop()
    assert "Traceback" not in up.output(), up.output()

    recorded: set[str] = set()
    for line in log_lines(rec):
        record = json.loads(line)
        if record["kind"] == "call":
            recorded.update(MARKER.findall(record["request"]["text"]))
    assert app.markers and app.markers <= recorded  # every call the upstream saw is recorded
    report = asyncio.run(verified(open_storage(f"file://{rec}"), tmp_path, state))
    assert report.ok, report.to_json()
    assert sorted(log.log for log in report.logs) == logs
    assert [log.rpartition(".")[2] for log in logs] == [str(n) for n in range(up.workers)]
