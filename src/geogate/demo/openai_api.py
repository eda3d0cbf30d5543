"""The OpenAI dialect of the demo LLM: Chat Completions, Responses, Embeddings and Models.

Bodies and stream events follow the shapes of the official `openai` SDK's types
(`ChatCompletion`, `ChatCompletionChunk`, `Response`, `ResponseStreamEvent`,
`CreateEmbeddingResponse`, `Model`), so the SDK parses them even with strict validation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time
from collections.abc import Iterator
from typing import TypeGuard

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from geogate.demo.settings import DemoSettings
from geogate.demo.wire import (
    Completion,
    Dialect,
    Json,
    RequestError,
    Turn,
    bearer_token,
    complete,
    conversation,
    count_words,
    event_stream,
    message_turn,
    new_id,
    optional,
    read_json_object,
    required,
    sse,
    wants_stream,
)

MODELS = ("demo-echo", "gpt-4o-mini", "text-embedding-3-small")
"""What `GET /v1/models` lists; chat and responses accept any model name."""
MODELS_CREATED = 1735689600  # 2025-01-01, fixed so listings are stable
FINGERPRINT = "fp_geogate_demo"

EMBEDDING_DIMENSIONS = 1536
MAX_EMBEDDING_DIMENSIONS = 3072
MAX_EMBEDDING_INPUTS = 2048


def _error_body(error: RequestError, request_id: str) -> Json:
    return {
        "error": {
            "message": error.message,
            "type": "invalid_request_error",
            "param": error.param,
            "code": error.code,
        }
    }


DIALECT = Dialect(
    request_id_header="x-request-id",
    key_hint="an 'Authorization: Bearer KEY' header",
    presented_key=bearer_token,
    error_body=_error_body,
)


# --- Chat Completions --------------------------------------------------------------------------


async def chat_completions(request: Request, settings: DemoSettings) -> Response:
    body = await read_json_object(request)
    model = required(body, "model", str)
    completion = complete(conversation(body, "messages"))
    if wants_stream(body):
        options = optional(body, "stream_options", dict, {})
        include_usage = options.get("include_usage") is True
        return event_stream(_chat_events(completion, model, include_usage), settings.chunk_delay)
    return JSONResponse(
        {
            **_chat_base(model, "chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": completion.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _chat_usage(completion),
        }
    )


def _chat_base(model: str, kind: str) -> Json:
    return {
        "id": new_id("chatcmpl-"),
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }


def _chat_usage(completion: Completion) -> Json:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.total_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _chat_events(completion: Completion, model: str, include_usage: bool) -> Iterator[bytes]:
    """Role chunk, one chunk per word, a finish chunk, the usage chunk if asked, `[DONE]`."""
    base = _chat_base(model, "chat.completion.chunk")
    if include_usage:
        base["usage"] = None

    def chunk(delta: Json, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return sse({**base, "choices": [choice]})

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in completion.pieces():
        yield chunk({"content": piece})
    yield chunk({}, "stop")
    if include_usage:
        yield sse({**base, "choices": [], "usage": _chat_usage(completion)})
    yield b"data: [DONE]\n\n"


# --- Responses ---------------------------------------------------------------------------------


async def responses(request: Request, settings: DemoSettings) -> Response:
    body = await read_json_object(request)
    model = required(body, "model", str)
    instructions = optional(body, "instructions", str, "")
    completion = complete(_response_turns(body), instructions)
    base = _response_base(model, instructions)
    item_id = new_id("msg_")
    if wants_stream(body):
        events = _response_events(base, item_id, completion)
        return event_stream(events, settings.chunk_delay)
    return JSONResponse(_response_done(base, _message_item(item_id, completion.text), completion))


def _response_turns(body: Json) -> list[Turn]:
    """`input` as a string (one user message) or a list of items.

    Items without a role (function calls, tool outputs, reasoning) are not messages and are
    skipped, as they carry nothing the echo model repeats.
    """
    value = body.get("input")
    if isinstance(value, str):
        return [Turn("user", value)]
    if isinstance(value, list):
        return [
            message_turn(item, f"input[{index}]")
            for index, item in enumerate(value)
            if not (isinstance(item, dict) and "role" not in item)
        ]
    raise RequestError(
        400,
        "'input' is required: send a string or an array of input items.",
        param="input",
        code="missing_required_parameter" if value is None else "invalid_type",
    )


def _response_base(model: str, instructions: str) -> Json:
    """The `response` object as it stands when generation starts."""
    return {
        "id": new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions or None,
        "max_output_tokens": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }


def _response_done(base: Json, item: Json, completion: Completion) -> Json:
    return {
        **base,
        "status": "completed",
        "completed_at": int(time.time()),
        "output": [item],
        "usage": {
            "input_tokens": completion.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": completion.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": completion.total_tokens,
        },
    }


def _output_text(text: str) -> Json:
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


def _message_item(item_id: str, text: str | None) -> Json:
    """The assistant message output item; `text=None` is the item before any content exists."""
    return {
        "id": item_id,
        "type": "message",
        "status": "in_progress" if text is None else "completed",
        "role": "assistant",
        "content": [] if text is None else [_output_text(text)],
    }


def _response_events(base: Json, item_id: str, completion: Completion) -> Iterator[bytes]:
    """The typed Responses stream, numbered with `sequence_number` from 0."""
    for sequence_number, event in enumerate(_response_event_bodies(base, item_id, completion)):
        yield sse({**event, "sequence_number": sequence_number}, event=event["type"])


def _response_event_bodies(base: Json, item_id: str, completion: Completion) -> Iterator[Json]:
    text = completion.text
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    item = _message_item(item_id, text)
    yield {"type": "response.created", "response": base}
    yield {"type": "response.in_progress", "response": base}
    yield {
        "type": "response.output_item.added",
        "output_index": 0,
        "item": _message_item(item_id, None),
    }
    yield {"type": "response.content_part.added", **where, "part": _output_text("")}
    for piece in completion.pieces():
        yield {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
    yield {"type": "response.output_text.done", **where, "text": text, "logprobs": []}
    yield {"type": "response.content_part.done", **where, "part": _output_text(text)}
    yield {"type": "response.output_item.done", "output_index": 0, "item": item}
    yield {"type": "response.completed", "response": _response_done(base, item, completion)}


# --- Embeddings --------------------------------------------------------------------------------


async def embeddings(request: Request, settings: DemoSettings) -> Response:
    body = await read_json_object(request)
    model = required(body, "model", str)
    inputs = _embedding_inputs(body.get("input"))
    dimensions = optional(body, "dimensions", int, EMBEDDING_DIMENSIONS)
    if not 1 <= dimensions <= MAX_EMBEDDING_DIMENSIONS:
        raise RequestError(
            400,
            f"'dimensions' must be between 1 and {MAX_EMBEDDING_DIMENSIONS}, not {dimensions}.",
            param="dimensions",
        )
    encoding = optional(body, "encoding_format", str, "float")
    if encoding not in ("float", "base64"):
        raise RequestError(
            400,
            f"Invalid value for 'encoding_format': {encoding!r}; use 'float' or 'base64'.",
            param="encoding_format",
            code="invalid_value",
        )
    data = []
    for index, item in enumerate(inputs):
        packed = embed(item, dimensions)
        vector: object = (
            base64.b64encode(packed).decode()
            if encoding == "base64"
            else list(struct.unpack(f"<{dimensions}f", packed))
        )
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(count_words(item) if isinstance(item, str) else len(item) for item in inputs)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


def embed(item: str | list[int], dimensions: int) -> bytes:
    """A unit vector of little-endian float32s derived from a hash of the input.

    The same input always gives the same vector, so tests and demos can compare them.
    """
    digest = hashlib.shake_256(json.dumps(item).encode()).digest(2 * dimensions)
    raw = [value / 32767.5 - 1.0 for value in struct.unpack(f"<{dimensions}H", digest)]
    norm = math.sqrt(sum(x * x for x in raw))  # never 0: no raw value can be exactly 0
    return struct.pack(f"<{dimensions}f", *(x / norm for x in raw))


def _embedding_inputs(value: object) -> list[str | list[int]]:
    """`input` as a string, a token array, or an array of strings or of token arrays."""
    if isinstance(value, str) or _is_token_array(value):
        candidates: list[object] = [value]
    elif isinstance(value, list) and len(value) <= MAX_EMBEDDING_INPUTS:
        candidates = value
    else:
        candidates = []
    inputs = [candidate for candidate in candidates if _is_embeddable(candidate)]
    if inputs and len(inputs) == len(candidates) and len({type(item) for item in inputs}) == 1:
        return inputs
    raise RequestError(
        400,
        "'input' must be a non-empty string, a token array, or an array of at most "
        f"{MAX_EMBEDDING_INPUTS} non-empty strings or of as many token arrays.",
        param="input",
        code="invalid_value",
    )


def _is_token_array(value: object) -> TypeGuard[list[int]]:
    return (
        isinstance(value, list)
        and bool(value)
        and all(type(token) is int and token >= 0 for token in value)
    )


def _is_embeddable(value: object) -> TypeGuard[str | list[int]]:
    return (isinstance(value, str) and bool(value)) or _is_token_array(value)


# --- Models ------------------------------------------------------------------------------------


def _model(model_id: str) -> Json:
    return {
        "id": model_id,
        "object": "model",
        "created": MODELS_CREATED,
        "owned_by": "geogate-demo",
    }


async def list_models(request: Request, settings: DemoSettings) -> Response:
    return JSONResponse({"object": "list", "data": [_model(model_id) for model_id in MODELS]})


async def retrieve_model(request: Request, settings: DemoSettings) -> Response:
    model_id = request.path_params["model_id"]
    if model_id not in MODELS:
        raise RequestError(
            404,
            f"The model '{model_id}' does not exist; GET /v1/models lists the demo's models.",
            param="model",
            code="model_not_found",
        )
    return JSONResponse(_model(model_id))
