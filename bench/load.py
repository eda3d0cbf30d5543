"""The load generator: a separate process that runs one measurement per line it reads.

It speaks HTTP/1.1 itself over keep-alive connections, with the request bytes built once and a
C parser (httptools) reading the answers, and it drives each connection from the parser's
callbacks instead of a coroutine per request. A cheap client matters here: the machine is
shared, and every microsecond the client spends is a microsecond the measured path cannot use.

Protocol: `python -m bench.load` reads one JSON `Job` per line on stdin and answers one JSON
result per line on stdout, so `bench.run` keeps a single warm, pinned client for the whole run.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, cast

import httptools
import uvloop


@dataclass(frozen=True)
class Job:
    """One measurement: `requests` calls after `warmup` ones, or as many as fit in `duration`."""

    host: str
    port: int
    request: str
    """The whole HTTP/1.1 request, head and body, latin-1 encoded into a str for JSON."""
    concurrency: int
    warmup: int = 0
    requests: int = 0
    warmup_seconds: float = 0.0
    duration: float = 0.0


@dataclass
class Result:
    """Latencies in milliseconds; `ttfb` is the time to the first body byte (streaming)."""

    requests: int
    errors: int
    warmup_requests: int
    seconds: float
    rps: float
    p50: float
    p99: float
    mean: float
    ttfb_p50: float
    ttfb_p99: float
    statuses: dict[str, int] = field(default_factory=dict)


class _Phase:
    """Counts or times one phase (warm-up or measurement) and collects its samples."""

    def __init__(self, requests: int, deadline: float) -> None:
        self.remaining = requests
        self.deadline = deadline
        self.totals: list[int] = []
        self.firsts: list[int] = []
        self.statuses: dict[int, int] = {}
        self.done = asyncio.get_running_loop().create_future()
        self.active = 0

    def claim(self) -> bool:
        """Whether one more request belongs to this phase."""
        if self.deadline:
            return time.perf_counter() < self.deadline
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def record(self, status: int, first_ns: int, total_ns: int) -> None:
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.totals.append(total_ns)
        self.firsts.append(first_ns)

    def release(self) -> None:
        """A connection has no more work in this phase."""
        self.active -= 1
        if self.active == 0 and not self.done.done():
            self.done.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection that sends the next request as soon as an answer is whole."""

    def __init__(self, request: bytes) -> None:
        self._request = request
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._phase: _Phase | None = None
        self._sent_ns = 0
        self._first_ns = 0
        self.connected = asyncio.get_running_loop().create_future()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.connected.set_result(None)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._phase is not None:
            self._fail(exc or ConnectionError("the server closed the connection"))

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        if not self._first_ns:
            self._first_ns = time.perf_counter_ns()

    def on_message_complete(self) -> None:
        now = time.perf_counter_ns()
        phase = self._phase
        assert phase is not None
        first = self._first_ns or now
        phase.record(self._parser.get_status_code(), first - self._sent_ns, now - self._sent_ns)
        self._send_next()

    # driving
    def start(self, phase: _Phase) -> None:
        phase.active += 1
        self._phase = phase
        self._send_next()

    def _send_next(self) -> None:
        phase = self._phase
        assert phase is not None and self._transport is not None
        if not phase.claim():
            self._phase = None
            phase.release()
            return
        self._first_ns = 0
        self._sent_ns = time.perf_counter_ns()
        self._transport.write(self._request)

    def _fail(self, exc: BaseException) -> None:
        phase = self._phase
        self._phase = None
        if phase is not None and not phase.done.done():
            phase.done.set_exception(exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def _percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest-rank percentile, in milliseconds."""
    if not sorted_ns:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_ns)))
    return sorted_ns[rank - 1] / 1e6


async def _run_phase(
    connections: list[_Connection], requests: int, duration: float
) -> tuple[_Phase, float]:
    deadline = time.perf_counter() + duration if duration else 0.0
    phase = _Phase(requests, deadline)
    started = time.perf_counter()
    for connection in connections:
        connection.start(phase)
    await phase.done
    return phase, time.perf_counter() - started


async def run_job(job: Job) -> Result:
    """Open `concurrency` connections, warm them up, then measure."""
    loop = asyncio.get_running_loop()
    request = job.request.encode("latin-1")
    connections: list[_Connection] = []
    try:
        for _ in range(job.concurrency):
            _, protocol = await loop.create_connection(
                lambda: _Connection(request), job.host, job.port
            )
            await protocol.connected  # uvloop may return before connection_made has run
            connections.append(protocol)
        warmed = 0
        if job.warmup or job.warmup_seconds:
            warmup, _ = await _run_phase(connections, job.warmup, job.warmup_seconds)
            warmed = len(warmup.totals)
        phase, seconds = await _run_phase(connections, job.requests, job.duration)
    finally:
        for connection in connections:
            connection.close()
    totals, firsts = sorted(phase.totals), sorted(phase.firsts)
    ok = phase.statuses.get(200, 0)
    return Result(
        requests=len(totals),
        errors=len(totals) - ok,
        warmup_requests=warmed,
        seconds=seconds,
        rps=len(totals) / seconds if seconds else math.nan,
        p50=_percentile(totals, 0.50),
        p99=_percentile(totals, 0.99),
        mean=sum(totals) / len(totals) / 1e6 if totals else math.nan,
        ttfb_p50=_percentile(firsts, 0.50),
        ttfb_p99=_percentile(firsts, 0.99),
        statuses={str(status): count for status, count in sorted(phase.statuses.items())},
    )


async def _serve() -> None:
    """Answer each job line with a result line until stdin closes."""
    loop = asyncio.get_running_loop()
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        try:
            answer: dict[str, Any] = {"result": asdict(await run_job(Job(**json.loads(line))))}
        except (OSError, httptools.HttpParserError, TypeError, ValueError) as exc:
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    uvloop.run(_serve())
