"""Plain HTTP targets: any body passes through as a stream; errors use the OpenAI shape."""

from __future__ import annotations

from geogate.protocols.base import ProtocolAdapter


class HttpAdapter(ProtocolAdapter):
    name = "http"
    json_body = False
