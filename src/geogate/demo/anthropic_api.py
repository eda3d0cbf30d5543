"""The Anthropic dialect of the demo LLM: `POST /v1/messages`, plain and streamed.

Bodies and stream events follow the official `anthropic` SDK's `Message` and
`RawMessageStreamEvent` types, with the `ping` event the real API sends after the first block
starts.
"""

from __future__ import annotations

from collections.abc import Iterator

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from geogate.demo.settings import DemoSettings
from geogate.demo.wire import (
    Completion,
    Dialect,
    Json,
    RequestError,
    bearer_token,
    complete,
    content_text,
    conversation,
    event_stream,
    new_id,
    read_json_object,
    required,
    sse,
    wants_stream,
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    413: "request_too_large",
}


def _presented_key(headers: Headers) -> str | None:
    """`x-api-key`, or a bearer token: the `anthropic` SDK sends `api_key` as the latter."""
    return headers.get("x-api-key") or bearer_token(headers)


def _error_body(error: RequestError, request_id: str) -> Json:
    return {
        "type": "error",
        "error": {
            "type": _ERROR_TYPES.get(error.status, "invalid_request_error"),
            "message": error.message,
        },
        "request_id": request_id,
    }


DIALECT = Dialect(
    request_id_header="request-id",
    key_hint="an 'x-api-key: KEY' header",
    presented_key=_presented_key,
    error_body=_error_body,
)


async def messages(request: Request, settings: DemoSettings) -> Response:
    body = await read_json_object(request)
    model = required(body, "model", str)
    if required(body, "max_tokens", int) < 1:
        raise RequestError(400, "'max_tokens' must be at least 1.", param="max_tokens")
    completion = complete(
        conversation(body, "messages"), content_text(body.get("system"), "system")
    )
    message = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": completion.text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {**_usage(completion), "service_tier": "standard"},
    }
    if wants_stream(body):
        return event_stream(_message_events(message, completion), settings.chunk_delay)
    return JSONResponse(message)


def _usage(completion: Completion) -> Json:
    return {
        "input_tokens": completion.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": completion.completion_tokens,
    }


def _message_events(message: Json, completion: Completion) -> Iterator[bytes]:
    """message_start, one text block streamed word by word, message_delta, message_stop."""

    def event(data: Json) -> bytes:
        return sse(data, event=data["type"])

    started = {
        **message,
        "content": [],
        "stop_reason": None,
        "usage": {**message["usage"], "output_tokens": 1},
    }
    yield event({"type": "message_start", "message": started})
    yield event(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    yield event({"type": "ping"})
    for piece in completion.pieces():
        delta = {"type": "text_delta", "text": piece}
        yield event({"type": "content_block_delta", "index": 0, "delta": delta})
    yield event({"type": "content_block_stop", "index": 0})
    yield event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": _usage(completion),
        }
    )
    yield event({"type": "message_stop"})
