"""The demo LLM's ASGI app: routes, upstream-key check, provider-shaped errors, `serve`.

Endpoints (all but the last demand the upstream key, `DemoSettings.api_key`):

- `POST /v1/chat/completions`, `POST /v1/responses`, `POST /v1/embeddings`, `GET /v1/models`,
  `GET /v1/models/{id}` — OpenAI dialect, key in `Authorization: Bearer KEY`, request id in
  `x-request-id`, errors as `{"error": {"message", "type", "param", "code"}}`.
- `POST /v1/messages` — Anthropic dialect, key in `x-api-key: KEY` (or a bearer token, which is
  how the `anthropic` SDK sends `api_key`), request id in `request-id`, errors as
  `{"type": "error", "error": {"type", "message"}, "request_id"}`.
- `GET /v1/debug/echo-headers` — no key needed; answers
  `{"method", "path", "query", "headers": {name: value}}` with the request headers exactly as
  received (names lower-case, repeated headers joined with `, `), so tests can see what a
  gateway forwarded upstream.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

import uvicorn
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from geogate.demo import anthropic_api, openai_api
from geogate.demo.settings import DemoSettings
from geogate.demo.wire import Dialect, RequestError, new_id

__all__ = ["DemoSettings", "create_demo_app", "serve"]

Handler = Callable[[Request, DemoSettings], Awaitable[Response]]

_API: tuple[tuple[str, str, Dialect, Handler], ...] = (
    ("POST", "/v1/chat/completions", openai_api.DIALECT, openai_api.chat_completions),
    ("POST", "/v1/responses", openai_api.DIALECT, openai_api.responses),
    ("POST", "/v1/embeddings", openai_api.DIALECT, openai_api.embeddings),
    ("GET", "/v1/models", openai_api.DIALECT, openai_api.list_models),
    ("GET", "/v1/models/{model_id}", openai_api.DIALECT, openai_api.retrieve_model),
    ("POST", "/v1/messages", anthropic_api.DIALECT, anthropic_api.messages),
)


def create_demo_app(settings: DemoSettings | None = None) -> Starlette:
    """The demo LLM as an ASGI app; serve it with uvicorn or mount it in tests."""
    settings = settings or DemoSettings()
    routes = [
        Route(path, _endpoint(dialect, handler, settings), methods=[method])
        for method, path, dialect, handler in _API
    ]
    routes.append(Route("/v1/debug/echo-headers", _echo_headers, methods=["GET"]))
    return Starlette(routes=routes, exception_handlers={HTTPException: _routing_error})


def serve(host: str, port: int, settings: DemoSettings) -> None:
    """Run the demo LLM on HOST:PORT until interrupted."""
    uvicorn.run(
        create_demo_app(settings),
        host=host,
        port=port,
        log_level="warning",
        http="httptools",
        loop="uvloop",
    )


def _endpoint(
    dialect: Dialect, handler: Handler, settings: DemoSettings
) -> Callable[[Request], Awaitable[Response]]:
    """Wrap `handler` with the key check, the request-id header and provider-shaped errors."""

    async def endpoint(request: Request) -> Response:
        request_id = new_id("req_")
        try:
            _check_key(dialect, request.headers, settings.api_key)
            response = await handler(request, settings)
        except RequestError as error:
            body = dialect.error_body(error, request_id)
            response = JSONResponse(body, status_code=error.status)
        response.headers[dialect.request_id_header] = request_id
        return response

    return endpoint


def _check_key(dialect: Dialect, headers: Headers, api_key: str) -> None:
    presented = dialect.presented_key(headers)
    if presented is None:
        raise RequestError(
            401,
            f"You didn't provide an API key. Send it in {dialect.key_hint}; "
            "behind GeoGate, the connection's credentials supply it.",
            code="missing_api_key",
        )
    if not hmac.compare_digest(presented.encode(), api_key.encode()):
        raise RequestError(
            401,
            "Incorrect API key provided. The demo LLM accepts only the key it was started "
            "with (`geogate demo-llm --api-key`).",
            code="invalid_api_key",
        )


async def _routing_error(request: Request, exc: Exception) -> Response:
    """Unknown paths (404) and wrong methods (405) in the error shape of the path's provider."""
    if not isinstance(exc, HTTPException):
        raise exc
    is_messages = request.url.path.startswith("/v1/messages")
    dialect = anthropic_api.DIALECT if is_messages else openai_api.DIALECT
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"Invalid method ({where}); this path accepts {allowed}."
    else:
        message = (
            f"Invalid URL ({where}). The demo LLM serves /v1/chat/completions, /v1/responses, "
            "/v1/embeddings, /v1/models and /v1/messages."
        )
    request_id = new_id("req_")
    return JSONResponse(
        dialect.error_body(RequestError(exc.status_code, message), request_id),
        status_code=exc.status_code,
        headers={**(exc.headers or {}), dialect.request_id_header: request_id},
    )


async def _echo_headers(request: Request) -> Response:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return JSONResponse(
        {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": headers,
        }
    )
