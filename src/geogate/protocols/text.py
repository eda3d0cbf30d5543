"""Finding the text in provider bodies and SSE streams, and writing masked text back.

Adapters declare where text lives as groups of `Slot`s; this module hands each group to a
`TextTransform` and writes back only what changed, so a body without findings leaves as the very
bytes it came in as. Streams are split into whole SSE events as bytes arrive, so what leaves
depends only on the bytes, never on how they were chunked.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import takewhile
from typing import Any, Protocol

import orjson

from geogate.dlp.transform import MaskingError, TextStream, TextTransform

SSE = "text/event-stream"
Key = tuple[str | int, ...]
"""Names one streamed text, e.g. (choice index, field)."""


@dataclass(frozen=True, slots=True)
class Slot:
    """One string in a parsed JSON document, addressed so it can be read and replaced."""

    container: Any
    """The dict or list that holds the string."""
    key: Any
    """Its key or index in `container`."""
    encoded: bool = False
    """The string is itself JSON (tool call arguments): its string values are the text."""

    def get(self) -> str:
        value: str = self.container[self.key]
        return value

    def set(self, value: str) -> None:
        self.container[self.key] = value


Groups = list[list[Slot]]
"""Each inner list is read as one text (the fields of one message)."""
GroupsOf = Callable[[Any], Groups]


def media_type(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def load_json(data: bytes | str, what: str) -> Any:
    """Parse a body or event; one that cannot be parsed cannot be masked (fail closed)."""
    try:
        return parse_json(data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise MaskingError(
            f"The {what} is not JSON that GeoGate can read ({exc}), so it cannot be masked; "
            f"fix it or remove masking from the policy."
        ) from None


def parse_json(data: bytes | str) -> Any:
    """Standard JSON (RFC 8259) in which no object repeats a key: a repeated key would let
    the target read a copy that was never masked, and `NaN` or `Infinity`, which no standard
    parser reads alike, could hide a difference too. Raises ValueError otherwise.

    orjson parses (five times faster than `json`), but keeps the last copy of a repeated key
    silently and reads an integer beyond 64 bits as a float, so `_keys_once` checks what it
    read; what orjson refuses, or what fails that check, goes to the standard library, which
    keeps every digit and names the problem."""
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    else:
        if _keys_once(data, document):
            return document
    return json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_not_a_number)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("a key appears twice in one object")
    return document


def _not_a_number(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _keys_once(data: bytes | str, document: Any) -> bool:
    """Whether orjson read `data` as the standard library would: no object repeated a key
    (orjson keeps the last copy), and no integer was beyond 64 bits (orjson makes it a float).

    Outside strings, a colon in JSON text follows a key and nothing else, and orjson writes
    exactly one colon per key and every colon of a string as it is. So when no key repeats,
    the colons of the text (`:`, or `\\u003a` inside a string) are those orjson writes back
    for the document. A repeated key's dropped copy takes at least one key with it, so the
    text then has more colons than the document. (A `\\u003a` that is really an escaped
    backslash before `u003a` only adds to the text's count too.) An integer beyond 64 bits
    comes back as a float of at least 2**63, which orjson writes as `e+18` or more; any
    `e+18` or more, even in a string, goes to the standard library. All of it runs in C."""
    written = orjson.dumps(document)
    if b"e+" in written and _HUGE.search(written):
        return False
    if isinstance(data, str):
        colons = data.count(":")
        if "\\u003" in data:
            colons += len(_ESCAPED_COLON_TEXT.findall(data))
    else:
        colons = data.count(b":")
        if b"\\u003" in data:
            colons += len(_ESCAPED_COLON.findall(data))
    return colons == written.count(b":")


_ESCAPED_COLON = re.compile(rb"\\u003[aA]")
_ESCAPED_COLON_TEXT = re.compile(r"\\u003[aA]")
_HUGE = re.compile(rb"e\+(?:1[89]|[2-9][0-9]|[0-9]{3})")


def dumps(document: Any) -> bytes:
    """Compact JSON; escaped only when the text holds a lone surrogate, which UTF-8 cannot."""
    try:
        return orjson.dumps(document)
    except orjson.JSONEncodeError:  # a lone surrogate, or an integer beyond 64 bits
        pass
    try:
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(document, separators=(",", ":")).encode()


def as_dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def dicts(value: object) -> list[dict[str, Any]]:
    """The objects in a list; anything else holds none."""
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def field(container: object, key: str) -> list[Slot]:
    """`container[key]` when it is a string."""
    if isinstance(container, dict) and isinstance(container.get(key), str):
        return [Slot(container, key)]
    return []


def content(container: object, key: str, kinds: frozenset[str] | None) -> list[Slot]:
    """A message's text: a string, or the `.text` of its parts whose type is in `kinds`.

    `kinds=None` takes every part with a string `text` (Bedrock and Gemini parts have no type).
    """
    if not isinstance(container, dict):
        return []
    value = container.get(key)
    if isinstance(value, str):
        return [Slot(container, key)]
    return [
        Slot(part, "text")
        for part in dicts(value)
        if isinstance(part.get("text"), str) and (kinds is None or part.get("type") in kinds)
    ]


def each_string(container: object, key: str) -> Groups:
    """A string, or a list of strings, each its own text (token lists are left alone)."""
    value = container.get(key) if isinstance(container, dict) else None
    if isinstance(value, str):
        return [[Slot(container, key)]]
    if isinstance(value, list):
        return [[Slot(value, index)] for index, item in enumerate(value) if isinstance(item, str)]
    return []


def json_field(container: object, key: str) -> Groups:
    """Tool input: a JSON string (masked by value, see `mask_groups`) or an object's strings."""
    value = container.get(key) if isinstance(container, dict) else None
    if isinstance(value, str):
        return [[Slot(container, key, encoded=True)]]
    return strings(value)


def strings(document: object) -> Groups:
    """Every string value inside a dict or list (never a key), each its own text."""
    groups: Groups = []
    stack = [document]
    while stack:
        node = stack.pop()
        items: Iterable[tuple[Any, Any]]
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        for key, value in items:
            if isinstance(value, str):
                groups.append([Slot(node, key)])
            elif isinstance(value, dict | list):
                stack.append(value)
    return groups


def mask_groups(groups: Iterable[list[Slot]], transform: TextTransform) -> bool:
    """Apply the transform to each group and write back changed strings; True if any did."""
    changed = False
    for group in groups:
        if len(group) == 1 and group[0].encoded:
            changed |= _mask_encoded(group[0], transform)
        elif group:
            texts = [slot.get() for slot in group]
            for slot, old, new in zip(group, texts, transform.apply(texts), strict=True):
                if new != old:
                    slot.set(new)
                    changed = True
    return changed


def _mask_encoded(slot: Slot, transform: TextTransform) -> bool:
    """Mask the string values of a JSON string and re-encode it; mask it as text if not JSON
    (or if a key repeats, which would hide a copy from the values masked)."""
    try:
        holder = [parse_json(slot.get())]
    except (ValueError, RecursionError):
        return mask_groups([[Slot(slot.container, slot.key)]], transform)
    if not mask_groups(strings(holder), transform):
        return False
    slot.set(dumps(holder[0]).decode())
    return True


def mask_document(body: bytes, what: str, transform: TextTransform, groups: GroupsOf) -> bytes:
    """Mask a JSON body; the same bytes object back when nothing changed."""
    if not body:
        return body
    holder = [load_json(body, what)]
    found = [[Slot(holder, 0)]] if isinstance(holder[0], str) else groups(holder[0])
    return dumps(holder[0]) if mask_groups(found, transform) else body


class BodyRewriter(Protocol):
    """Masks a response body as it streams: what `feed` and `finish` return is sent on."""

    def feed(self, chunk: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class BufferedRewriter:
    """Collects a whole (bounded) body and masks it at the end: JSON cannot be masked in parts."""

    def __init__(self, mask: Callable[[bytes], bytes]) -> None:
        self._mask = mask
        self._chunks: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        self._chunks.append(chunk)
        return b""

    def finish(self) -> bytes:
        return self._mask(b"".join(self._chunks))


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One whole server-sent event as it arrived, and its parsed fields."""

    raw: bytes
    name: str | None
    data: str | None
    lines: tuple[str, ...]
    newline: str

    @classmethod
    def parse(cls, raw: bytes) -> SseEvent:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise MaskingError(
                "A streamed event is not UTF-8 text, so it cannot be masked; call without "
                "streaming or remove response masking from the policy."
            ) from None
        lines = tuple(takewhile(bool, (line.removesuffix("\r") for line in text.split("\n"))))
        name, data = None, []
        for line in lines:
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "event":
                name = value
            elif key == "data":
                data.append(value)
        newline = "\r\n" if "\r\n" in text else "\n"
        return cls(raw, name, "\n".join(data) if data else None, lines, newline)

    def with_document(self, document: Any) -> bytes:
        return self.with_data(dumps(document).decode())

    def with_data(self, data: str) -> bytes:
        """This event with new data, keeping its other lines (`event:`, `id:`) in place."""
        new = [f"data: {part}" for part in data.split("\n")]
        out: list[str] = []
        for line in self.lines:
            if line.partition(":")[0] != "data":
                out.append(line)
            elif new:
                out += new
                new = []
        out += new  # an event that had no data line
        return (self.newline.join(out) + self.newline * 2).encode()


def build_event(name: str | None, document: Any, newline: str) -> bytes:
    """A new event in the wire format of the stream it joins."""
    head = f"event: {name}{newline}" if name else ""
    return head.encode() + b"data: " + dumps(document) + (newline * 2).encode()


class EventRewriter(ABC):
    """Rewrites the whole events of one SSE response; adapters say where their text is."""

    def __init__(self, transform: TextTransform) -> None:
        self.transform = transform
        self.newline = "\n"
        """The line ending of the stream, for events this rewriter adds."""

    def event(self, raw: bytes) -> bytes:
        event = SseEvent.parse(raw)
        if event.lines:
            self.newline = event.newline
        return self.rewrite(event)

    @abstractmethod
    def rewrite(self, event: SseEvent) -> bytes:
        """The bytes to send for one event: `event.raw` itself when it carries no changed text."""

    def close(self) -> bytes:
        """Events to send when the upstream body ends."""
        return b""


def event_json(event: SseEvent) -> Any:
    """The JSON data of an event; None for an event without data."""
    return load_json(event.data, "streamed event") if event.data else None


def ident(value: object) -> str | int:
    """An index or id that names a streamed text; anything else is a stream not understood."""
    if isinstance(value, str | int):
        return value
    raise MaskingError(
        "The response stream has an event GeoGate does not understand, so it cannot be "
        "masked; call without streaming or remove response masking from the policy."
    )


class StreamedText(EventRewriter):
    """An event rewriter that keeps one `TextStream` per text arriving in deltas."""

    def __init__(self, transform: TextTransform) -> None:
        super().__init__(transform)
        self._streams: dict[Key, TextStream] = {}

    def feed(self, key: Key, container: dict[str, Any], name: str) -> bool:
        """Pass `container[name]` through the text's stream; True if it changed."""
        old = container.get(name)
        if not isinstance(old, str):
            return False
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = self.transform.stream()
        new = stream.feed(old)
        container[name] = new
        return new != old

    def finish(self, key: Key) -> str:
        """End a text: what its stream still held back ("" if it had no stream)."""
        stream = self._streams.pop(key, None)
        return stream.finish() if stream is not None else ""

    def keys(self) -> list[Key]:
        return list(self._streams)

    def tail_events(self, keys: Iterable[Key]) -> bytes:
        """End these texts, each held-back tail in an event of its own."""
        return b"".join(self.tail_event(key, tail) for key in keys if (tail := self.finish(key)))

    @abstractmethod
    def tail_event(self, key: Key, tail: str) -> bytes:
        """A delta event carrying the last part of a text."""

    def close(self) -> bytes:
        return self.tail_events(self.keys())


class SseRewriter:
    """Splits an SSE body into whole events (ending at a blank line) and rewrites each."""

    def __init__(self, events: EventRewriter) -> None:
        self._events = events
        self._buffer = bytearray()
        self._line = 0
        """Where the unfinished line starts in the buffer."""

    def feed(self, chunk: bytes) -> bytes:
        search = len(self._buffer)
        self._buffer += chunk
        out: list[bytes] = []
        start = 0
        line = self._line
        while (end := self._buffer.find(b"\n", search)) != -1:
            blank = end == line or (end == line + 1 and self._buffer[line] == 0x0D)
            line = search = end + 1
            if blank:
                out.append(self._events.event(bytes(self._buffer[start:line])))
                start = line
        del self._buffer[:start]
        self._line = line - start
        return b"".join(out)

    def finish(self) -> bytes:
        """Rewrite a last event that lacks its blank line too (fail closed), then end texts."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        self._line = 0
        return (self._events.event(rest) if rest else b"") + self._events.close()
