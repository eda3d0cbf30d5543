"""When the record of a call cannot be stored, the call is refused and nothing leaves.

A full disk (a segment that is `/dev/full`), a recordings folder replaced by a file, an S3
store that goes down: through a real gateway, each call is refused with 503
`recording_unavailable` and the upstream never sees it. Once the store is back, calls go
through again and the log verifies: a failed write leaves no torn line, and the refusals'
own records, kept while the store failed, are stored then. (`kill -9` of a gateway under load
is in test_recording.py.)
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from prometheus_client import REGISTRY

import geogate.recording.recorder as recorder_module
from geogate.recording import Recorder, RecordingUnavailable, open_storage
from geogate.recording.log import LogReader
from geogate.recording.verify import Report
from tests.gateways import Gateway, run_gateway
from tests.s3 import s3_server
from tests.servers import run_asgi
from tests.test_recording import Upstream, call, log_lines, policy, reply, settings, verified


@pytest.fixture
def upstream() -> Iterator[tuple[Upstream, str]]:
    app = Upstream()
    with run_asgi(app) as url:
        yield app, url


def ask(gw: Gateway, key: str, text: str = "hello") -> str:
    client = openai.OpenAI(base_url=gw.url("llm"), api_key=key, max_retries=0)
    try:
        answer = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": text}]
        )
    finally:
        client.close()
    return answer.choices[0].message.content or ""


def refused(gw: Gateway, key: str, reason: str) -> None:
    """A call that must be refused because its record cannot be stored."""
    with pytest.raises(openai.APIStatusError) as caught:
        ask(gw, key)
    exc = caught.value
    assert exc.status_code == 503 and exc.code == "recording_unavailable"
    assert isinstance(exc.body, dict) and exc.body["code"] == "recording_unavailable"
    assert reason in exc.body["message"] and "nothing was sent" in exc.body["message"]
    assert exc.response.headers["x-geogate-error"] == "recording_unavailable"


def settle(folder: Path, count: int) -> None:
    """Wait until the log holds `count` records (the replies are stored after the calls)."""
    deadline = time.monotonic() + 10
    while len(log_lines(folder)) != count:
        assert time.monotonic() < deadline, f"{len(log_lines(folder))} records, expected {count}"
        time.sleep(0.01)


def kinds(folder: Path) -> list[tuple[str, str | None]]:
    records = [json.loads(line) for line in log_lines(folder)]
    assert [record["i"] for record in records] == list(range(len(records)))
    return [(record["kind"], record.get("code")) for record in records]


@pytest.fixture
def one_segment_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch opens a segment of its own, so a failure set up on the next segment's path
    is met by the next write (the open segment's descriptor would bypass it)."""
    monkeypatch.setattr(recorder_module, "SEGMENT_BYTES", 1)


# --- a local folder that fails --------------------------------------------------------------


@pytest.mark.usefixtures("one_segment_per_batch")
def test_a_full_disk_refuses_calls_until_it_has_room_again(
    tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    app, url = upstream
    rec = tmp_path / "recordings"
    with run_gateway(tmp_path, policy(tmp_path, url, {"store": f"file://{rec}"})) as gw:
        key = gw.create_key("alice@example.com", groups=["support"])
        assert ask(gw, key)
        settle(rec, 2)
        (log,) = (rec / "logs").iterdir()
        full = log / f"{2:016d}.jsonl"
        full.symlink_to("/dev/full")  # the next segment is on a disk with no room: ENOSPC
        reached = app.requests
        refused(gw, key, "the disk is full")
        refused(gw, key, "in the recording store")  # /dev/full cannot be cut back either
        assert app.requests == reached  # nothing left the gateway
        full.unlink()  # room again
        assert ask(gw, key)
        assert app.requests == reached + 1
    assert kinds(rec) == [
        ("call", None),
        ("reply", None),
        ("refused", "recording_unavailable"),  # kept while the disk was full, stored after
        ("refused", "recording_unavailable"),
        ("call", None),
        ("reply", None),
    ]
    report = asyncio.run(verified(open_storage(f"file://{rec}"), tmp_path, gw.config.gateway.state))
    assert report.ok, report.to_json()


@pytest.mark.usefixtures("one_segment_per_batch")
def test_a_log_folder_replaced_by_a_file_refuses_calls(
    tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    app, url = upstream
    rec = tmp_path / "recordings"
    with run_gateway(tmp_path, policy(tmp_path, url, {"store": f"file://{rec}"})) as gw:
        key = gw.create_key("alice@example.com", groups=["support"])
        assert ask(gw, key)
        settle(rec, 2)
        (log,) = (rec / "logs").iterdir()
        aside = log.with_name("aside")
        log.rename(aside)
        log.write_text("not a folder")
        reached = app.requests
        refused(gw, key, "FileExistsError")
        assert app.requests == reached
        log.unlink()
        aside.rename(log)
        assert ask(gw, key)
    assert [kind for kind, _ in kinds(rec)] == ["call", "reply", "refused", "call", "reply"]
    report = asyncio.run(verified(open_storage(f"file://{rec}"), tmp_path))
    assert report.ok, report.to_json()


@pytest.mark.usefixtures("one_segment_per_batch")
def test_a_read_only_log_folder_refuses_calls(
    tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    """Read-only for root too: the immutable attribute (`chattr +i`), which root's
    privileges do not override the way they override file modes."""
    app, url = upstream
    rec = tmp_path / "recordings"
    with run_gateway(tmp_path, policy(tmp_path, url, {"store": f"file://{rec}"})) as gw:
        key = gw.create_key("alice@example.com", groups=["support"])
        assert ask(gw, key)
        settle(rec, 2)
        (log,) = (rec / "logs").iterdir()
        subprocess.run(["chattr", "+i", str(log)], check=True)
        try:
            reached = app.requests
            refused(gw, key, "it is not writable")
            assert app.requests == reached
        finally:
            subprocess.run(["chattr", "-i", str(log)], check=True)
        assert ask(gw, key)
    report = asyncio.run(verified(open_storage(f"file://{rec}"), tmp_path))
    assert report.ok, report.to_json()


async def test_a_disk_that_fills_half_way_through_a_batch_leaves_no_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = await Recorder.start(settings(tmp_path), None)
    assert await recorder.write_ahead(call(0)) == 0
    recorder.append(reply(0))
    await recorder.drain()
    real_write = os.write
    full = [True]

    def half_then_full(descriptor: int, data: Any) -> int:
        """The disk fills up: half of the next batch fits, then ENOSPC."""
        if full[0] and os.readlink(f"/proc/self/fd/{descriptor}").endswith(".jsonl"):
            if len(data) > 1:
                return real_write(descriptor, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(descriptor, data)

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(RecordingUnavailable, match="the disk is full"):
        await recorder.write_ahead(call(1))
    (segment,) = (tmp_path / "rec/logs" / recorder.log).glob("*.jsonl")
    assert not segment.read_bytes().endswith(b"\n")  # half a line is on disk
    full[0] = False
    assert await recorder.write_ahead(call(2)) == 2  # after the refused call's record
    await recorder.close()
    records = [json.loads(line) for line in segment.read_bytes().splitlines()]
    assert [record["kind"] for record in records] == ["call", "reply", "call"]
    assert [r["request_id"] for r in records] == ["req-0", "req-0", "req-2"]
    report = await verified(open_storage(f"file://{tmp_path}/rec"), tmp_path)
    assert report.ok, report.to_json()


async def test_a_failed_flush_under_sync_0s_refuses_the_call_and_leaves_no_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `sync: 0s` a call waits until its record is on disk; a flush that fails refuses
    it, and its record (written but maybe lost) must not stay in the log ahead of the next."""
    recorder = await Recorder.start(settings(tmp_path, sync="0s"), None)
    assert await recorder.write_ahead(call(0)) == 0
    real_sync = os.fdatasync

    def failing(descriptor: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(RecordingUnavailable, match="flush to disk"):
        await recorder.write_ahead(call(1))
    assert REGISTRY.get_sample_value("geogate_recording_failing") == 1  # for alerts
    monkeypatch.setattr(os, "fdatasync", real_sync)
    assert await recorder.write_ahead(call(2)) == 1
    assert REGISTRY.get_sample_value("geogate_recording_failing") == 0
    await recorder.close()
    (segment,) = (tmp_path / "rec/logs" / recorder.log).glob("*.jsonl")
    records = [json.loads(line) for line in segment.read_bytes().splitlines()]
    assert [(r["i"], r["request_id"]) for r in records] == [(0, "req-0"), (1, "req-2")]
    report = await verified(open_storage(f"file://{tmp_path}/rec"), tmp_path)
    assert report.ok, report.to_json()


@pytest.mark.usefixtures("one_segment_per_batch")
def test_a_reply_that_cannot_be_stored_neither_blocks_the_gateway_nor_its_shutdown(
    tmp_path: Path,
) -> None:
    """A reply waits for the next batch while the store fails, without retrying in a loop
    that would hold the event loop; closing gives up on it. Run in a thread of its own so
    that a recorder which blocks its event loop fails the test instead of hanging it."""
    outcome: list[str] = []

    async def scenario() -> None:
        recorder = await Recorder.start(settings(tmp_path), None)
        await recorder.write_ahead(call(0))
        log = tmp_path / "rec/logs" / recorder.log
        log.rename(tmp_path / "aside")
        log.write_text("not a folder")
        recorder.append(reply(0))
        await asyncio.sleep(0.05)  # the writer fails, and the event loop goes on
        outcome.append("event loop free")
        with pytest.raises(RecordingUnavailable):
            await recorder.write_ahead(call(1))
        await recorder.close()
        outcome.append("closed")

    thread = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    thread.start()
    thread.join(10)
    assert outcome == ["event loop free", "closed"]


# --- an object store that goes down ---------------------------------------------------------


def test_an_s3_store_that_goes_down_refuses_calls(
    tmp_path: Path, upstream: tuple[Upstream, str]
) -> None:
    app, url = upstream
    with s3_server() as s3:
        store = s3.bucket("audit") + "/rec"
        recordings = {"store": store, "options": s3.options(), "region": "onprem:test-eu"}
        servers = [thread for thread in threading.enumerate() if thread.name == "run_asgi"]
        with run_gateway(tmp_path, policy(tmp_path, url, recordings)) as gw:
            key = gw.create_key("alice@example.com", groups=["support"])
            for n in range(3):
                assert ask(gw, key, f"question {n}")

            async def check() -> Report:
                storage = open_storage(store, s3.options())
                (log,) = await storage.list("logs")
                deadline = time.monotonic() + 10
                while True:  # the last reply is stored just after the call returned
                    found = [s.record async for s in LogReader(storage, log).records()]
                    if len(found) == 6 or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.01)
                assert [r["kind"] for r in found if r] == ["call", "reply"] * 3
                assert "question 2" in json.dumps(found)
                return await verified(storage, tmp_path)

            report = asyncio.run(check())
            assert report.ok and report.logs[0].records == 6, report.to_json()
            reached = app.requests
            s3.stop()
            refused(gw, key, "Could not connect to the endpoint")
            refused(gw, key, "Could not connect to the endpoint")
            assert app.requests == reached
        # the gateway stopped, instead of waiting forever to store the refusals' records
        assert [thread for thread in threading.enumerate() if thread.name == "run_asgi"] == servers


async def test_a_store_that_cannot_be_opened_stops_the_gateway_with_the_reason(
    tmp_path: Path,
) -> None:
    """A gateway that could record nothing does not start: it says which store and why."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store should be")
    with pytest.raises(RecordingUnavailable) as caught:
        await Recorder.start(settings(tmp_path, store=f"file://{blocker}/rec"), None)
    message = str(caught.value)
    assert f"file://{blocker}/rec" in message and "Not a directory" in message


async def test_a_broken_audit_key_stops_the_gateway_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "audit.key").write_text("not a key")
    with pytest.raises(RecordingUnavailable, match=r"cannot load the audit key: .*audit\.key"):
        await Recorder.start(settings(tmp_path), None)
