"""Connection type -> adapter."""

from __future__ import annotations

from geogate.protocols.anthropic import AnthropicAdapter
from geogate.protocols.base import ProtocolAdapter
from geogate.protocols.bedrock import BedrockAdapter
from geogate.protocols.http import HttpAdapter
from geogate.protocols.openai import AzureOpenAIAdapter, MistralAdapter, OpenAIAdapter
from geogate.protocols.vertex import VertexAdapter

_ADAPTERS: dict[str, ProtocolAdapter] = {
    adapter.name: adapter
    for adapter in (
        OpenAIAdapter(),
        AzureOpenAIAdapter(),
        MistralAdapter(),
        AnthropicAdapter(),
        BedrockAdapter(),
        HttpAdapter(),
        VertexAdapter(),
    )
}


def adapter_for(connection_type: str) -> ProtocolAdapter:
    """The adapter of a connection type; types without one yet speak plain HTTP errors."""
    return _ADAPTERS.get(connection_type, _ADAPTERS["http"])
