"""Plain HTTP targets: any body passes through as a stream; errors use the OpenAI shape.

Masking knows no schema here: every string value of a JSON body, the values of a form, the
whole of a text body, and each SSE event on its own (MCP's streamable HTTP sends one JSON-RPC
message per event).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode

from geogate.dlp.transform import MaskingError, TextTransform
from geogate.protocols.base import ProtocolAdapter
from geogate.protocols.text import (
    EventRewriter,
    Groups,
    Slot,
    SseEvent,
    load_json,
    mask_groups,
    strings,
)

_FORM = "application/x-www-form-urlencoded"


class HttpAdapter(ProtocolAdapter):
    name = "http"
    json_body = False
    maskable: ClassVar[str] = "JSON, text or form data"

    def accepts(self, media: str) -> bool:
        return super().accepts(media) or media.startswith("text/") or media == _FORM

    def mask_body(
        self,
        body: bytes,
        media: str,
        transform: TextTransform,
        groups: Callable[[Any], Groups],
        side: str,
    ) -> bytes:
        form = media == _FORM
        if not body or not (form or media.startswith("text/")):
            return super().mask_body(body, media, transform, groups, side)
        try:
            text = body.decode()
            pairs = parse_qsl(text, keep_blank_values=True, errors="strict") if form else []
        except (UnicodeDecodeError, ValueError):
            raise MaskingError(
                f"The {side} body is not UTF-8 {media}, so GeoGate cannot mask it; send UTF-8 "
                f"or remove {side} masking from the policy."
            ) from None
        if not form:
            masked = transform.apply([text])[0]
            return body if masked == text else masked.encode()
        fields = [list(pair) for pair in pairs]
        if not mask_groups([[Slot(pair, 1)] for pair in fields], transform):
            return body
        return urlencode([(key, value) for key, value in fields]).encode()

    def stream_events(self, transform: TextTransform) -> EventRewriter:
        return _HttpEvents(transform)


class _HttpEvents(EventRewriter):
    """Each event on its own: the string values of JSON data, or the data as one text."""

    def rewrite(self, event: SseEvent) -> bytes:
        if not event.data:
            return event.raw
        try:
            holder = [load_json(event.data, "event")]
        except MaskingError:
            masked = self.transform.apply([event.data])[0]
            return event.raw if masked == event.data else event.with_data(masked)
        changed = mask_groups(strings(holder), self.transform)
        return event.with_document(holder[0]) if changed else event.raw
