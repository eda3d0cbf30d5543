"""The data path, `ANY /c/{connection}/{path}`: one call, in the order DESIGN.md gives.

    authenticate -> resolve connection -> read request -> decide -> mask request
        -> review gate -> write-ahead record -> forward -> stream back (masking the reply)
        -> close record

Every step either hands the next one what it needs or raises a `Refusal`, which becomes an
error in the shape the connection's SDK understands. The review gate comes after masking,
not before as in DESIGN.md's sketch: an approval is bound to the body as it will leave
(masked), and `on_detect: review` needs masking's findings to know whether to ask at all.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from starlette.types import Message, Receive, Scope, Send

from geogate.agent import UpstreamError, UpstreamRequest, UpstreamResponse
from geogate.config import Connection, Review, Target
from geogate.dlp import MaskingError, TextTransform
from geogate.dlp.plan import CallMasking
from geogate.gateway import reviewing
from geogate.gateway.access import base_url
from geogate.gateway.errors import Refusal, refusal_response
from geogate.gateway.headers import Headers, caller_token, downstream_headers, upstream_headers
from geogate.gateway.observe import AccessSink, CallLog
from geogate.gateway.paths import PathError, split_connection, target_url
from geogate.gateway.runtime import Runtime
from geogate.identity import AuthError, Principal
from geogate.policy import Decision, RequestFacts
from geogate.protocols import (
    BodyRewriter,
    ProtocolAdapter,
    RequestBodyError,
    TokenError,
    adapter_for,
)
from geogate.recording import RecordingUnavailable, calls
from geogate.residency import Evidence
from geogate.reviews import CallerLeft, CallUnderReview, ReviewRefusal

_log = logging.getLogger("geogate.datapath")
P = ParamSpec("P")
T = TypeVar("T")
_SESSION_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_FALLBACK_ADAPTER = adapter_for("http")


class _BodyTooLarge(Exception):
    """Raised inside a streamed request body once it passes the connection's limit."""


@dataclass(slots=True)
class _RequestBody:
    """A buffered body (JSON APIs, small bodies) or a stream that counts as it goes."""

    content: bytes | AsyncIterator[bytes]
    facts: RequestFacts
    streamed: bool
    size: int
    """Bytes received so far (all of them once the target has the request)."""
    content_type: str = ""
    overflowed: bool = False
    complete: bool = True
    """Whether the caller's body is all read, after which `receive` only reports a disconnect."""


class DataPath:
    def __init__(self, runtime: Runtime, access_sink: AccessSink | None = None) -> None:
        self.runtime = runtime
        self.access_sink = access_sink
        self.content = runtime.config.gateway.recordings.content
        """What records keep of a call unless its policy says (`record:`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        request_id = "req_" + secrets.token_hex(10)
        log = CallLog(request_id=request_id, session_id=request_id, method=scope["method"])
        adapter = _FALLBACK_ADAPTER
        connection: Connection | None = None
        masking: CallMasking | None = None
        replies: _Replies | None = None
        """Set once the call's record is written: from then on, the reply is recorded."""
        refusal_message = ""
        try:
            name, tail = _connection_part(scope["raw_path"])
            log.connection = name
            connection = self.runtime.config.connections.get(name)
            if connection is not None:
                adapter = adapter_for(connection.type)
            headers: Headers = scope["headers"]
            principal = await self._authenticate(headers, log)
            log.subject, log.user = principal.subject, principal.user
            log.session_id = _session_id(headers, request_id)

            if connection is None:
                raise Refusal(
                    "unknown_connection",
                    f"There is no connection named {name!r}; check the base URL "
                    f"(/c/CONNECTION/...) against the connections in the policy file.",
                )
            target = (tail, scope["query_string"])
            deployments = self.runtime.targets[name]
            first_url = _target(deployments[0], *target)  # a bad path is refused before the body
            body = await _read_body(receive, headers, connection, adapter, name)

            facts = adapter.path_facts(tail, body.facts)
            decision = self.runtime.policy.decide(principal, name, facts)
            log.policy = decision.policy_name
            if not decision.allowed:
                assert decision.code is not None
                raise Refusal(decision.code, decision.message)
            if decision.set_fields:
                body.content = _with_fields(body.content, decision.set_fields)
            masking = self._masking(decision.policy_name, principal, log)
            unmasked = body.content
            if masking is not None and masking.request is not None:
                await _mask_request(body, adapter, masking.request, name, connection)
            review = None
            rule = decision.policy.review if decision.policy is not None else None
            if rule is not None:
                call = await self._under_review(
                    scope, headers, log, principal, decision, body, unmasked, adapter, masking
                )
                if call is not None:
                    review = await self._review(call, rule, scope, headers, receive)
            content = (decision.policy.record if decision.policy else None) or self.content
            await self._write_ahead(
                principal, decision, log, body, first_url, masking, content, review
            )
            replies = _Replies(masking, connection.max_body, _tape(content, connection))
            forwarded_at = time.perf_counter()
            upstream, used = await self._forward(
                scope,
                headers,
                name,
                connection,
                target,
                first_url,
                body,
                decision.targets,
                identity_encoding=masking is not None and masking.response is not None,
            )
            log.region = (
                decision.target_region if len(deployments) == 1 else deployments[used].region
            )
            log.decision, log.bytes_in = "allow", body.size
            await self._stream_back(
                upstream,
                log,
                adapter,
                receive if body.complete else None,
                send,
                forwarded_at - started,
                replies,
            )
        except Refusal as refusal:
            refusal_message = refusal.message
            log.decision = "error" if refusal.status >= 500 else "deny"
            log.code = refusal.code
            status, error_headers, payload = refusal_response(refusal, adapter, request_id)
            log.status = status
            if log.decision == "deny":
                self.runtime.trail.refused(log)
            await send({"type": "http.response.start", "status": status, "headers": error_headers})
            await send({"type": "http.response.body", "body": payload})
        finally:
            if masking is not None:
                log.masked = dict(masking.counts()) or None
            log.latency_ms = (time.perf_counter() - started) * 1000
            log.emit(connection is not None, self.access_sink)
            self._close_record(log, replies, refusal_message)

    async def _write_ahead(
        self,
        principal: Principal,
        decision: Decision,
        log: CallLog,
        body: _RequestBody,
        url: str,
        masking: CallMasking | None,
        content: str,
        review: dict[str, Any] | None,
    ) -> None:
        """The call's record, stored before anything leaves (or the call is refused)."""
        request = None
        if content == "masked":
            request = (
                calls.body(body.content, body.content_type)
                if isinstance(body.content, bytes)
                else {"content_type": body.content_type, "streamed": True}
            )
        record = calls.call(
            request_id=log.request_id,
            session=log.session_id,
            subject=principal.subject,
            user=principal.user,
            groups=principal.groups,
            via=principal.method,
            credential=principal.credential_id,
            connection=log.connection or "",
            method=log.method,
            target=url.partition("?")[0],
            policy=decision.policy_name,
            policy_version=self.runtime.policy.version,
            reasons=decision.reasons,
            region=decision.target_region,
            masked=dict(masking.counts()) if masking is not None else None,
            request=request,
            review=review,
        )
        try:
            await self.runtime.recorder.write_ahead(record)
        except RecordingUnavailable as exc:
            raise Refusal(
                "recording_unavailable",
                f"The call's audit record could not be stored ({exc}), so nothing was sent; "
                "try again once the recording store is writable.",
            ) from None

    async def _under_review(
        self,
        scope: Scope,
        headers: Headers,
        log: CallLog,
        principal: Principal,
        decision: Decision,
        body: _RequestBody,
        unmasked: bytes | AsyncIterator[bytes],
        adapter: ProtocolAdapter,
        masking: CallMasking | None,
    ) -> CallUnderReview | None:
        """The call as its review binds it, or None when its policy reviews only findings
        (`on_detect: review`) and there are none. With findings, the call would go as the
        caller sent it: that is what approvers are asked to let through."""
        assert decision.policy is not None and log.connection is not None
        found = None
        reason = f"policy {decision.policy.name!r} reviews every call"
        if masking is not None and masking.review and masking.request is not None:
            found = dict(masking.request.counts)
            if not found:
                return None
            masking.request.counts.clear()
            body.content = unmasked
            reason = f"the request contains {', '.join(sorted(found))}"
        await _buffer(body, log.connection, self.runtime.config.connections[log.connection])
        content = body.content
        assert isinstance(content, bytes)
        target = _addressed(scope)
        return CallUnderReview(
            request_id=log.request_id,
            principal=principal,
            connection=log.connection,
            policy=decision.policy.name,
            policy_version=self.runtime.policy.version,
            method=log.method,
            target=target,
            body=content,
            describe=lambda: reviewing.summary(  # only when a new review is requested
                method=log.method,
                target=target,
                body=content,
                content_type=body.content_type,
                adapter=adapter,
                facts=body.facts,
                headers=headers,
                masker=self.runtime.preview_masker(),
                reason=reason,
                found=found,
            ),
        )

    async def _review(
        self, call: CallUnderReview, rule: Review, scope: Scope, headers: Headers, receive: Receive
    ) -> dict[str, Any]:
        """Wait for, or refuse until, the approvals the policy asks for."""
        access_base = base_url(self.runtime, headers, scope.get("scheme", "http"))
        try:
            return await self.runtime.reviews.admit(
                call, rule, access_base, lambda: _wait_disconnect(receive)
            )
        except ReviewRefusal as refusal:
            raise Refusal(refusal.code, refusal.message, **refusal.details) from None
        except CallerLeft:
            raise Refusal(
                "bad_request", "The client disconnected while its call was held for review."
            ) from None

    def _close_record(self, log: CallLog, replies: _Replies | None, message: str) -> None:
        """The reply of a recorded call, or the refusal of one that was never forwarded."""
        recorder = self.runtime.recorder
        if replies is not None:
            tape = replies.tape
            recorder.append(
                calls.reply(
                    request_id=log.request_id,
                    status=log.status,
                    decision=log.decision,
                    code=log.code,
                    region=log.region,
                    evidence=log.evidence,
                    masked=log.masked,
                    bytes_in=log.bytes_in,
                    bytes_out=log.bytes_out,
                    latency_ms=log.latency_ms,
                    content=None if tape is None else tape.content(),
                )
            )
        elif log.code is not None:
            recorder.append(
                calls.refused(
                    request_id=log.request_id,
                    session=log.session_id,
                    subject=log.subject,
                    user=log.user,
                    connection=log.connection,
                    policy=log.policy,
                    policy_version=self.runtime.policy.version,
                    code=log.code,
                    message=message,
                    status=log.status,
                )
            )

    def _masking(
        self, policy: str | None, principal: Principal, log: CallLog
    ) -> CallMasking | None:
        """This call's maskers; `tokenize` shares a vault across a session's calls."""
        plan = self.runtime.masking.get(policy) if policy is not None else None
        if plan is None:
            return None
        vault = None
        if plan.tokenizes and log.session_id != log.request_id:
            vault = self.runtime.vaults.session(f"{principal.subject}\n{log.session_id}")
        return plan.start(vault)

    async def _authenticate(self, headers: Headers, log: CallLog) -> Principal:
        token = caller_token(headers)
        if not token:
            raise Refusal(
                "unauthenticated",
                "No credentials were sent; pass a GeoGate API key (`geogate keys create`) as "
                "`Authorization: Bearer gk_...` or `x-api-key: gk_...`.",
            )
        try:
            return await self.runtime.authenticator.authenticate(token)
        except AuthError as exc:
            log.user = exc.user  # a deactivated user's attempts are theirs in the audit trail
            raise Refusal(exc.code, exc.message) from None

    async def _forward(
        self,
        scope: Scope,
        headers: Headers,
        name: str,
        connection: Connection,
        target: tuple[bytes, bytes],
        first_url: str,
        body: _RequestBody,
        allowed: tuple[int, ...],
        *,
        identity_encoding: bool,
    ) -> tuple[UpstreamResponse, int]:
        """Send to the first allowed target that answers; returns the response and its index.

        Another allowed target is tried only when nothing reached the last one (it could not
        be connected to, or proven to be in its region) and the body can be sent again.
        When every allowed target fails, the call fails: it never goes to another region.
        """
        router = self.runtime.router
        order = router.order(name, allowed)
        can_retry = len(order) > 1 and isinstance(body.content, bytes)
        deployments = self.runtime.targets[name]
        failures: list[str] = []
        adapter = adapter_for(connection.type)
        for index in order:
            deployment = deployments[index]
            url = first_url if index == 0 else _target(deployment, *target)
            injected = self.runtime.credentials[name][index]
            if identity_encoding:  # a reply to be masked must come uncompressed
                injected = [*injected, ("Accept-Encoding", "identity")]
            sent_headers = upstream_headers(
                headers,
                injected,
                keep_length=body.streamed,
                also_dropped=adapter.dropped_request_headers,
            )
            source = self.runtime.tokens_for.get(name)
            if source is not None:
                try:
                    sent_headers.append(("Authorization", f"Bearer {await source.token()}"))
                except TokenError as exc:
                    raise Refusal(
                        "upstream_error",
                        f"No access token for connection {name!r}: {exc}; nothing was sent.",
                    ) from None
            signer = self.runtime.signers[name][index]
            if signer is not None:
                if not isinstance(body.content, bytes):
                    raise Refusal("bad_request", "A signed request needs its whole body at once.")
                sent_headers += signer.sign(scope["method"], url, sent_headers, body.content)
            request = UpstreamRequest(
                connection=name,
                method=scope["method"],
                url=url,
                headers=sent_headers,
                body=body.content,
                timeouts=connection.timeout,
                ca_file=deployment.tls.ca_file if deployment.tls is not None else None,
                region=deployment.region,
            )
            try:
                upstream = await self.runtime.executor.send(request)
            except UpstreamError as exc:
                if body.overflowed:
                    raise _too_large(name, connection) from None
                if not can_retry or exc.sent:
                    raise Refusal(exc.code, exc.message) from None
                router.failed(name, index)
                failures.append(f"{deployment.url} ({deployment.region}): {exc.message}")
                continue
            router.worked(name, index)
            return upstream, index
        raise Refusal(
            "region_not_allowed",
            f"No target of connection {name!r} inside the policy's regions could be used "
            f"({'; '.join(failures)}); targets in other regions are never used.",
        )

    async def _stream_back(
        self,
        upstream: UpstreamResponse,
        log: CallLog,
        adapter: ProtocolAdapter,
        receive: Receive | None,
        send: Send,
        overhead: float,
        replies: _Replies,
    ) -> None:
        """Send the target's response as it arrives; stop the target if the caller leaves.

        `receive` is None while the caller's body is still being passed on (a target may
        answer early): then the body stream owns `receive`, and notices a disconnect itself.

        `overhead` is the gateway's time before forwarding; the time from the target's
        headers to ours is added to it to give the call's added latency.

        A reply to be masked is masked event by event when it is a stream, and whole
        otherwise (so a refusal can still be an ordinary error response).
        """
        answered_at = time.perf_counter()
        try:
            headers = downstream_headers(upstream.headers)
            streamed, is_sse, content_type = True, False, ""
            for name, value in headers:
                if name == b"content-length":
                    streamed = False
                elif name == b"content-type":
                    content_type = value.decode("latin-1").lower()
                    is_sse = content_type.startswith("text/event-stream")
            rewriter: BodyRewriter | None = None
            whole: bytes | None = None
            raw: bytes | None = None
            transform = replies.masking.response if replies.masking is not None else None
            if transform is not None:
                _check_identity(headers)
                raw = None if is_sse else await _read_reply(upstream, log, replies.limit)
                try:
                    if raw is None:
                        rewriter = _guarded(adapter.response_stream, content_type, transform)
                    else:
                        whole = _guarded(adapter.mask_response, raw, content_type, transform)
                except MaskingError as exc:
                    if upstream.status < 400:
                        raise Refusal(exc.code, str(exc)) from None
                    raise Refusal(
                        "upstream_error",
                        f"The target answered HTTP {upstream.status} with a body the gateway "
                        f"cannot mask ({exc}); it was not passed on.",
                    ) from None
                headers = [(n, v) for n, v in headers if n != b"content-length"]
                if whole is not None:
                    headers.append((b"content-length", str(len(whole)).encode()))
                    streamed = False
            tape = replies.tape
            if tape is not None:
                tape.content_type, tape.streamed = content_type, streamed
                if whole is not None:
                    tape.add(time.perf_counter(), _recorded_whole(replies, adapter, raw, whole))
            headers += [
                (b"x-geogate-request-id", log.request_id.encode()),
                (b"x-geogate-session-id", log.session_id.encode()),
            ]
            evidence = upstream.evidence
            if evidence is not None:
                log.evidence = _region_header(log.region or evidence.region, evidence)
                log.region = log.evidence.partition(";")[0]
                headers.append((b"x-geogate-region", log.evidence.encode()))
            elif log.region is not None:  # a target whose region was not checked says so
                headers.append((b"x-geogate-region", f"{log.region}; by=declared".encode()))
            masked = replies.masking.header() if replies.masking is not None else None
            if masked is not None:
                headers.append((b"x-geogate-masked", masked.encode()))
            log.status = upstream.status
            await send(
                {"type": "http.response.start", "status": upstream.status, "headers": headers}
            )
            log.added_ms = (overhead + time.perf_counter() - answered_at) * 1000
            if whole is not None:
                await send({"type": "http.response.body", "body": whole, "more_body": False})
                return
            recorder = None
            if tape is not None and replies.restores:
                recorder = _recorded_stream(replies, adapter, content_type)
            pump = _pump(upstream, log, adapter, send, is_sse, rewriter, tape, recorder)
            if streamed and receive is not None:
                await _until_disconnect(pump, receive)
            else:
                await pump
        finally:
            upstream.close()


@dataclass(slots=True)
class _Replies:
    """How replies are treated: masked (and restored), or passed on as they are; recorded."""

    masking: CallMasking | None
    limit: int
    """The most of a non-streamed reply the gateway holds to mask it."""
    tape: calls.Tape | None
    """Where the reply is recorded (None: `record: metadata`)."""

    @property
    def restores(self) -> bool:
        """Whether the caller gets originals back, so the record needs its own masked copy."""
        return self.masking is not None and self.masking.restores


def _tape(content: str, connection: Connection) -> calls.Tape | None:
    return calls.Tape(connection.max_body) if content == "masked" else None


def _check_identity(headers: Headers) -> None:
    for name, value in headers:
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            raise Refusal(
                "data_blocked",
                f"The target sent a {value.decode('latin-1')}-compressed reply although the "
                "gateway asked for an uncompressed one, so it cannot be masked; it was not "
                "passed on.",
            )


async def _read_reply(upstream: UpstreamResponse, log: CallLog, limit: int) -> bytes:
    chunks: list[bytes] = []
    try:
        async for chunk in upstream.body():
            log.bytes_out += len(chunk)
            if log.bytes_out > limit:
                raise Refusal(
                    "data_blocked",
                    f"The reply is larger than {limit} bytes, the most the gateway holds to "
                    "mask a reply that is not streamed; ask for less, or ask for a stream.",
                )
            chunks.append(chunk)
    except UpstreamError as exc:
        raise Refusal(exc.code, exc.message) from None
    return b"".join(chunks)


async def _buffer(body: _RequestBody, name: str, connection: Connection) -> None:
    """Read a streamed body whole (masking and reviews need all of it)."""
    if isinstance(body.content, bytes):
        return
    chunks: list[bytes] = []
    try:
        async for chunk in body.content:
            chunks.append(chunk)
    except _BodyTooLarge:
        raise _too_large(name, connection) from None
    except ConnectionResetError:
        raise Refusal("bad_request", "The client disconnected while sending the body.") from None
    body.content, body.streamed = b"".join(chunks), False


async def _mask_request(
    body: _RequestBody,
    adapter: ProtocolAdapter,
    masker: TextTransform,
    name: str,
    connection: Connection,
) -> None:
    """Replace the body with its masked form; masking needs all of it, so read it all."""
    await _buffer(body, name, connection)
    assert isinstance(body.content, bytes)
    try:
        body.content = _guarded(adapter.mask_request, body.content, body.content_type, masker)
    except MaskingError as exc:
        raise Refusal(exc.code, str(exc)) from None


def _guarded(step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a masking step, turning any failure in it into a MaskingError: fail closed."""
    try:
        return step(*args, **kwargs)
    except MaskingError:
        raise
    except Exception as exc:
        _log.exception("masking failed")
        raise MaskingError(
            f"Masking failed ({type(exc).__name__}); the data was not passed on unmasked. "
            "The gateway log has the details."
        ) from exc


def _recorded_whole(
    replies: _Replies, adapter: ProtocolAdapter, raw: bytes | None, whole: bytes
) -> bytes:
    """The reply as the record keeps it: as sent, unless the caller got originals back."""
    if not replies.restores or raw is None:
        return whole
    assert replies.masking is not None and replies.tape is not None
    transform = replies.masking.recorded
    if transform is None:
        return raw  # nothing masked in replies: the target's own reply, placeholders and all
    return _guarded(adapter.mask_response, raw, replies.tape.content_type, transform)


def _recorded_stream(
    replies: _Replies, adapter: ProtocolAdapter, content_type: str
) -> BodyRewriter | None:
    assert replies.masking is not None
    transform = replies.masking.recorded
    return None if transform is None else adapter.response_stream(content_type, transform)


async def _first_event_apart(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The stream with its first event on its own. A reply often reaches the gateway as one
    burst of events (all of them are in the socket by the time it reads); masking the first
    apart sends it on without waiting for the rest to be masked. The masked output is the
    same however the stream is cut."""
    first = True
    async for chunk in chunks:
        if first:
            first = False
            end = chunk.find(b"\n\n") + 2
            if 1 < end < len(chunk):
                yield chunk[:end]
                chunk = chunk[end:]
        yield chunk


async def _pump(
    upstream: UpstreamResponse,
    log: CallLog,
    adapter: ProtocolAdapter,
    send: Send,
    is_sse: bool,
    rewriter: BodyRewriter | None,
    tape: calls.Tape | None,
    recorder: BodyRewriter | None,
) -> None:
    """Copy the body (masked, when a rewriter is given); a target failing mid-stream, or a
    stream that cannot be masked, becomes an SSE error event or a cut-off.

    The tape records each chunk as sent, at its time; when the caller gets originals back
    (`tokenize`), `recorder` gives the tape the reply as masked instead."""
    at_event_boundary = True
    separate = tape is not None and recorder is not None
    chunks = _first_event_apart(upstream.body()) if rewriter and is_sse else upstream.body()
    try:
        async for chunk in chunks:
            log.bytes_out += len(chunk)
            if separate:
                assert tape is not None and recorder is not None
                tape.add(time.perf_counter(), _guarded(recorder.feed, chunk))
            if rewriter is not None:
                chunk = _guarded(rewriter.feed, chunk)
                if not chunk:
                    continue
            if tape is not None and not separate:
                tape.add(time.perf_counter(), chunk)
            at_event_boundary = chunk.endswith(b"\n\n")
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        if separate:
            assert tape is not None and recorder is not None
            tape.add(time.perf_counter(), _guarded(recorder.finish))
        if rewriter is not None:
            rest = _guarded(rewriter.finish)
            if rest:
                if tape is not None and not separate:
                    tape.add(time.perf_counter(), rest)
                await send({"type": "http.response.body", "body": rest, "more_body": True})
    except (UpstreamError, MaskingError) as exc:
        log.decision, log.code = "error", exc.code
        if not (is_sse and at_event_boundary):
            return  # leaving the response incomplete tells the caller it was cut off
        event = adapter.stream_error_event(exc.code, str(exc), log.request_id)
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _until_disconnect(pump: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run the pump, cancelling it (and so the upstream read) when the caller disconnects."""
    pump_task = asyncio.ensure_future(pump)
    watch_task = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait((pump_task, watch_task), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch_task.cancel()
        if not pump_task.done():
            pump_task.cancel()
    if pump_task.done() and not pump_task.cancelled():
        pump_task.result()


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message: Message = await receive()
        if message["type"] == "http.disconnect":
            return


def _connection_part(raw_path: bytes) -> tuple[str, bytes]:
    try:
        return split_connection(raw_path)
    except PathError as exc:
        raise Refusal("bad_request", str(exc)) from None


def _target(deployment: Target, tail: bytes, query: bytes) -> str:
    try:
        return target_url(deployment.url, tail, query)
    except PathError as exc:
        raise Refusal("bad_request", str(exc)) from None


def _addressed(scope: Scope) -> str:
    """The path and query the caller sent, as a review binds and shows them."""
    query = scope["query_string"]
    path: bytes = scope["raw_path"] + (b"?" + query if query else b"")
    return path.decode("latin-1")


def _session_id(headers: Headers, default: str) -> str:
    for name, value in headers:
        if name == b"x-geogate-session":
            session = value.decode("latin-1")
            if not _SESSION_ID.match(session):
                raise Refusal(
                    "bad_request",
                    "x-geogate-session must be 1-128 characters of letters, digits and . _ : -",
                )
            return session
    return default


def _too_large(name: str, connection: Connection) -> Refusal:
    return Refusal(
        "body_too_large",
        f"The request body is larger than the {connection.max_body} bytes connection "
        f"{name!r} accepts; send less data per call.",
        max_body=connection.max_body,
    )


async def _read_body(
    receive: Receive,
    headers: Headers,
    connection: Connection,
    adapter: ProtocolAdapter,
    name: str,
) -> _RequestBody:
    """Buffer JSON API bodies (to check them and read facts); stream other large bodies."""
    limit = connection.max_body
    content_type = ""
    for header, value in headers:
        if header == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise Refusal("bad_request", "Content-Length is not a number.") from None
            if declared > limit:
                raise _too_large(name, connection)
        elif header == b"content-type":
            content_type = value.decode("latin-1").lower()

    message = await receive()
    first = message.get("body", b"")
    if len(first) > limit:
        raise _too_large(name, connection)
    if message.get("more_body", False) and not adapter.json_body:
        return _streamed_body(receive, first, limit, content_type)

    chunks = [first]
    size = len(first)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(name, connection)
        chunks.append(chunk)
    if message["type"] == "http.disconnect":
        raise Refusal("bad_request", "The client disconnected while sending the body.")
    body = b"".join(chunks)
    if not adapter.json_body:
        return _RequestBody(
            body, RequestFacts(), streamed=False, size=size, content_type=content_type
        )
    try:
        facts = adapter.parse_request(body, content_type)
    except RequestBodyError as exc:
        raise Refusal("bad_request", str(exc)) from None
    return _RequestBody(body, facts, streamed=False, size=size, content_type=content_type)


def _region_header(region: str, evidence: Evidence) -> str:
    """The evidence, led by where the call is processed when a request fact narrowed it.

    Anthropic's global endpoint with `inference_geo: us` processes in `anthropic:us`: the
    header says so first, then how the endpoint itself was proven.
    """
    proven = evidence.header()
    if region == evidence.region:
        return proven
    endpoint, method, rest = proven.split("; ", 2)
    return f"{region}; by=request; endpoint={endpoint}; endpoint-{method}; {rest}"


def _with_fields(
    content: bytes | AsyncIterator[bytes], fields: tuple[tuple[str, str], ...]
) -> bytes:
    """The JSON body with `fields` set at its top level (the policy needs them, e.g. a geo)."""
    document = json.loads(content) if isinstance(content, bytes) else None
    if not isinstance(document, dict):
        names = ", ".join(name for name, _ in fields)
        raise Refusal(
            "bad_request",
            f"The policy requires the gateway to set {names} in the request, which needs a "
            "JSON object body.",
        )
    document.update(fields)
    return json.dumps(document, separators=(",", ":")).encode()


def _streamed_body(receive: Receive, first: bytes, limit: int, content_type: str) -> _RequestBody:
    """A body passed on as it arrives, counted so the limit holds without a Content-Length."""
    state = _RequestBody(
        b"",
        RequestFacts(),
        streamed=True,
        size=len(first),
        complete=False,
        content_type=content_type,
    )

    async def stream() -> AsyncIterator[bytes]:
        yield first
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionResetError("the client disconnected while sending the body")
            chunk = message.get("body", b"")
            state.size += len(chunk)
            if state.size > limit:
                state.overflowed = True
                raise _BodyTooLarge
            more = message.get("more_body", False)
            state.complete = not more
            yield chunk

    state.content = stream()
    return state
