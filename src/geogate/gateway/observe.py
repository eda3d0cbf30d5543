"""Metrics and the one JSON log line per call: what operators watch."""

from __future__ import annotations

import atexit
import functools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, fields
from typing import TextIO

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

access_log = logging.getLogger("geogate.access")


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
    status: int = 0
    latency_ms: float = 0.0
    added_ms: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0

    def emit(self, known_connection: bool) -> None:
        label = self.connection if known_connection and self.connection else "unknown"
        requests, duration = _children(label, self.decision, self.status)
        requests.inc()
        duration.observe(self.latency_ms / 1000)
        if self.decision == "allow":
            ADDED_LATENCY.observe(self.added_ms / 1000)
        if access_log.isEnabledFor(logging.INFO):
            line = {name: getattr(self, name) for name in _FIELDS}
            access_log.info(json.dumps(line, separators=(",", ":")))


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


class BatchedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes log lines in batches: one write per `interval` instead of one per call.

    A write to stdout is a system call; at thousands of calls a second it costs more than the
    rest of the log line. Lines reach the stream at most `interval` seconds late, and at exit.
    """

    def __init__(self, stream: TextIO | None = None, interval: float = 0.25) -> None:
        super().__init__(stream)
        self._interval = interval
        self._flusher = threading.Thread(target=self._flush_forever, daemon=True)
        self._flusher.start()
        atexit.register(self._flush_now)

    def flush(self) -> None:
        """Called by `emit` after every line: batching means doing nothing here."""

    def _flush_now(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.stream.flush()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self._interval)
            self._flush_now()
