"""The admin API's audit routes: the gateway verifies its own recordings and reports on them.

    curl -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:8080/api/v1/audit/verify
    curl -H "Authorization: Bearer $ADMIN_TOKEN" \
        "http://127.0.0.1:8080/api/v1/audit/report?from=2026-12-01&to=2026-12-02&format=html"

They read the store the recorder writes to, with the recorder's own key, and the session
index, which the recorder brings up to date every `checkpoints.interval`: calls of the last
few seconds may be missing from a report until then.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import FastAPI, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response

from geogate.gateway.access import Admin
from geogate.gateway.runtime import Runtime
from geogate.recording.report import Verification, build_report, parse_period
from geogate.recording.verify import verify

HTML_HEADERS = {
    # The page is self-contained: nothing may load, nothing may run, even if a value slipped
    # through the escaping.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}


def add_audit_routes(api: FastAPI, runtime: Runtime) -> None:
    recorder = runtime.recorder

    @api.get("/api/v1/audit/verify", tags=["audit"])
    async def audit_verify(_: Admin) -> Verification:
        """Every log recomputed: what was changed, removed or reordered, and where."""
        report = await verify(
            recorder.storage,
            recorder.key.verifier(),
            witness=recorder.witness,
            index=runtime.store.recorded,
        )
        return Verification.of(report)

    @api.get("/api/v1/audit/report", tags=["audit"], response_model=None)
    async def audit_report(
        _: Admin,
        start: Annotated[
            str, Query(alias="from", description="YYYY-MM-DD (UTC) or an ISO timestamp.")
        ],
        end: Annotated[
            str,
            Query(
                alias="to",
                description="YYYY-MM-DD, included (UTC), or an ISO timestamp, excluded.",
            ),
        ],
        format: Literal["json", "html"] = "json",
    ) -> Response:
        """The evidence report of a period: JSON, or one self-contained HTML page."""
        try:
            since, until = parse_period(start, end)
        except ValueError as exc:
            return JSONResponse(
                {"error": {"type": "geogate", "code": "bad_request", "message": f"{exc}."}},
                status_code=400,
            )
        report = await build_report(
            runtime.config, runtime.store, recorder.storage, recorder.key.verifier(), since, until
        )
        if format == "html":
            return HTMLResponse(report.to_html(), headers=HTML_HEADERS)
        return JSONResponse(report.to_json())
