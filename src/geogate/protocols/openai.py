"""OpenAI and OpenAI-compatible APIs (chat completions, responses, embeddings, models).

Azure OpenAI speaks the same wire format under `/openai/deployments/{name}/...`, and its SDK
(`openai.AzureOpenAI`) reads the same error shape. Mistral's API is OpenAI-compatible too; its
errors carry `object: "error"` and a top-level `message`, which its SDK shows.
"""

from __future__ import annotations

from typing import Any

from geogate.dlp.transform import MaskingError, TextTransform
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
    each_string,
    event_json,
    field,
    ident,
    json_field,
    mask_groups,
)

_PARTS = frozenset({"text", "input_text", "output_text"})
"""Content part types whose `.text` is text (chat and Responses API)."""
_COPIED = ("id", "object", "created", "model", "system_fingerprint")
"""Chunk fields an added chunk takes from the one before it."""
_FULL_TEXT = {
    "response.output_text.done": "text",
    "response.function_call_arguments.done": "arguments",
}


class OpenAIAdapter(ProtocolAdapter):
    name = "openai"

    def request_groups(self, document: Any) -> Groups:
        return openai_request_groups(document)

    def response_groups(self, document: Any) -> Groups:
        return openai_response_groups(document)

    def stream_events(self, transform: TextTransform) -> EventRewriter:
        return _OpenAIEvents(transform)


class AzureOpenAIAdapter(OpenAIAdapter):
    name = "azure-openai"


class MistralAdapter(OpenAIAdapter):
    name = "mistral"

    def error_payload(
        self, code: str, message: str, request_id: str, details: dict[str, object]
    ) -> dict[str, object]:
        """Mistral's shape, keeping the `error` object OpenAI-style clients read as well."""
        return {
            "object": "error",
            "message": message,
            "type": "geogate",
            "code": code,
            "request_id": request_id,
            **super().error_payload(code, message, request_id, details),
        }


def openai_request_groups(document: Any) -> Groups:
    """Chat messages and their tool calls, legacy `prompt`, and `input` of embeddings and the
    Responses API (strings, or items: messages, tool outputs, tool calls), `instructions`."""
    doc = as_dict(document)
    groups = [field(doc, "instructions"), *each_string(doc, "prompt"), *each_string(doc, "input")]
    for message in dicts(doc.get("messages")):
        groups.append(content(message, "content", _PARTS))
        groups += _tool_calls(message)
    for item in dicts(doc.get("input")):
        groups += [content(item, "content", _PARTS), content(item, "output", _PARTS)]
        groups += json_field(item, "arguments")
    return groups


def openai_response_groups(document: Any) -> Groups:
    """Chat and completion choices, and the Responses API's output items."""
    doc = as_dict(document)
    groups: Groups = []
    for choice in dicts(doc.get("choices")):
        _refuse_logprobs(choice)
        message = as_dict(choice.get("message"))
        groups += [field(choice, "text"), content(message, "content", _PARTS)]
        groups += _tool_calls(message)
    for item in dicts(doc.get("output")):
        groups += _output_item(item, encoded=True)
    return groups


def _tool_calls(message: dict[str, Any]) -> Groups:
    calls = [as_dict(call.get("function")) for call in dicts(message.get("tool_calls"))]
    return [group for function in calls for group in json_field(function, "arguments")]


def _output_item(item: dict[str, Any], *, encoded: bool) -> Groups:
    """A Responses API output item: each output_text part on its own (as it streams), and a
    function call's arguments (by value, or as the text they streamed as)."""
    for part in dicts(item.get("content")):
        _refuse_logprobs(part)
    groups = [[slot] for slot in content(item, "content", _PARTS)]
    if item.get("type") == "function_call":
        groups += json_field(item, "arguments") if encoded else [field(item, "arguments")]
    return groups


def _refuse_logprobs(container: dict[str, Any]) -> None:
    """Logprobs list the tokens of the text, which masking cannot reach."""
    if container.get("logprobs"):
        raise MaskingError(
            "The response carries logprobs, whose tokens would show the text unmasked; ask "
            "without logprobs or remove response masking from the policy."
        )


class _OpenAIEvents(StreamedText):
    """Chat completion chunks (`data: {...}`, ending `data: [DONE]`) and Responses API events.

    A text's held-back tail leaves with the chunk that carries its choice's `finish_reason`
    (chat), or in a delta event just before its `.done` event (Responses API).
    """

    def __init__(self, transform: TextTransform) -> None:
        super().__init__(transform)
        self._last: dict[str, Any] = {}
        self._sequence: object = None

    def rewrite(self, event: SseEvent) -> bytes:
        if event.data == "[DONE]":
            return self.close() + event.raw
        doc = event_json(event)
        if not isinstance(doc, dict):
            return event.raw
        kind = doc.get("type")
        if isinstance(kind, str) and kind.startswith("response."):
            before, changed = self._response_event(kind, doc)
        elif isinstance(doc.get("choices"), list):
            before, changed = b"", self._chunk(doc)
        else:
            return event.raw
        return before + (event.with_document(doc) if changed else event.raw)

    def _chunk(self, chunk: dict[str, Any]) -> bool:
        self._last = chunk
        changed = False
        for choice in dicts(chunk["choices"]):
            _refuse_logprobs(choice)
            index = ident(choice.get("index", 0))
            delta = as_dict(choice.get("delta"))
            changed |= self.feed(("completion", index), choice, "text")
            changed |= self.feed(("content", index), delta, "content")
            for part in dicts(delta.get("content")):
                if part.get("type") == "text":
                    changed |= self.feed(("content", index), part, "text")
            for call in dicts(delta.get("tool_calls")):
                tool: Key = ("tool", index, ident(call.get("index", 0)))
                changed |= self.feed(tool, as_dict(call.get("function")), "arguments")
            if choice.get("finish_reason") is not None:
                for key in self.keys():
                    if key[1] == index and (tail := self.finish(key)):
                        _place(choice, key, tail)
                        changed = True
        return changed

    def _response_event(self, kind: str, doc: dict[str, Any]) -> tuple[bytes, bool]:
        self._sequence = doc.get("sequence_number", self._sequence)
        if kind == "response.output_text.delta":
            _refuse_logprobs(doc)
            return b"", self.feed(_text_key(doc), doc, "delta")
        if kind == "response.function_call_arguments.delta":
            return b"", self.feed(_arguments_key(doc), doc, "delta")
        before = b""
        if kind == "response.output_text.done":
            before = self.tail_events([_text_key(doc)])
        elif kind == "response.function_call_arguments.done":
            before = self.tail_events([_arguments_key(doc)])
        # Whole texts repeated in later events must read as the deltas did: each on its own.
        slots = field(doc, _FULL_TEXT[kind]) if kind in _FULL_TEXT else []
        part = as_dict(doc.get("part"))
        slots += field(part, "text") if part.get("type") == "output_text" else []
        items = [as_dict(doc.get("item")), *dicts(as_dict(doc.get("response")).get("output"))]
        groups = [[slot] for slot in slots]
        for item in items:
            groups += _output_item(item, encoded=False)
        return before, mask_groups(groups, self.transform)

    def tail_event(self, key: Key, tail: str) -> bytes:
        """A delta event for a text the stream ended without finishing."""
        if key[0] == "output_text":
            name = "response.output_text.delta"
            ids = {"item_id": key[1], "output_index": key[2], "content_index": key[3]}
            doc: dict[str, Any] = {"type": name, **ids, "delta": tail, "logprobs": []}
        elif key[0] == "arguments":
            name = "response.function_call_arguments.delta"
            doc = {"type": name, "item_id": key[1], "output_index": key[2], "delta": tail}
        else:
            choice: dict[str, Any] = {"index": key[1], "delta": {}, "finish_reason": None}
            if key[0] == "completion":
                choice = {"index": key[1], "text": "", "finish_reason": None}
            _place(choice, key, tail)
            chunk = {name: self._last[name] for name in _COPIED if name in self._last}
            return build_event(None, {**chunk, "choices": [choice]}, self.newline)
        if self._sequence is not None:
            doc["sequence_number"] = self._sequence
        return build_event(name, doc, self.newline)


def _text_key(doc: dict[str, Any]) -> Key:
    item = ident(doc.get("item_id"))
    return (
        "output_text",
        item,
        ident(doc.get("output_index", 0)),
        ident(doc.get("content_index", 0)),
    )


def _arguments_key(doc: dict[str, Any]) -> Key:
    return ("arguments", ident(doc.get("item_id")), ident(doc.get("output_index", 0)))


def _place(choice: dict[str, Any], key: Key, tail: str) -> None:
    """Append a text's held-back tail to the chat choice (of a chunk) that ends it."""
    if key[0] == "completion":
        choice["text"] = _text(choice.get("text")) + tail
        return
    delta = _child(choice, "delta")
    if key[0] == "content":
        value = delta.get("content")
        if isinstance(value, list):
            value.append({"type": "text", "text": tail})
        else:
            delta["content"] = _text(value) + tail
        return
    calls = delta.get("tool_calls")
    if not isinstance(calls, list):
        calls = delta["tool_calls"] = []
    call = next((call for call in dicts(calls) if call.get("index", 0) == key[2]), None)
    if call is None:
        calls.append({"index": key[2], "function": {"arguments": tail}})
    else:
        function = _child(call, "function")
        function["arguments"] = _text(function.get("arguments")) + tail


def _child(container: dict[str, Any], key: str) -> dict[str, Any]:
    value = container.get(key)
    if not isinstance(value, dict):
        value = container[key] = {}
    return value


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
