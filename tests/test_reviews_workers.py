"""Reviews across processes: a call held by one worker is released by an approval that
another worker (or another process on the host) makes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import openai

from geogate.recording import open_storage
from geogate.recording.log import LogReader
from geogate.reviews import Wakeups
from geogate.store import open_store
from tests.conftest import UPSTREAM_KEY
from tests.gateways import geogate_up, run_sync

POLICY = """\
version: 1
gateway:
  region: onprem:test-eu
connections:
  held: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
policies:
  - name: hold
    subjects: {{groups: [contractors]}}
    connections: [held]
    review: {{approvers: {{groups: [security]}}, mode: hold, timeout: 60s}}
"""


WAITER = """
import asyncio, sys
from pathlib import Path
from geogate.reviews import Wakeups

async def main():
    wakeups = Wakeups(Path(sys.argv[1]))
    await wakeups.start()
    with wakeups.watch("rev_one") as woken:
        print("ready", flush=True)
        await asyncio.wait_for(woken.wait(), 60)
    print("woken", flush=True)
    await wakeups.close()

asyncio.run(main())
"""


def test_another_process_wakes_a_waiter(tmp_path: Path) -> None:
    """A datagram from one process sets the waiter's event in another: no polling."""
    waiter = subprocess.Popen(
        [sys.executable, "-c", WAITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert waiter.stdout is not None
    assert waiter.stdout.readline().strip() == "ready"

    async def announce() -> None:
        wakeups = Wakeups(tmp_path)
        await wakeups.start()
        wakeups.announce("rev_other")  # another review: the waiter keeps waiting
        wakeups.announce("rev_one")
        await wakeups.close()

    asyncio.run(announce())
    assert waiter.stdout.readline().strip() == "woken"
    assert waiter.wait(timeout=30) == 0
    assert list((tmp_path / "reviews.wakeups").iterdir()) == []  # both left the folder


def test_a_dead_process_is_forgotten(tmp_path: Path) -> None:
    """A name left behind by a killed process is removed by the next announcement."""

    async def run() -> list[str]:
        gone = Wakeups(tmp_path)
        await gone.start()
        assert gone._socket is not None
        gone._socket.close()  # as if killed: its name stays in the folder
        gone._socket = None
        alive = Wakeups(tmp_path)
        await alive.start()
        alive.announce("rev_x")
        names = sorted(p.name for p in (tmp_path / "reviews.wakeups").iterdir())
        await alive.close()
        return names

    assert len(run_sync(run())) == 1


def test_approval_on_one_worker_releases_a_call_held_on_another(
    tmp_path: Path, demo_url: str
) -> None:
    (tmp_path / "geogate.yaml").write_text(POLICY.format(demo=demo_url, key=UPSTREAM_KEY))

    async def keys() -> list[str]:
        async with await open_store(f"sqlite:///{tmp_path}/.geogate/state.db") as store:
            made = [
                await store.create_key(owner, groups=[group], expires_in=3600)
                for owner, group in (
                    ("alice@example.com", "contractors"),
                    ("bob@example.com", "security"),
                    ("root@example.com", "geogate-admins"),
                )
            ]
            return [key.key for key in made]

    caller, approver, admin = run_sync(keys())
    with geogate_up(tmp_path, workers=2) as up:
        for attempt in range(20):  # until the approval lands on the other worker
            text = f"held call {attempt}"
            reply = _held_and_approved(up.base_url, caller, approver, text)
            assert reply == f"You said: {text}"
            approved, used = _logs_of(tmp_path, attempt)
            if approved != used:
                break
        else:
            raise AssertionError("20 approvals all reached the worker holding the call")
        today = time.strftime("%Y-%m-%d", time.gmtime())
        report = httpx2.get(
            f"{up.base_url}/api/v1/audit/report?from={today}&to={today}",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=30,
        )
        assert report.status_code == 200, report.text
        approved = [a for a in report.json()["approvals"] if a["kind"] == "review.approved"]
        assert len(approved) == attempt + 1  # from both workers' logs
        assert {a["by"] for a in approved} == {"bob@example.com"}


def _held_and_approved(base_url: str, caller: str, approver: str, text: str) -> str:
    result: list[Any] = []
    client = openai.OpenAI(base_url=f"{base_url}/c/held", api_key=caller, max_retries=0)
    thread = threading.Thread(
        target=lambda: result.append(
            client.chat.completions.create(
                model="demo", messages=[{"role": "user", "content": text}]
            )
        )
    )
    thread.start()
    headers = {"Authorization": f"Bearer {approver}"}
    deadline = time.monotonic() + 20
    while True:
        pending = httpx2.get(f"{base_url}/api/v1/reviews?status=pending", headers=headers).json()
        if pending:
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [review] = pending
    answer = httpx2.post(f"{base_url}/api/v1/reviews/{review['id']}/approve", headers=headers)
    assert answer.status_code == 200, answer.text
    thread.join(timeout=30)
    assert result, "the held call was not released"
    return str(result[0].choices[0].message.content)


def _logs_of(folder: Path, attempt: int) -> tuple[str, str]:
    """The logs that recorded the approval and the use of the review of call `attempt`."""
    deadline = time.monotonic() + 10
    while True:
        steps = _steps_by_log(folder)
        for review in steps.values():
            done = "review.approved" in review and "review.used" in review
            if done and review.get("review.requested", ("", -1))[1] == attempt:
                return review["review.approved"][0], review["review.used"][0]
        assert time.monotonic() < deadline, steps
        time.sleep(0.05)


def _steps_by_log(folder: Path) -> dict[str, dict[str, tuple[str, int]]]:
    """Per review, per step: (the log that recorded it, the attempt number of its call)."""

    async def read() -> dict[str, dict[str, tuple[str, int]]]:
        storage = open_storage(f"file://{folder}/.geogate/recordings")
        steps: dict[str, dict[str, tuple[str, int]]] = {}
        for log in await storage.list("logs"):
            async for stored in LogReader(storage, log).records():
                record = stored.record
                assert record is not None
                if str(record.get("kind", "")).startswith("review."):
                    preview = (record.get("summary") or {}).get("preview") or ""
                    attempt = int(preview.rsplit(" ", 1)[-1]) if preview else -1
                    steps.setdefault(record["review_id"], {})[record["kind"]] = (log, attempt)
        return steps

    return asyncio.run(read())
