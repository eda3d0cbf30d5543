"""Metrics and the one JSON log line per call: what operators watch."""

from __future__ import annotations

import atexit
import functools
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import TextIO

import orjson
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter(
    "geogate_requests",
    "Calls on the data path by connection, decision and HTTP status.",
    ["connection", "decision", "status"],
)
ADDED_LATENCY = Histogram(
    "geogate_added_latency_seconds",
    "Time the gateway itself adds to a call (everything but waiting for the target).",
    buckets=(0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25),
)
DURATION = Histogram(
    "geogate_request_duration_seconds",
    "Whole call duration as the caller sees it, to the last byte.",
    ["connection"],
)

AccessSink = Callable[[str], None]
"""Takes one finished JSON log line (no newline)."""


@dataclass(slots=True)
class CallLog:
    """Filled in step by step along the flow, written once when the call ends."""

    request_id: str
    session_id: str
    method: str
    connection: str | None = None
    subject: str | None = None
    user: str | None = None
    policy: str | None = None
    decision: str = "error"
    code: str | None = None
    region: str | None = None
    evidence: str | None = None
    """How the region was proven (the `x-geogate-region` value)."""
    status: int = 0
    latency_ms: float = 0.0
    added_ms: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    masked: dict[str, int] | None = None
    """Values masked per entity, in the request and the reply (streamed ones included)."""

    def emit(self, known_connection: bool, sink: AccessSink | None) -> None:
        label = self.connection if known_connection and self.connection else "unknown"
        requests, duration = _children(label, self.decision, self.status)
        requests.inc()
        duration.observe(self.latency_ms / 1000)
        if self.decision == "allow":
            ADDED_LATENCY.observe(self.added_ms / 1000)
        if sink is not None:
            line = orjson.dumps(self).decode()
            if not line.isascii():  # as the standard library writes it: a line stays a line
                line = json.dumps(
                    {name: getattr(self, name) for name in _FIELDS}, separators=(",", ":")
                )
            sink(line)


_FIELDS = tuple(field.name for field in fields(CallLog))


@functools.cache
def _children(connection: str, decision: str, status: int) -> tuple[Counter, Histogram]:
    """Labelled metric children, looked up once per label set instead of once per call.

    `connection` is a configured name or "unknown", so the label sets stay few.
    """
    return REQUESTS.labels(connection, decision, str(status)), DURATION.labels(connection)


def metrics_payload() -> tuple[bytes, str]:
    """Prometheus text; with several workers, the sum over all of them."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


class BatchedLines:
    """An access log that writes its lines in batches, from a thread, every `interval` seconds.

    A write to stdout is a system call, and the logging module's per-record machinery costs
    more than the line itself; at thousands of calls a second both show in the latency. Here a
    call only appends to a list. Lines reach the stream at most `interval` seconds late.
    """

    def __init__(self, stream: TextIO, interval: float = 0.25) -> None:
        self._stream = stream
        self._interval = interval
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()  # the flusher thread and exit write in turn
        threading.Thread(target=self._flush_forever, name="access-log", daemon=True).start()
        atexit.register(self.flush)

    def __call__(self, line: str) -> None:
        with self._lock:
            self._pending.append(line)

    def flush(self) -> None:
        with self._lock:  # held only to swap lists: a slow stream never blocks a call
            lines, self._pending = self._pending, []
        if lines:
            with self._write_lock:
                self._stream.write("\n".join(lines) + "\n")
                self._stream.flush()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self._interval)
            self.flush()
