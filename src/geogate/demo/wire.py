"""What both provider dialects of the demo LLM share: request checks, the echo "model", SSE.

The demo answers every prompt with `You said: <last user text>`, so whatever the gateway did to
the request (masking, tokenizing) shows up verbatim in the reply.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import StreamingResponse

Json = dict[str, Any]
T = TypeVar("T")

MAX_BODY_BYTES = 8 * 1024 * 1024
"""Larger bodies are refused with 413 before parsing; the demo never needs more."""

TEXT_PART_TYPES = frozenset({"text", "input_text", "output_text"})
"""Content-part types that carry plain text in the Chat, Responses and Messages APIs."""

_TYPE_NAMES: dict[type, str] = {
    str: "a string",
    int: "an integer",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
}
_WORD_PIECES = re.compile(r"\S+\s*|\s+")


class RequestError(Exception):
    """A request the demo refuses; each dialect renders it in its provider's error shape."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass(frozen=True)
class Dialect:
    """How one provider names its request-id header, reads the caller's key and shapes errors."""

    request_id_header: str
    key_hint: str
    """Where the provider expects the key, for the message of a 401."""
    presented_key: Callable[[Headers], str | None]
    error_body: Callable[[RequestError, str], Json]


class Turn(NamedTuple):
    """One message of a conversation, reduced to its role and plain text."""

    role: str
    text: str


@dataclass(frozen=True)
class Completion:
    """What the echo model produced for one request, with word counts standing in for tokens."""

    text: str
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def pieces(self) -> list[str]:
        """The reply split after each word, so that streamed deltas concatenate to `text`."""
        return _WORD_PIECES.findall(self.text)


def new_id(prefix: str) -> str:
    """A random object id in the provider's style, e.g. `chatcmpl-…`, `msg_…`, `req_…`."""
    return prefix + secrets.token_hex(12)


def count_words(*texts: str) -> int:
    return sum(len(text.split()) for text in texts)


def complete(turns: Sequence[Turn], *preamble: str) -> Completion:
    """Echo the last user message; `preamble` (system prompt, instructions) only counts as usage."""
    user_texts = [turn.text for turn in turns if turn.role == "user"]
    text = f"You said: {user_texts[-1]}" if user_texts else "You said nothing."
    return Completion(
        text=text,
        prompt_tokens=count_words(*preamble, *(turn.text for turn in turns)),
        completion_tokens=count_words(text),
    )


async def read_json_object(request: Request) -> Json:
    """The request body as a JSON object, or a 400/413 `RequestError` saying what is wrong."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise RequestError(
                413, f"The request body is larger than {MAX_BODY_BYTES} bytes; send less data."
            )
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        raise RequestError(
            400,
            "We could not parse the JSON body of your request. Send a JSON object with "
            "'Content-Type: application/json'.",
        ) from None
    if not isinstance(parsed, dict):
        raise RequestError(400, "The request body must be a JSON object.")
    if b"\\u" in body:  # only an escape can smuggle in a lone surrogate, which UTF-8 cannot echo
        try:
            json.dumps(parsed, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise RequestError(
                400,
                "The JSON body holds a lone UTF-16 surrogate escape such as \\ud800; "
                "send valid Unicode text.",
            ) from None
    return parsed


def expect(value: object, kind: type[T], param: str) -> T:
    """`value` if it is a `kind` (bools are not integers here), else a 400 naming `param`."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    got = "null" if value is None else _TYPE_NAMES.get(type(value), type(value).__name__)
    raise RequestError(
        400,
        f"Invalid type for '{param}': expected {_TYPE_NAMES[kind]}, but got {got} instead.",
        param=param,
        code="invalid_type",
    )


def required(body: Json, name: str, kind: type[T], *, within: str = "") -> T:
    """`body[name]`, present and a `kind`; `within` is the path of `body`, for error messages."""
    param = f"{within}.{name}" if within else name
    if body.get(name) is None:
        raise RequestError(
            400,
            f"Missing required parameter: '{param}'.",
            param=param,
            code="missing_required_parameter",
        )
    return expect(body[name], kind, param)


def optional(body: Json, name: str, kind: type[T], default: T) -> T:
    value = body.get(name)
    return default if value is None else expect(value, kind, name)


def content_text(content: object, param: str) -> str:
    """Plain text of a message's content: a string, or the text parts of a content-part array.

    Non-text parts (images, audio, tool results) carry nothing the echo model repeats.
    """
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise RequestError(
            400,
            f"Invalid type for '{param}': expected a string or an array of content parts.",
            param=param,
            code="invalid_type",
        )
    texts = []
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        part = expect(part, dict, part_param)
        if part.get("type") in TEXT_PART_TYPES:
            texts.append(required(part, "text", str, within=part_param))
    return "\n".join(texts)


def message_turn(message: object, param: str) -> Turn:
    """A `{"role": ..., "content": ...}` message, checked, as a `Turn`."""
    message = expect(message, dict, param)
    role = required(message, "role", str, within=param)
    return Turn(role, content_text(message.get("content"), f"{param}.content"))


def conversation(body: Json, name: str) -> list[Turn]:
    """The required, non-empty message list `body[name]` (Chat Completions, Messages)."""
    messages = required(body, name, list)
    if not messages:
        raise RequestError(400, f"'{name}' must hold at least one message.", param=name)
    return [message_turn(message, f"{name}[{index}]") for index, message in enumerate(messages)]


def bearer_token(headers: Headers) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def sse(data: Json, event: str | None = None) -> bytes:
    """One server-sent event; `event:` is set for the typed streams (Responses, Messages)."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def event_stream(events: Iterable[bytes], delay: float) -> StreamingResponse:
    """Send each event as its own ASGI body message, `delay` seconds apart, like a model would."""

    async def paced() -> AsyncIterator[bytes]:
        for index, event in enumerate(events):
            if index and delay > 0:
                await asyncio.sleep(delay)
            yield event

    return StreamingResponse(
        paced(),
        media_type="text/event-stream; charset=utf-8",
        headers={"cache-control": "no-cache"},
    )


def wants_stream(body: Json) -> bool:
    return optional(body, "stream", bool, False)
