"""`python -m bench.recording`: what recording costs a call, and how many records it sustains.

Everything runs in this one process, pinned to one CPU like one gateway worker:

- **added latency**: the gateway's data-path handler (`DataPath`, the real one, with API-key
  authentication, a residency policy and request masking) called in-process at concurrency 1
  with a canned upstream (a 400-byte chat completion), one call after the other, with the
  real recorder (`content: masked`, records in a temporary folder, `sync: 10ms`) and, in the
  same run, with a recorder that keeps nothing. The difference of the p50s is what recording
  adds; the target is ≤ 0.2 ms. `sync: 0s` (a disk flush before each call goes on) is
  measured too, to show what power-cut durability costs on this disk.
- **CPU per call**: the same handler, calls paced at 1,500 a second (what one busy worker
  forwards at concurrency 1), with the process's CPU time counted until the session index has
  written their rows, so the work recording does between calls (the reply record, the
  periodic flush, the index and its SQLite thread) counts too; on and off, 3 interleaved
  rounds, medians.
- **records per second**: 64 tasks write a `call` record (write-ahead, awaited) and a `reply`
  record each, as fast as the recorder takes them, for a few seconds; group commit makes one
  append (and one flush) of each batch.

Writes bench/results/recording.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.masking import pin_one_cpu
from bench.micro import summary
from geogate.agent import UpstreamRequest
from geogate.config import parse_config
from geogate.gateway.datapath import DataPath
from geogate.gateway.runtime import Runtime
from geogate.recording import Recorder, calls
from geogate.recording.log import Record

RESULTS = Path(__file__).resolve().parent / "results" / "recording.json"
TARGET_MS = 0.2
PACE = 1500.0
"""Calls a second in the CPU measurement: about what one worker forwards at concurrency 1."""
REPLY = json.dumps(
    {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "demo",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Refund issued; see you soon. " * 8},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 20, "completion_tokens": 60, "total_tokens": 80},
    }
).encode()
PROMPT = "My card 4111 1111 1111 1111 was charged twice, please refund jane@example.com."
POLICY = """\
version: 1
gateway:
  region: onprem:bench-eu
  state: "sqlite:///{folder}/state.db"
  audit_key: "{folder}/audit.key"
  recordings: {{store: "file://{folder}/recordings", sync: {sync}}}
regions:
  onprem:bench-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
connections:
  llm: {{type: openai, url: "http://127.0.0.1:9/v1", region: onprem:bench-eu}}
policies:
  - name: bench
    subjects: {{groups: [bench]}}
    connections: [llm]
    regions: [eu]
    mask: {{request: [credit_card, email]}}
"""


@dataclass(slots=True)
class _Canned:
    status: int = 200
    headers: list[tuple[bytes, bytes]] | None = None
    evidence: None = None

    async def body(self) -> AsyncIterator[bytes]:
        yield REPLY

    def close(self) -> None:
        return None


class CannedExecutor:
    """The upstream as a constant: what is measured is the gateway alone."""

    async def send(self, request: UpstreamRequest) -> _Canned:
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(REPLY)).encode()),
        ]
        return _Canned(headers=headers)

    async def close(self) -> None:
        return None


class NothingKept:
    """A recorder that stores nothing: the "off" side of the comparison."""

    async def write_ahead(self, record: Record) -> int:
        return 0

    def append(self, record: Record) -> None:
        return None

    async def close(self) -> None:
        return None


@asynccontextmanager
async def handler(
    folder: Path,
    sync: str,
    off: bool,
    policy: str = POLICY,
    setup: Callable[[Runtime], Awaitable[None]] | None = None,
) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The data-path handler with a canned upstream, `setup` run first; yields a function
    that makes one call (and stops the bench if it does not answer 200)."""
    config = parse_config(policy.format(folder=folder, sync=sync), base_dir=folder)
    runtime = await Runtime.start(config)
    try:
        created = await runtime.store.create_key(
            "bench@example.com", groups=["bench"], expires_in=86400
        )
        if setup is not None:
            await setup(runtime)
        swapped: dict[str, Any] = {"executor": CannedExecutor()}
        if off:
            swapped["recorder"] = NothingKept()
        path = DataPath(replace(runtime, **swapped))
        body = json.dumps(
            {"model": "demo", "messages": [{"role": "user", "content": PROMPT}]}
        ).encode()
        scope = {
            "type": "http",
            "method": "POST",
            "raw_path": b"/c/llm/chat/completions",
            "query_string": b"",
            "headers": [
                (b"authorization", f"Bearer {created.key}".encode()),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
        statuses: list[int] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def call() -> None:
            statuses.clear()
            await path(scope, receive, send)  # type: ignore[arg-type]
            if statuses != [200]:
                raise SystemExit(f"the bench call failed: HTTP {statuses}")

        yield call
    finally:
        await runtime.close()


async def handler_latency(
    folder: Path,
    sync: str,
    calls_n: int,
    off: bool,
    policy: str = POLICY,
    setup: Callable[[Runtime], Awaitable[None]] | None = None,
) -> list[float]:
    """Microseconds per call of the data-path handler, `setup` run first (untimed)."""
    samples: list[float] = []
    async with handler(folder, sync, off, policy, setup) as call:
        for index in range(calls_n):
            started = time.perf_counter()
            await call()
            elapsed = time.perf_counter() - started
            if index >= calls_n // 10:  # the first tenth warms caches up
                samples.append(elapsed * 1e6)
            await asyncio.sleep(0)  # let the recorder's task run, as the event loop would
    return samples


async def cpu_per_call(folder: Path, calls_n: int, off: bool) -> float:
    """CPU microseconds per call, with everything recording does between calls: calls come
    at `PACE` a second, as one busy worker gets them, and the count ends once the session
    index has written their rows (its thread's CPU is the process's too)."""
    async with handler(folder, "10ms", off) as call:
        for _ in range(calls_n // 10):  # warm-up
            await call()
        await asyncio.sleep(1.5)
        cpu, started = time.process_time(), time.perf_counter()
        for index in range(calls_n):
            await call()
            delay = started + (index + 1) / PACE - time.perf_counter()
            await asyncio.sleep(max(delay, 0.0))
        await asyncio.sleep(1.2)  # the index writes the last second's rows
        return (time.process_time() - cpu) / calls_n * 1e6


async def records_per_second(folder: Path, sync: str, seconds: float) -> float:
    config = parse_config(POLICY.format(folder=folder, sync=sync), base_dir=folder)
    recorder = await Recorder.start(config.gateway, None)
    written = 0
    deadline = time.perf_counter() + seconds

    async def writer(task: int) -> None:
        nonlocal written
        number = 0
        while time.perf_counter() < deadline:
            request_id = f"req_{task}_{number}"
            await recorder.write_ahead(
                calls.call(
                    request_id=request_id,
                    session=request_id,
                    subject="bench@example.com",
                    user="bench@example.com",
                    groups=["bench"],
                    via="api_key",
                    credential="key_1",
                    connection="llm",
                    method="POST",
                    target="http://127.0.0.1:9/v1/chat/completions",
                    policy="bench",
                    policy_version="v1",
                    reasons=["policy bench allows it"],
                    region="onprem:bench-eu",
                    masked={"credit_card": 1},
                    request=calls.body(PROMPT.encode(), "application/json"),
                )
            )
            recorder.append(
                calls.reply(
                    request_id=request_id,
                    status=200,
                    decision="allow",
                    code=None,
                    region="onprem:bench-eu",
                    evidence=None,
                    masked=None,
                    bytes_in=400,
                    bytes_out=len(REPLY),
                    latency_ms=1.0,
                    content=calls.body(REPLY, "application/json"),
                )
            )
            written += 2
            number += 1

    started = time.perf_counter()
    await asyncio.gather(*(writer(task) for task in range(64)))
    await recorder.drain()
    rate = written / (time.perf_counter() - started)
    await recorder.close()
    return rate


async def measure(calls_n: int, seconds: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        rounds: dict[str, list[float]] = {"off": [], "on": [], "on, sync 0s": []}
        for repetition in range(3):  # interleaved, so a disturbance hits every case alike
            for name, sync, off in (("off", "10ms", True), ("on", "10ms", False)):
                folder = root / f"{name}-{repetition}"
                rounds[name] += await handler_latency(folder, sync, calls_n, off)
            folder = root / f"sync0-{repetition}"
            rounds["on, sync 0s"] += await handler_latency(folder, "0s", calls_n // 4, False)
        figures["handler"] = {name: summary(samples) for name, samples in rounds.items()}
        off = figures["handler"]["off"]["p50_us"]
        figures["added_p50_ms"] = {
            name: (figures["handler"][name]["p50_us"] - off) / 1000 for name in rounds
        }
        cpu: dict[str, list[float]] = {"off": [], "on": []}
        for repetition in range(3):
            for name in cpu:
                folder = root / f"cpu-{name}-{repetition}"
                cpu[name].append(await cpu_per_call(folder, calls_n * 3, name == "off"))
        figures["cpu_us_per_call"] = {name: sorted(v)[1] for name, v in cpu.items()}
        added = sorted(on - off for on, off in zip(cpu["on"], cpu["off"], strict=True))
        figures["cpu_us_added"] = added[1]
        figures["records_per_second"] = {
            "sync 10ms": await records_per_second(root / "rps", "10ms", seconds),
            "sync 0s": await records_per_second(root / "rps0", "0s", seconds),
        }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per case and round")
    parser.add_argument("--seconds", type=float, default=3.0, help="records/s measuring time")
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.seconds = 300, 1.0
    cpu = pin_one_cpu()
    figures = asyncio.run(measure(args.calls, args.seconds))
    added = figures["added_p50_ms"]["on"]
    print(f"\nRecording (in-process, CPU {cpu}): the data-path handler at concurrency 1")
    print(f"{'case':<16}{'p50 µs':>10}{'p99 µs':>10}{'added p50':>12}")
    for name, figure in figures["handler"].items():
        print(
            f"{name:<16}{figure['p50_us']:>10.1f}{figure['p99_us']:>10.1f}"
            f"{figures['added_p50_ms'][name]:>10.3f} ms"
        )
    used = figures["cpu_us_per_call"]
    print(
        f"CPU per call at {PACE:.0f} calls/s, background work included (median of 3): "
        f"off {used['off']:.0f} µs, on {used['on']:.0f} µs, "
        f"recording {figures['cpu_us_added']:.0f} µs"
    )
    verdict = "PASS" if added <= TARGET_MS else "MISS"
    print(f"recording adds {added:.3f} ms p50 (target ≤ {TARGET_MS} ms): {verdict}")
    for name, rate in figures["records_per_second"].items():
        print(f"records per second, {name}: {rate:,.0f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu, **figures}
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    return 0 if added <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
