"""The executor interface: one upstream call in, a streamed response out."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from geogate.config import Timeouts
from geogate.residency import Evidence

UpstreamErrorCode = Literal["upstream_error", "upstream_timeout", "region_unverified"]


class UpstreamError(Exception):
    """The target failed, reset, timed out or could not be proven to be in its region.

    `code` is the SPEC §3 code to answer with.
    """

    def __init__(self, code: UpstreamErrorCode, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.code: UpstreamErrorCode = code
        self.message = message
        self.sent = sent
        """False when nothing reached the target, so another target may be tried."""


@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    connection: str
    method: str
    url: str
    """Absolute URL, already checked to stay under the connection's base URL."""
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterable[bytes]
    timeouts: Timeouts
    ca_file: str | None = None
    region: str | None = None
    """The region every address of the target must be proven to be in; None: not checked."""


class UpstreamResponse(Protocol):
    status: int
    headers: list[tuple[bytes, bytes]]
    """Raw response headers as received (hop-by-hop ones included; the gateway filters)."""
    evidence: Evidence | None
    """Why the response is known to come from the request's region (None when not checked)."""

    def body(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises `UpstreamError` on a reset or an idle timeout."""
        ...

    def close(self) -> None:
        """Release the upstream connection (or drop it if the body was not read to the end)."""
        ...


class Executor(Protocol):
    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send the request; return once the response headers are in (or raise UpstreamError)."""
        ...

    async def close(self) -> None: ...
