"""Recorded sessions in the admin API, for admins only (what `geogate sessions` shows remotely).

    GET /api/v1/sessions?user=alice@example.com&decision=deny&since=24h&limit=20
    GET /api/v1/sessions/{key or session id}          the summary and every call's records
    GET /api/v1/sessions/{key or session id}/export   the same, as a file to download

A session id names nothing but rows of the session index: it is never part of a path in the
recording store, whose records are read at the positions the index gives.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, Query, Response

from geogate.gateway.access import Admin, Refused
from geogate.gateway.runtime import Runtime
from geogate.recording.sessions import (
    AmbiguousSession,
    Session,
    SessionInfo,
    load_session,
    since_time,
    unknown_session,
)
from geogate.recording.storage import StorageError


def add_session_routes(api: FastAPI, runtime: Runtime) -> None:
    storage = runtime.recorder.storage  # the recorder's own: one connection pool, closed with it
    index = runtime.store.recorded

    async def _session(session_id: str) -> Session:
        try:
            session = await load_session(storage, index, session_id)
        except AmbiguousSession as exc:
            raise Refused(409, "ambiguous_session", exc.message) from None
        except StorageError as exc:
            raise Refused(503, "recording_unavailable", str(exc)) from None
        if session is None:
            raise Refused(404, "not_found", unknown_session(session_id))
        return session

    @api.get("/api/v1/sessions", tags=["sessions"])
    async def list_sessions(
        _: Admin,
        user: Annotated[str | None, Query(description="A user or subject.")] = None,
        connection: str | None = None,
        decision: Literal["allow", "deny", "error"] | None = None,
        since: Annotated[
            str | None, Query(description="`2026-12-01`, `2026-12-01T08:00Z` or a time ago: `24h`.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[SessionInfo]:
        """Sessions with a call matching every filter given, newest first."""
        try:
            moment = None if since is None else since_time(since)
        except ValueError as exc:
            raise Refused(400, "bad_request", f"since: {exc}.") from None
        summaries = await index.sessions(
            user=user, connection=connection, decision=decision, since=moment, limit=limit
        )
        return [SessionInfo.model_validate(summary) for summary in summaries]

    @api.get("/api/v1/sessions/{session_id}/export", tags=["sessions"])
    async def export_session(session_id: str, _: Admin, response: Response) -> Session:
        """The session and its records verbatim, as a JSON file named after its key."""
        session = await _session(session_id)
        disposition = f'attachment; filename="{session.summary.key}.json"'
        response.headers["Content-Disposition"] = disposition
        return session

    # `:path`, so that an id with a slash is an unknown session like any other.
    @api.get("/api/v1/sessions/{session_id:path}", tags=["sessions"])
    async def get_session(session_id: str, _: Admin) -> Session:
        """A session by its key (`ses_...`) or the caller's session id, with each call's
        `call` (or `refused`) and `reply` records."""
        return await _session(session_id)
