"""A recorded session read back: its calls' records in order, and the conversation they hold.

    session = await load_session(storage, store.recorded, "ticket-7")  # or "ses_..."
    for turn in conversation(session):
        print(turn.role, turn.text)            # a streamed reply also has `turn.chunks`

The session index says which log positions hold a session's records; the records themselves
are read from the log, each segment once. `Session` is also the JSON of `sessions export` and
of the admin API, so the CLI reads a remote session into the same type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from geogate.config import parse_duration
from geogate.protocols.text import SSE, as_dict, dicts, media_type
from geogate.recording.calls import body_bytes
from geogate.recording.log import LogReader, Record
from geogate.recording.report import parse_moment
from geogate.recording.storage import Storage
from geogate.store import CallRow, RecordIndex
from geogate.store.recorded import summarize

"""A log the recorder writes (`host.N`); the index naming anything else is not followed."""
_ARGUMENTS_SHOWN = 200
"""A tool call's arguments are cut to this many characters in a conversation."""


class SessionInfo(BaseModel):
    """A session as `sessions list` and `GET /api/v1/sessions` show it."""

    model_config = ConfigDict(from_attributes=True)

    key: str = Field(description="`ses_...`: one per caller and session id.")
    session: str = Field(description="The caller's `x-geogate-session`, or its one request id.")
    subject: str | None
    user: str | None
    started: datetime
    ended: datetime
    calls: int
    denied: int
    connections: list[str]
    regions: list[str]
    bytes_in: int
    bytes_out: int


class RecordedCall(BaseModel):
    call: dict[str, Any] = Field(
        description="The `call` record, or the `refused` record of a call not forwarded."
    )
    reply: dict[str, Any] | None = Field(
        None, description="The `reply` record; none for a refusal or a call still in flight."
    )


class Session(BaseModel):
    """A session with its calls' records, verbatim, in order (`sessions export`)."""

    model_config = ConfigDict(populate_by_name=True)

    summary: SessionInfo = Field(alias="session")
    calls: list[RecordedCall]
    missing: int = Field(
        0, description="Indexed calls whose records are no longer in the log (retention)."
    )


class AmbiguousSession(Exception):
    """A caller's session id that several callers used: each has a session of their own."""

    def __init__(self, session_id: str, keys: Sequence[tuple[str, str | None]]) -> None:
        choices = ", ".join(f"{key} ({caller or 'unknown caller'})" for key, caller in keys)
        self.message = (
            f"Session id {session_id!r} was used by {len(keys)} callers, each with a session "
            f"of their own; give one of their keys instead: {choices}."
        )
        super().__init__(self.message)
        self.keys = list(keys)


def unknown_session(session_id: str) -> str:
    return (
        f"No recorded session {session_id!r}; give a session key (ses_...) or a caller's "
        "session id, as `geogate sessions list` shows them."
    )


def since_time(text: str, now: datetime | None = None) -> datetime:
    """`2026-12-01`, `2026-12-01T08:00` (UTC unless it says otherwise), or a time ago: `24h`."""
    try:
        return parse_moment(text)
    except ValueError:
        try:
            seconds = parse_duration(text)
        except ValueError:
            raise ValueError(
                f"{text!r} is neither a date or time such as 2026-12-01 or 2026-12-01T08:00 "
                "nor a duration such as 24h"
            ) from None
    return (now or datetime.now(UTC)) - timedelta(seconds=seconds)


async def load_session(storage: Storage, index: RecordIndex, session_id: str) -> Session | None:
    """The session with key `session_id`, else the one a caller named so; None if none.

    Raises `AmbiguousSession` when several callers used `session_id` as their session id.
    """
    rows = await index.calls(session_id)
    keys = {row.session_key: row.user or row.subject for row in rows}
    if session_id in keys:
        rows = [row for row in rows if row.session_key == session_id]
    elif len(keys) > 1:
        raise AmbiguousSession(session_id, list(keys.items()))
    if not rows:
        return None
    wanted: dict[str, set[int]] = {}
    for row in rows:
        wanted.setdefault(row.log, set()).update((row.first_index, row.last_index))
    found = {log: await LogReader(storage, log).at(positions) for log, positions in wanted.items()}
    calls: list[RecordedCall] = []
    for row in rows:
        call = _of(row, found[row.log].get(row.first_index))
        if call is None:
            continue
        reply = None if row.last_index == row.first_index else found[row.log].get(row.last_index)
        calls.append(RecordedCall(call=call, reply=_of(row, reply)))
    summary = SessionInfo.model_validate(summarize(rows))
    return Session(summary=summary, calls=calls, missing=len(rows) - len(calls))


def _of(row: CallRow, record: Record | None) -> Record | None:
    """`record` if it is about the row's call (the index is a copy, the log the truth)."""
    return record if record is not None and record.get("request_id") == row.request_id else None


# --- the conversation -------------------------------------------------------------------------


class Chunk(NamedTuple):
    at: float
    """Milliseconds since the reply's first chunk, as recorded."""
    text: str


@dataclass(frozen=True, slots=True)
class Turn:
    """One message as a person reads it."""

    request_id: str
    role: str
    """As the body names it (system, user, assistant, tool), or `gateway` for its own notes."""
    text: str
    chunks: tuple[Chunk, ...] = ()
    """A streamed reply: the text each chunk carried (chunks without text left out)."""
    truncated: bool = False
    """The record holds only the first part of the reply (`recordings` size limit)."""


def conversation(session: Session) -> list[Turn]:
    """Each call's new messages, then its reply; history a call repeats is shown once."""
    turns: list[Turn] = []
    shown: list[tuple[str, str]] = []
    for recorded in session.calls:
        call = recorded.call
        request_id = str(call.get("request_id", ""))
        if call.get("kind") == "refused":
            note = f"refused ({call.get('code')}): {call.get('message')}"
            turns.append(Turn(request_id, "gateway", note))
            continue
        messages = request_messages(call.get("request"))
        repeated = 0
        while repeated < min(len(shown), len(messages) - 1):
            if messages[repeated] != shown[repeated]:
                break
            repeated += 1
        turns += [Turn(request_id, role, text) for role, text in messages[repeated:]]
        reply = reply_turn(request_id, recorded.reply)
        turns.append(reply)
        shown = [*messages, (reply.role, reply.text)]
    return turns


def request_messages(request: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(role, text) of a request body's messages, or ("request", its text) for other bodies."""
    if request is None:
        return [("gateway", "(request content not recorded)")]
    if request.get("streamed"):
        return [("gateway", "(request body streamed, not recorded)")]
    text = _text(request)
    document = _json(text, request)
    messages = _messages(document) if isinstance(document, dict) else []
    return messages or [("request", text)]


def reply_turn(request_id: str, reply: Mapping[str, Any] | None) -> Turn:
    if reply is None:
        return Turn(request_id, "gateway", "(no reply recorded yet)")
    held = reply.get("reply")
    if not isinstance(held, dict):
        return Turn(request_id, "gateway", f"(HTTP {reply.get('status')}; content not recorded)")
    truncated = bool(held.get("truncated"))
    if isinstance(held.get("chunks"), list):
        chunks = _stream_text(held["chunks"], media_type(str(held.get("content_type", ""))))
        text = "".join(chunk.text for chunk in chunks)
        return Turn(request_id, "assistant", text, chunks, truncated)
    text = _text(held)
    document = _json(text, held)
    said = _reply_text(document) if isinstance(document, dict) else None
    return Turn(request_id, "assistant", text if said is None else said, (), truncated)


def _text(held: Mapping[str, Any]) -> str:
    if "base64" in held:
        return f"<{len(body_bytes(held))} bytes of binary>"
    return str(held.get("text", ""))


def _json(text: str, held: Mapping[str, Any]) -> Any:
    if "base64" in held or "json" not in str(held.get("content_type", "")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _messages(document: dict[str, Any]) -> list[tuple[str, str]]:
    """OpenAI chat and Responses, Anthropic Messages: the system prompt, then each message."""
    found: list[tuple[str, str]] = []
    for name in ("system", "instructions"):
        if document.get(name):
            found.append(("system", _parts(document[name])))
    found += [_message(message) for message in dicts(document.get("messages"))]
    items = document.get("input")
    if isinstance(items, str):
        found.append(("user", items))
    found += [_item(item) for item in dicts(items)]
    return found


def _message(message: dict[str, Any]) -> tuple[str, str]:
    lines = [_parts(message.get("content"))] if message.get("content") else []
    for call in dicts(message.get("tool_calls")):
        function = as_dict(call.get("function"))
        lines.append(_tool_call(function.get("name"), function.get("arguments")))
    return str(message.get("role", "unknown")), "\n".join(lines)


def _item(item: dict[str, Any]) -> tuple[str, str]:
    """A Responses API input or output item."""
    kind = item.get("type")
    if kind == "function_call":
        return "assistant", _tool_call(item.get("name"), item.get("arguments"))
    if kind == "function_call_output":
        return "tool", _parts(item.get("output"))
    if "role" in item or kind == "message":
        return _message(item)
    return "unknown", f"[{kind}]"


def _parts(content: object) -> str:
    """A string, or content parts joined: text parts' text, tool calls and results summarised."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return "" if content is None else json.dumps(content)
    texts: list[str] = []
    for part in content:
        if isinstance(part, str):
            texts.append(part)
        elif not isinstance(part, dict):
            continue
        elif isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "tool_use":
            texts.append(_tool_call(part.get("name"), part.get("input")))
        elif part.get("type") == "tool_result":
            texts.append(_parts(part.get("content")))
        else:
            texts.append(f"[{part.get('type', 'part')}]")
    return "\n".join(texts)


def _tool_call(name: object, arguments: object) -> str:
    shown = arguments if isinstance(arguments, str) else json.dumps(arguments)
    if len(shown) > _ARGUMENTS_SHOWN:
        shown = shown[:_ARGUMENTS_SHOWN] + "..."
    return f"[tool call {name}({shown})]"


def _reply_text(document: dict[str, Any]) -> str | None:
    """The assistant's text in a chat completion, a Responses API response or a Message;
    an error's message; None for a body of another kind."""
    texts: list[str] = []
    for choice in dicts(document.get("choices")):
        message = as_dict(choice.get("message"))
        texts.append(_message(message)[1] if message else str(choice.get("text", "")))
    texts += [_item(item)[1] for item in dicts(document.get("output"))]
    if document.get("role") == "assistant":
        texts.append(_parts(document.get("content")))
    error = _error(document)
    if error is not None:
        texts.append(error)
    return "\n".join(texts) if texts else None


def _error(document: dict[str, Any]) -> str | None:
    error = as_dict(document.get("error"))
    return f"[error: {error['message']}]" if isinstance(error.get("message"), str) else None


def _stream_text(chunks: list[Any], content_type: str) -> tuple[Chunk, ...]:
    """The text each recorded chunk carried: of an SSE stream, the text deltas of the events
    that chunk completed; of another stream, the chunk itself."""
    found: list[Chunk] = []
    buffer = ""
    at = 0.0
    for chunk in chunks:
        if not (isinstance(chunk, list) and len(chunk) == 2):
            continue
        at = float(chunk[0])
        if content_type != SSE:
            text = str(chunk[1])
        else:
            buffer = (buffer + str(chunk[1])).replace("\r\n", "\n")
            *events, buffer = buffer.split("\n\n")
            text = "".join(_delta(event) for event in events)
        if text:
            found.append(Chunk(at, text))
    tail = _delta(buffer) if buffer.strip() else ""
    if tail:  # a last event without its blank line: it arrived with the last chunk
        found.append(Chunk(at, tail))
    return tuple(found)


def _delta(raw: str) -> str:
    """The text one SSE event adds: OpenAI chat `choices[].delta.content`, Responses
    `response.output_text.delta`, Anthropic `text_delta`; an error event's message."""
    name, data = _event(raw)
    if not data or data == "[DONE]":
        return ""
    try:
        document = json.loads(data)
    except ValueError:
        return ""
    if not isinstance(document, dict):
        return ""
    kind = document.get("type")
    if kind == "response.output_text.delta":
        return str(document.get("delta", ""))
    if kind == "content_block_delta":
        delta = as_dict(document.get("delta"))
        return str(delta.get("text", "")) if delta.get("type") == "text_delta" else ""
    if name == "error" or kind == "error":
        return _error(document) or ""
    texts = [
        as_dict(choice.get("delta")).get("content") for choice in dicts(document.get("choices"))
    ]
    return "".join(text for text in texts if isinstance(text, str))


def _event(raw: str) -> tuple[str | None, str]:
    """An SSE event's name and data (its `data:` lines joined)."""
    name, data = None, []
    for line in raw.split("\n"):
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    return name, "\n".join(data)
