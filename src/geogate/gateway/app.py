"""The ASGI application: the data path under `/c/`; admin API, SCIM, console, health beside it.

The data path is a plain ASGI callable, not a framework route: nothing sits between the server
and the flow, so a call pays only for the steps it needs. Everything else is dispatched by
path prefix to its own small app, each doing its own access check.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from geogate.config import Config, load_config
from geogate.gateway.access import Access, Denied, base_url
from geogate.gateway.admin import admin_api
from geogate.gateway.console import Console
from geogate.gateway.datapath import DataPath
from geogate.gateway.errors import plain_error
from geogate.gateway.observe import AccessSink, BatchedLines, metrics_payload
from geogate.gateway.runtime import Runtime
from geogate.identity.scim import ScimApp
from geogate.recording import RecordingUnavailable

logger = logging.getLogger("geogate.gateway")

CONFIG_ENV = "GEOGATE_CONFIG_FILE"
BASE_DIR_ENV = "GEOGATE_BASE_DIR"


class GatewayApp:
    def __init__(self, config: Config, access_sink: AccessSink | None = None) -> None:
        self.config = config
        self.access_sink = access_sink
        self.runtime: Runtime | None = None
        self.datapath: DataPath | None = None
        self.admin: ASGIApp | None = None
        self.console: Console | None = None
        self.access: Access | None = None
        self.scim: dict[tuple[str, str], ScimApp] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if scope["path"].startswith("/c/") and self.datapath is not None:
                await self.datapath(scope, receive, send)
            else:
                await self._service(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.runtime = await Runtime.start(self.config)
                except RecordingUnavailable as exc:  # says what to fix: no traceback needed
                    logger.error("gateway failed to start: %s", exc)
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                except Exception as exc:  # a worker that cannot start must say why, then stop
                    logger.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                self.datapath = DataPath(self.runtime, self.access_sink)
                self.admin = admin_api(self.runtime)
                self.console = Console(self.runtime)
                self.access = Access(self.runtime)
                # What start-up built lives as long as the worker: keep it out of the garbage
                # collector's full passes, which otherwise pause calls for tens of milliseconds.
                gc.collect()
                gc.freeze()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.console is not None:
                    await self.console.close()
                if self.runtime is not None:
                    await self.runtime.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _service(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if self.admin is not None and (path == "/api" or path.startswith("/api/")):
            refusal = _unbounded_body(scope["headers"])
            if refusal is None:
                await self.admin(scope, receive, send)
            else:
                await _respond(send, refusal[0], plain_error("bad_request", refusal[1]))
        elif path == "/scim/v2" or path.startswith("/scim/v2/"):
            await self._scim(scope, receive, send)
        elif self.console is not None and (
            path in _CONSOLE_PATHS or path.startswith(_REVIEW_PAGES)
        ):
            await self.console.app(scope, receive, send)
        elif path == "/healthz":
            await _respond(send, 200, b'{"status":"ok"}')
        elif path == "/readyz":
            ready = self.runtime is not None and await self.runtime.store.ping()
            body = b'{"status":"ready"}' if ready else b'{"status":"starting"}'
            await _respond(send, 200 if ready else 503, body)
        elif path == "/metrics":
            payload, content_type = metrics_payload()
            await _respond(send, 200, payload, content_type)
        elif path.startswith("/c/"):
            message = "The gateway is still starting; retry in a moment."
            await _respond(send, 503, plain_error("starting", message))
        else:
            message = f"Nothing is served at {path}; AI calls go to /c/CONNECTION/..."
            await _respond(send, 404, plain_error("not_found", message))

    async def _scim(self, scope: Scope, receive: Receive, send: Send) -> None:
        """SCIM for the IdP's token or an admin; refusals in SCIM's own error shape."""
        if self.runtime is None or self.access is None:
            await _respond(send, 503, _scim_error(503, "The gateway is still starting."), _SCIM)
            return
        headers = scope["headers"]
        try:
            actor = await self.access.scim(headers, scope["method"], scope["scheme"])
        except Denied as denied:
            await _respond(send, denied.status, _scim_error(denied.status, denied.message), _SCIM)
            return
        base = base_url(self.runtime, headers, scope["scheme"]) + "/scim/v2"
        app = self.scim.get((base, actor))
        if app is None:
            app = self.scim[base, actor] = ScimApp(self.runtime.store, base, actor)
        await app(scope, receive, send)


MAX_ADMIN_BODY = 1024 * 1024


def _unbounded_body(headers: list[tuple[bytes, bytes]]) -> tuple[int, str] | None:
    """(status, message) for an admin request body that could be too large to read; else None.

    The admin API reads a body before it checks who sent it, so a body must declare its size,
    and no admin request needs more than `MAX_ADMIN_BODY` bytes.
    """
    length = next((value for name, value in headers if name == b"content-length"), None)
    if length is None:
        if any(name == b"transfer-encoding" for name, _ in headers):
            return 411, "Send the admin request with a Content-Length header."
        return None
    if not length.isdigit() or int(length) > MAX_ADMIN_BODY:
        return 413, f"Admin requests are limited to {MAX_ADMIN_BODY // 1024} KiB."
    return None


_CONSOLE_PATHS = frozenset(
    {
        "/",
        "/login",
        "/login/oidc",
        "/auth/callback",
        "/logout",
        "/saml/metadata",
        "/saml/login",
        "/saml/acs",
    }
)
_REVIEW_PAGES = "/reviews/"
"""Where the console shows a review (`/reviews/{id}`), as notifications and errors link it."""
_SCIM = "application/scim+json"


def _scim_error(status: int, detail: str) -> bytes:
    return json.dumps(
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": str(status),
            "detail": detail,
        }
    ).encode()


async def _respond(
    send: Send, status: int, body: bytes, content_type: str = "application/json"
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(config: Config, access_sink: AccessSink | None = None) -> GatewayApp:
    """The gateway for `config`; `access_sink` receives one JSON line per call."""
    return GatewayApp(config, access_sink)


def app_from_env() -> GatewayApp:
    """Factory for uvicorn workers: each loads the policy file `geogate up` checked."""
    config = load_config(Path(os.environ[CONFIG_ENV]), base_dir=os.environ.get(BASE_DIR_ENV))
    return create_app(config, BatchedLines(sys.stdout))
