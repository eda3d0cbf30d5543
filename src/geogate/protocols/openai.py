"""OpenAI and OpenAI-compatible APIs (chat completions, responses, embeddings, models)."""

from __future__ import annotations

from geogate.protocols.base import ProtocolAdapter


class OpenAIAdapter(ProtocolAdapter):
    name = "openai"
