"""Anthropic's Messages API."""

from __future__ import annotations

from typing import Any

from geogate.dlp.transform import TextTransform
from geogate.policy import RequestFacts
from geogate.protocols.base import ProtocolAdapter
from geogate.protocols.text import (
    EventRewriter,
    Groups,
    Key,
    SseEvent,
    StreamedText,
    as_dict,
    build_event,
    content,
    dicts,
    event_json,
    ident,
    json_field,
)

_TEXT = frozenset({"text"})
_DELTAS = {"text_delta": "text", "input_json_delta": "partial_json"}
"""Streamed delta types -> the field that holds their text."""


class AnthropicAdapter(ProtocolAdapter):
    name = "anthropic"
    request_id_header = b"request-id"

    def error_payload(
        self, code: str, message: str, request_id: str, details: dict[str, object]
    ) -> dict[str, object]:
        """Anthropic's shape: the anthropic SDK shows `error.type` and `error.message`."""
        return {
            "type": "error",
            "error": {"type": code, "message": message, **details},
            "request_id": request_id,
        }

    def facts(self, document: dict[str, Any]) -> RequestFacts:
        """The model, and the geography the request asks Anthropic to process in."""
        facts = super().facts(document)
        geo = document.get("inference_geo")
        return RequestFacts(model=facts.model, geo=geo if isinstance(geo, str) else None)

    def request_groups(self, document: Any) -> Groups:
        return anthropic_request_groups(document)

    def response_groups(self, document: Any) -> Groups:
        return anthropic_response_groups(document)

    def stream_events(self, transform: TextTransform) -> EventRewriter:
        return _AnthropicEvents(transform)


def anthropic_request_groups(document: Any) -> Groups:
    """The system prompt (a string or text blocks), then each message."""
    doc = as_dict(document)
    groups = [content(doc, "system", _TEXT)]
    for message in dicts(doc.get("messages")):
        groups += _message(message)
    return groups


def anthropic_response_groups(document: Any) -> Groups:
    return _message(as_dict(document))


def _message(message: dict[str, Any]) -> Groups:
    """A message's text (a string or text blocks, read as one), its tool calls' input values,
    and the text of each tool result."""
    groups = [content(message, "content", _TEXT)]
    for block in dicts(message.get("content")):
        if block.get("type") == "tool_use":
            groups += json_field(block, "input")
        elif block.get("type") == "tool_result":
            groups.append(content(block, "content", _TEXT))
    return groups


class _AnthropicEvents(StreamedText):
    """Messages API events: one text per content block index, its held-back tail sent in a
    `content_block_delta` just before the block's `content_block_stop`."""

    def rewrite(self, event: SseEvent) -> bytes:
        doc = event_json(event)
        if not isinstance(doc, dict):
            return event.raw
        kind, before, changed = doc.get("type"), b"", False
        if kind == "content_block_start":
            block = as_dict(doc.get("content_block"))
            changed = self.feed((ident(doc.get("index")), "text_delta"), block, "text")
        elif kind == "content_block_delta":
            delta = as_dict(doc.get("delta"))
            delta_type = delta.get("type")
            if isinstance(delta_type, str) and delta_type in _DELTAS:
                key = (ident(doc.get("index")), delta_type)
                changed = self.feed(key, delta, _DELTAS[delta_type])
        elif kind == "content_block_stop":
            index = ident(doc.get("index"))
            before = self.tail_events([key for key in self.keys() if key[0] == index])
        return before + (event.with_document(doc) if changed else event.raw)

    def tail_event(self, key: Key, tail: str) -> bytes:
        index, delta_type = key
        delta = {"type": delta_type, _DELTAS[str(delta_type)]: tail}
        doc = {"type": "content_block_delta", "index": index, "delta": delta}
        return build_event("content_block_delta", doc, self.newline)
