"""Anthropic's Messages API."""

from __future__ import annotations

from typing import Any

from geogate.policy import RequestFacts
from geogate.protocols.base import ProtocolAdapter


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
