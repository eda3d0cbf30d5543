"""What a record says about a call: the three kinds the data path writes, and their content.

    call     written before anything is forwarded: who, how proven, where to, under which
             policy (and its version), why allowed, the masking counts, the request content
    reply    written when the call ends: status, the proven region, the reply (a streamed one
             as its chunks with their times, so it can be played back at its pace)
    refused  a call that was not forwarded, with its code and reason

Content is kept as the gateway passed it on after masking (`content: masked`) or left out
(`metadata`); text stays text, anything else is base64.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from geogate.recording.log import Record, parse_time

Content = Literal["masked", "metadata"]


def session_key(subject: str | None, session: str) -> str:
    """One session per caller and session id: two callers never share one by reusing an id."""
    digest = hashlib.sha256(f"{subject or ''}\n{session}".encode()).hexdigest()
    return "ses_" + digest[:20]


def body(data: bytes, content_type: str = "") -> dict[str, Any]:
    """A body as a record holds it: text when it is UTF-8, base64 otherwise."""
    try:
        return {"content_type": content_type, "text": data.decode()}
    except UnicodeDecodeError:
        return {"content_type": content_type, "base64": base64.b64encode(data).decode()}


def body_bytes(held: Mapping[str, Any]) -> bytes:
    if "base64" in held:
        return base64.b64decode(held["base64"])
    return str(held.get("text", "")).encode()


@dataclass(slots=True)
class Tape:
    """A reply as it was sent to the caller, chunk by chunk with milliseconds since the reply
    began, up to `limit` bytes (past it the record says `truncated`)."""

    limit: int
    content_type: str = ""
    streamed: bool = False
    started: float = 0.0
    chunks: list[tuple[float, bytes]] = field(default_factory=list)
    size: int = 0
    truncated: bool = False

    def add(self, moment: float, chunk: bytes) -> None:
        if not chunk:
            return
        if not self.chunks and not self.started:
            self.started = moment
        if self.size + len(chunk) > self.limit:
            self.truncated = True
            return
        self.size += len(chunk)
        self.chunks.append((round((moment - self.started) * 1000, 3), chunk))

    def content(self) -> dict[str, Any]:
        data = b"".join(chunk for _, chunk in self.chunks)
        held = body(data, self.content_type)
        if self.streamed and "text" in held:
            held["chunks"] = [[at, chunk.decode(errors="replace")] for at, chunk in self.chunks]
            del held["text"]
        if self.truncated:
            held["truncated"] = True
        return held


def call(
    *,
    request_id: str,
    session: str,
    subject: str,
    user: str,
    groups: Iterable[str],
    via: str,
    credential: str | None,
    connection: str,
    method: str,
    target: str,
    policy: str | None,
    policy_version: str,
    reasons: Sequence[str],
    region: str | None,
    masked: Mapping[str, int] | None,
    request: dict[str, Any] | None,
    review: dict[str, Any] | None = None,
) -> Record:
    record: Record = {
        "kind": "call",
        "request_id": request_id,
        "session": session,
        "session_key": session_key(subject, session),
        "subject": subject,
        "user": user,
        "groups": sorted(groups),
        "via": via,
        "credential": credential,
        "connection": connection,
        "method": method,
        "target": target,
        "policy": policy,
        "policy_version": policy_version,
        "decision": "allow",
        "reasons": list(reasons),
        "region": region,
        "review": review,
        "masked": dict(masked) if masked else None,
    }
    if request is not None:
        record["request"] = request
    return record


def reply(
    *,
    request_id: str,
    status: int,
    decision: str,
    code: str | None,
    region: str | None,
    evidence: str | None,
    masked: Mapping[str, int] | None,
    bytes_in: int,
    bytes_out: int,
    latency_ms: float,
    content: dict[str, Any] | None,
) -> Record:
    record: Record = {
        "kind": "reply",
        "request_id": request_id,
        "status": status,
        "decision": decision,
        "code": code,
        "region": region,
        "evidence": evidence,
        "masked": dict(masked) if masked else None,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "latency_ms": round(latency_ms, 3),
    }
    if content is not None:
        record["reply"] = content
    return record


def refused(
    *,
    request_id: str,
    session: str,
    subject: str | None,
    user: str | None,
    connection: str | None,
    policy: str | None,
    policy_version: str,
    code: str,
    message: str,
    status: int,
) -> Record:
    return {
        "kind": "refused",
        "request_id": request_id,
        "session": session,
        "session_key": session_key(subject, session),
        "subject": subject,
        "user": user,
        "connection": connection,
        "policy": policy,
        "policy_version": policy_version,
        "decision": "deny" if status < 500 else "error",
        "code": code,
        "message": message,
        "status": status,
    }


def index_row(
    log: str, position: int, record: Record, at: datetime | None = None
) -> tuple[str, dict[str, Any]] | None:
    """("add" | "finish", columns) for the session index, or None for other records; `at` is
    the record's time when the caller has it (else read from the record)."""
    kind = record.get("kind")
    if kind in ("call", "refused"):
        return "add", {
            "request_id": record["request_id"],
            "session_key": record["session_key"],
            "session": record["session"],
            "at": at or parse_time(record["at"]),
            "subject": record.get("subject"),
            "user": record.get("user"),
            "connection": record.get("connection"),
            "policy": record.get("policy"),
            "decision": record.get("decision", "allow"),
            "code": record.get("code"),
            "region": record.get("region"),
            "status": record.get("status", 0),
            "bytes_in": 0,
            "bytes_out": 0,
            "masked": record.get("masked"),
            "log": log,
            "first_index": position,
            "last_index": position,
        }
    if kind == "reply":
        return "finish", {
            "request_id": record["request_id"],
            "decision": record.get("decision", "allow"),
            "code": record.get("code"),
            "region": record.get("region"),
            "status": record.get("status", 0),
            "bytes_in": record.get("bytes_in", 0),
            "bytes_out": record.get("bytes_out", 0),
            "masked": record.get("masked"),
            "last_index": position,
        }
    return None
