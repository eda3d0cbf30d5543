"""Metrics and the one JSON log line per call: what operators watch."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass

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
        REQUESTS.labels(label, self.decision, str(self.status)).inc()
        DURATION.labels(label).observe(self.latency_ms / 1000)
        if self.decision == "allow":
            ADDED_LATENCY.observe(self.added_ms / 1000)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(json.dumps(asdict(self), separators=(",", ":")))


def metrics_payload() -> tuple[bytes, str]:
    """Prometheus text; with several workers, the sum over all of them."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
