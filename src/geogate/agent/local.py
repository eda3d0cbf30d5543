"""The in-process executor: a pooled aiohttp client that sends exactly what the gateway built.

It resolves target host names itself and checks every answer against the connection's region
before a socket is opened (`DestinationCheck`); aiohttp then connects to exactly those checked
addresses, with TLS still verified against the host name, so a DNS answer that changes later
(rebinding) is checked again and cannot divert the call. Each region has its own pool, so a
pooled connection is only ever reused for the region it was proven for.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import socket
import ssl
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from functools import cache

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.connector import Connection
from yarl import URL

from geogate.agent.executor import UpstreamError, UpstreamRequest
from geogate.residency import DestinationCheck, Evidence, RegionUnverified

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Headers aiohttp would otherwise add on its own: the target must see what the caller sent,
# and an Accept-Encoding the caller never asked for would hand it a compressed body.
_NO_AUTO_HEADERS = frozenset({"User-Agent", "Accept", "Accept-Encoding", "Content-Type"})


class StaticResolver(AbstractResolver):
    """`gateway.resolve` answers first (like curl --resolve), the system resolver otherwise."""

    def __init__(self, answers: Mapping[str, Sequence[IpAddress]]) -> None:
        self._answers = {host.lower().rstrip("."): list(addrs) for host, addrs in answers.items()}
        self._fallback = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        addresses = self._answers.get(host.lower().rstrip("."))
        if addresses is None:
            return await self._fallback.resolve(host, port, family)
        return [
            ResolveResult(
                hostname=host,
                host=str(address),
                port=port,
                family=socket.AF_INET6 if address.version == 6 else socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
            for address in addresses
        ]

    async def close(self) -> None:
        await self._fallback.close()


class VerifyingResolver(AbstractResolver):
    """Resolves through `inner`, then proves every answer is in `region` (or refuses them all)."""

    def __init__(self, inner: AbstractResolver, region: str, check: DestinationCheck) -> None:
        self._inner = inner
        self._region = region
        self._check = check
        self.evidence: dict[str, Evidence] = {}
        """Evidence per address handed to aiohttp; looked up by the address it connected to."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        for answer in answers:
            address = answer["host"]
            self.evidence[address] = self._check.verify(
                self._region, host, ipaddress.ip_address(address)
            )
        return answers

    def check_literal(self, host: str) -> None:
        """A URL naming an IP address skips the resolver: prove that address here instead."""
        if host in self.evidence:
            return
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return  # a name: the resolver checks its answers
        self.evidence[str(address)] = self._check.verify(self._region, host, address)

    async def close(self) -> None:
        await self._inner.close()


@cache
def _tls_context(ca_file: str | None) -> ssl.SSLContext:
    """System trust plus the connection's own CA; verification is never turned off."""
    context = ssl.create_default_context()
    if ca_file is not None:
        context.load_verify_locations(cafile=ca_file)
    return context


async def _then(chunks: AsyncIterable[bytes], done: Callable[[], None]) -> AsyncIterator[bytes]:
    """Pass `chunks` on, then call `done`."""
    async for chunk in chunks:
        yield chunk
    done()


@cache
def _connect_timeout(seconds: float) -> aiohttp.ClientTimeout:
    """aiohttp's own limit covers connecting only; first byte and idle are ours."""
    return aiohttp.ClientTimeout(total=None, sock_connect=seconds, sock_read=None)


class _Response:
    """A response whose body read is cut off once the target falls silent for `idle` seconds.

    One timer per response checks the time of the last read, instead of a timeout per chunk:
    a stream of many small SSE events pays a clock read per chunk, not a timer.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        idle_timeout: float,
        evidence: Evidence | None,
    ) -> None:
        self._response = response
        self.evidence = evidence
        self._idle_timeout = idle_timeout
        self._loop = asyncio.get_running_loop()
        self._waiting_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timed_out = False
        self.status = response.status
        self.headers = list(response.raw_headers)

    def _check_idle(self) -> None:
        since = self._waiting_since
        if since is None:  # not waiting for the target right now (the caller is slow)
            self._timer = self._loop.call_later(self._idle_timeout, self._check_idle)
            return
        left = since + self._idle_timeout - self._loop.time()
        if left > 0:
            self._timer = self._loop.call_later(left, self._check_idle)
            return
        self._timed_out = True
        self._response.close()

    async def body(self) -> AsyncIterator[bytes]:
        content = self._response.content
        self._timer = self._loop.call_later(self._idle_timeout, self._check_idle)
        try:
            while True:
                self._waiting_since = self._loop.time()
                try:
                    chunk = await content.readany()
                except aiohttp.ClientError as exc:
                    if self._timed_out:
                        raise self._idle_error() from None
                    raise UpstreamError(
                        "upstream_error",
                        f"The target broke off its response ({type(exc).__name__}); "
                        f"the response is incomplete.",
                    ) from exc
                self._waiting_since = None
                if self._timed_out:
                    raise self._idle_error()
                if not chunk:
                    return
                yield chunk
        finally:
            if self._timer is not None:
                self._timer.cancel()

    def _idle_error(self) -> UpstreamError:
        return UpstreamError(
            "upstream_timeout",
            f"The target sent nothing for {self._idle_timeout:g}s in the middle of "
            f"its response; the response was cut off.",
        )

    def close(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class LocalExecutor:
    """Sends from this process through pooled client sessions, one per target region."""

    def __init__(
        self,
        resolve: Mapping[str, Sequence[IpAddress]] | None = None,
        check: DestinationCheck | None = None,
    ) -> None:
        """`resolve` answers first for its names (like curl --resolve); `check` proves regions."""
        self._answers = dict(resolve or {})
        self._check = check
        self._pools: dict[str | None, tuple[aiohttp.ClientSession, VerifyingResolver | None]] = {}

    def _pool(self, region: str | None) -> tuple[aiohttp.ClientSession, VerifyingResolver | None]:
        pool = self._pools.get(region)
        if pool is None:
            resolver: AbstractResolver = StaticResolver(self._answers)
            verifying = None
            if region is not None and self._check is not None:
                resolver = verifying = VerifyingResolver(resolver, region, self._check)
            connector = aiohttp.TCPConnector(
                limit=1024,
                limit_per_host=0,
                keepalive_timeout=60,
                ttl_dns_cache=10,
                resolver=resolver,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                trust_env=False,  # proxy variables must never divert a call
                auto_decompress=False,  # bytes pass through as the target encoded them
                skip_auto_headers=_NO_AUTO_HEADERS,
                cookie_jar=aiohttp.DummyCookieJar(),  # one caller's cookies never reach another
                timeout=aiohttp.ClientTimeout(total=None),
                request_class=_PeerRecordingRequest,
            )
            pool = self._pools[region] = (session, verifying)
        return pool

    async def send(self, request: UpstreamRequest) -> _Response:
        timeouts = request.timeouts
        session, verifying = self._pool(request.region)
        url = URL(request.url, encoded=True)
        if verifying is not None:
            try:
                verifying.check_literal(url.host or "")
            except RegionUnverified as exc:
                raise _unverified(request, exc) from None
        try:
            tls = _tls_context(request.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamError(
                "upstream_error",
                f"The CA file of connection {request.connection!r} cannot be used ({exc}); "
                f"the call was not sent.",
                sent=False,
            ) from exc
        try:
            # The first-byte clock starts once the target has the whole request: a caller's
            # slow upload is not the target failing to answer.
            async with asyncio.timeout(None) as deadline:
                loop = asyncio.get_running_loop()

                def start_clock() -> None:
                    deadline.reschedule(loop.time() + timeouts.first_byte)

                if isinstance(request.body, bytes):
                    start_clock()
                    data: bytes | AsyncIterable[bytes] = request.body
                else:
                    data = _then(request.body, start_clock)
                response = await session.request(
                    request.method,
                    url,
                    headers=request.headers,
                    data=data,
                    allow_redirects=False,
                    timeout=_connect_timeout(timeouts.connect),
                    ssl=tls,
                )
        except TimeoutError as exc:
            # aiohttp's connect timeout is also a TimeoutError: say which limit ran out.
            limit, what = (
                (timeouts.connect, "accept a connection")
                if isinstance(exc, aiohttp.ServerTimeoutError)
                else (timeouts.first_byte, "answer")
            )
            raise UpstreamError(
                "upstream_timeout",
                f"The target of connection {request.connection!r} did not {what} within "
                f"{limit:g}s; try again later or raise the connection's timeout.",
                sent=not isinstance(exc, aiohttp.ServerTimeoutError),
            ) from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise UpstreamError(
                "upstream_error",
                f"The TLS certificate of connection {request.connection!r}'s target could not "
                f"be verified ({exc.certificate_error}); the call was not sent.",
                sent=False,
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, RegionUnverified):
                raise _unverified(request, exc.os_error) from None
            raise UpstreamError(
                "upstream_error",
                f"Could not connect to the target of connection {request.connection!r} "
                f"({exc.os_error.strerror or type(exc.os_error).__name__}).",
                sent=False,
            ) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                "upstream_error",
                f"The target of connection {request.connection!r} failed before answering "
                f"({type(exc).__name__}).",
            ) from exc
        return _Response(response, timeouts.idle, _evidence(response, verifying))

    async def close(self) -> None:
        for session, _ in self._pools.values():
            await session.close()


def _unverified(request: UpstreamRequest, exc: RegionUnverified) -> UpstreamError:
    return UpstreamError(
        "region_unverified",
        f"The target of connection {request.connection!r} cannot be proven to be in "
        f"{request.region}: {exc.message}; the call was not sent.",
        sent=False,
    )


class _PeerRecordingRequest(aiohttp.ClientRequest):
    """Notes which address the request went to, and its certificate, while the socket is open.

    A small response can be complete, and its socket pooled or closed, by the time the headers
    are handed over; the request sees the live connection, so it is asked instead.
    """

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        peer = _peer(conn)
        response = await super().send(conn)
        _PEERS[response] = peer
        return response


_Peer = tuple[str | None, str | None]
"""(address connected to, SHA-256 of the TLS certificate it presented)."""
_PEERS: weakref.WeakKeyDictionary[aiohttp.ClientResponse, _Peer] = weakref.WeakKeyDictionary()
_CONNECTION_PEERS: weakref.WeakKeyDictionary[object, _Peer] = weakref.WeakKeyDictionary()
"""Keyed by the connection's protocol object, which lives as long as the socket (uvloop's
transports cannot be weakly referenced)."""


def _peer(conn: Connection) -> _Peer:
    """Read once per connection: a pooled connection serves many calls."""
    protocol, transport = conn.protocol, conn.transport
    if protocol is None or transport is None:
        return None, None
    known = _CONNECTION_PEERS.get(protocol)
    if known is None:
        peer = transport.get_extra_info("peername")
        tls = transport.get_extra_info("ssl_object")
        certificate = tls.getpeercert(binary_form=True) if tls is not None else None
        known = _CONNECTION_PEERS[protocol] = (
            peer[0] if peer else None,
            hashlib.sha256(certificate).hexdigest() if certificate else None,
        )
    return known


def _evidence(
    response: aiohttp.ClientResponse, verifying: VerifyingResolver | None
) -> Evidence | None:
    """The evidence for the address this response came from, with the certificate's hash."""
    if verifying is None:
        return None
    address, certificate = _PEERS.pop(response, (None, None))
    evidence = verifying.evidence.get(address) if address is not None else None
    return None if evidence is None else evidence.with_certificate(certificate)
