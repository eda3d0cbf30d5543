"""OpenAI and OpenAI-compatible APIs (chat completions, responses, embeddings, models).

Azure OpenAI speaks the same wire format under `/openai/deployments/{name}/...`, and its SDK
(`openai.AzureOpenAI`) reads the same error shape. Mistral's API is OpenAI-compatible too; its
errors carry `object: "error"` and a top-level `message`, which its SDK shows.
"""

from __future__ import annotations

from geogate.protocols.base import ProtocolAdapter


class OpenAIAdapter(ProtocolAdapter):
    name = "openai"


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
