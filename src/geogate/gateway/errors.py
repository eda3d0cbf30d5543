"""Refusals: the SPEC §3 codes, their HTTP statuses, and how a refusal is put on the wire."""

from __future__ import annotations

import json

from geogate.protocols import ProtocolAdapter

STATUS: dict[str, int] = {
    "unauthenticated": 401,
    "identity_disabled": 401,
    "unknown_connection": 404,
    "connection_not_allowed": 403,
    "region_not_allowed": 403,
    "region_unverified": 403,
    "data_blocked": 403,
    "approval_required": 403,
    "approval_denied": 403,
    "approval_expired": 403,
    "bad_request": 400,
    "body_too_large": 413,
    "too_many_reviews": 429,
    "upstream_error": 502,
    "agent_unavailable": 503,
    "identity_unavailable": 503,
    "recording_unavailable": 503,
    "upstream_timeout": 504,
}


class Refusal(Exception):
    """A call the gateway will not (or could not) complete; becomes an error response."""

    def __init__(self, code: str, message: str, **details: object) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    @property
    def status(self) -> int:
        return STATUS[self.code]


def refusal_response(
    refusal: Refusal, adapter: ProtocolAdapter, request_id: str
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, headers and body shaped so the connection's own SDK raises a readable error."""
    body = adapter.error_body(refusal.code, refusal.message, request_id, refusal.details)
    rid = request_id.encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-geogate-request-id", rid),
        (b"x-geogate-error", refusal.code.encode()),
        (adapter.request_id_header, rid),
        *adapter.error_headers(refusal.code),
    ]
    if refusal.status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="geogate"'))
    return refusal.status, headers, body


def plain_error(code: str, message: str) -> bytes:
    """For requests outside the data path, where no connection decides the shape."""
    return json.dumps({"error": {"type": "geogate", "code": code, "message": message}}).encode()
