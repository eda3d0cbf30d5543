"""The interface every protocol adapter implements."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import unquote

from geogate.dlp.transform import MaskingError, TextTransform
from geogate.policy import RequestFacts
from geogate.protocols.text import (
    SSE,
    BodyRewriter,
    BufferedRewriter,
    EventRewriter,
    Groups,
    SseRewriter,
    mask_document,
    media_type,
    strings,
)

_BEDROCK_MODEL = re.compile(
    r"/model/(.+?)/(?:converse|converse-stream|invoke|invoke-with-response-stream)$"
)
"""The model segment, percent-encoded or not: an ARN written plainly holds slashes."""
_VERTEX_LOCATION = re.compile(r"/locations/([a-z0-9-]+)(?:/|$)")


class RequestBodyError(ValueError):
    """The request body is not what this API accepts; the message is shown to the caller."""


class ProtocolAdapter:
    """Defaults shared by JSON APIs; subclasses override what their provider does differently."""

    name: ClassVar[str]
    json_body: ClassVar[bool] = True
    """Whether a request body declared as JSON must parse (and is buffered to check it)."""
    request_id_header: ClassVar[bytes] = b"x-request-id"
    """The header the provider's SDK reads a request id from (shown in its exceptions)."""
    dropped_request_headers: ClassVar[frozenset[bytes]] = frozenset()
    """Caller headers that must not reach the target (e.g. a caller's own request signature)."""
    maskable: ClassVar[str] = "JSON"
    """The body types this adapter can mask, as told to a caller who sent another."""

    def error_headers(self, code: str) -> list[tuple[bytes, bytes]]:
        """Headers the provider's SDK reads an error's code from; none for most."""
        return []

    def error_payload(
        self, code: str, message: str, request_id: str, details: dict[str, object]
    ) -> dict[str, object]:
        """The OpenAI error shape, which the openai SDK and most generic clients understand."""
        return {
            "error": {
                "type": "geogate",
                "code": code,
                "message": message,
                "request_id": request_id,
                **details,
            }
        }

    def error_body(
        self, code: str, message: str, request_id: str, details: dict[str, object]
    ) -> bytes:
        return json.dumps(self.error_payload(code, message, request_id, details)).encode()

    def stream_error_event(self, code: str, message: str, request_id: str) -> bytes:
        """An SSE `error` event: both the openai and anthropic SDKs raise it as an APIError."""
        return b"event: error\ndata: " + self.error_body(code, message, request_id, {}) + b"\n\n"

    def parse_request(self, body: bytes, content_type: str) -> RequestFacts:
        """Check a buffered JSON body and read the facts policy may need."""
        if not body or "json" not in content_type:
            return RequestFacts()
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise RequestBodyError(f"The request body is not valid JSON ({exc}).") from exc
        if not isinstance(document, dict):
            return RequestFacts()
        return self.facts(document)

    def path_facts(self, path: bytes, facts: RequestFacts) -> RequestFacts:
        """Add what the URL path says about where the call runs.

        Bedrock names the model in the path (`/model/{id}/converse`, an id that may be a
        cross-region inference profile or an ARN); Vertex names the location
        (`/projects/P/locations/{location}/...`). The policy reads them only for connections
        in an `aws:` or `gcp:` region.
        """
        path = b"/" + path.lstrip(b"/")  # the part after /c/NAME/, which has no leading slash
        if b"/model/" not in path and b"/locations/" not in path:
            return facts
        text = path.decode("latin-1")
        model = _BEDROCK_MODEL.search(text)
        location = _VERTEX_LOCATION.search(unquote(text))
        return replace(
            facts,
            bedrock_model=unquote(model.group(1)) if model else None,
            location=location.group(1) if location else None,
        )

    def facts(self, document: dict[str, Any]) -> RequestFacts:
        """The facts in a parsed JSON request; adapters add their provider's own."""
        model = document.get("model")
        return RequestFacts(model=model if isinstance(model, str) else None)

    def request_groups(self, document: Any) -> Groups:
        """Where the text of a parsed request is; by default every string value (fail closed)."""
        return strings(document)

    def response_groups(self, document: Any) -> Groups:
        """Where the text of a parsed response is; by default every string value."""
        return strings(document)

    def accepts(self, media: str) -> bool:
        """Whether bodies of this media type can be masked (an unlabelled body is tried as JSON)."""
        return not media or "json" in media

    def mask_request(self, body: bytes, content_type: str, transform: TextTransform) -> bytes:
        """The request body with its text masked; the same bytes object if nothing changed."""
        media = media_type(content_type)
        if body and not self.accepts(media):
            raise MaskingError(
                f"GeoGate cannot mask a {self.name} request body of type {media or 'unknown'}; "
                f"send {self.maskable} or remove request masking from the policy."
            )
        return self.mask_body(body, media, transform, self.request_groups, "request")

    def mask_response(self, body: bytes, content_type: str, transform: TextTransform) -> bytes:
        """The response body with its text masked; the same bytes object if nothing changed."""
        media = media_type(content_type)
        if media == SSE:
            rewriter = self.response_stream(content_type, transform)
            masked = rewriter.feed(body) + rewriter.finish()
            return body if masked == body else masked
        if body and not self.accepts(media):
            raise self._unmaskable_response(media)
        return self.mask_body(body, media, transform, self.response_groups, "response")

    def mask_body(
        self,
        body: bytes,
        media: str,
        transform: TextTransform,
        groups: Callable[[Any], Groups],
        side: str,
    ) -> bytes:
        """Mask a body of an accepted type; adapters that take more than JSON add theirs."""
        return mask_document(body, f"{self.name} {side} body", transform, groups)

    def response_stream(self, content_type: str, transform: TextTransform) -> BodyRewriter:
        """A rewriter that masks the response body as it streams.

        SSE is masked event by event; other accepted types are collected and masked whole.
        """
        media = media_type(content_type)
        if media == SSE:
            return SseRewriter(self.stream_events(transform))
        if not self.accepts(media):
            raise self._unmaskable_response(media)
        return BufferedRewriter(lambda body: self.mask_response(body, content_type, transform))

    def stream_events(self, transform: TextTransform) -> EventRewriter:
        """How this provider's SSE events are masked; refused where it is not known."""
        raise MaskingError(
            f"GeoGate cannot mask streamed {self.name} responses; call without streaming or "
            f"remove response masking from the policy."
        )

    def _unmaskable_response(self, media: str) -> MaskingError:
        return MaskingError(
            f"GeoGate cannot mask {self.name} responses of type {media or 'unknown'}; call "
            f"without streaming or remove response masking from the policy."
        )
