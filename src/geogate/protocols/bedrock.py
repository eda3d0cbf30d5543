"""Amazon Bedrock Runtime (Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream).

The gateway signs each request with AWS Signature Version 4 for the target's own region, using
the connection's `credentials.aws` (keys, or a profile of the gateway host); the caller never
holds AWS credentials, and any SigV4 headers it sent are dropped. Event-stream responses pass
through as the bytes they are. Refusals carry `x-amzn-ErrorType`, which boto3 turns into the
`ClientError` code, and a `message`, which it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials
from botocore.session import Session

from geogate.config import AwsCredentials
from geogate.protocols.anthropic import anthropic_request_groups, anthropic_response_groups
from geogate.protocols.base import ProtocolAdapter
from geogate.protocols.text import Groups, as_dict, content, dicts, json_field, strings

_CALLER_SIGNATURE = frozenset({b"x-amz-date", b"x-amz-security-token", b"x-amz-content-sha256"})
_CONVERSE = frozenset(
    {
        "messages",
        "system",
        "inferenceConfig",
        "toolConfig",
        "guardrailConfig",
        "additionalModelRequestFields",
        "additionalModelResponseFieldPaths",
        "promptVariables",
        "requestMetadata",
        "performanceConfig",
    }
)
"""The fields of a Converse request; any other body is a model's own InvokeModel format."""


class BedrockAdapter(ProtocolAdapter):
    name = "bedrock"
    request_id_header = b"x-amzn-requestid"
    dropped_request_headers: ClassVar[frozenset[bytes]] = _CALLER_SIGNATURE

    def error_payload(
        self, code: str, message: str, request_id: str, details: dict[str, object]
    ) -> dict[str, object]:
        return {"message": message, "code": code, "request_id": request_id, **details}

    def error_headers(self, code: str) -> list[tuple[bytes, bytes]]:
        return [(b"x-amzn-errortype", code.encode())]

    def request_groups(self, document: Any) -> Groups:
        """Converse; InvokeModel with an Anthropic body; any other model's body: every string."""
        doc = as_dict(document)
        if "anthropic_version" in doc:
            return anthropic_request_groups(doc)
        if not doc or not doc.keys() <= _CONVERSE:
            return strings(document)
        groups = [content(doc, "system", None)]
        for message in dicts(doc.get("messages")):
            groups += _converse_message(message)
        return groups

    def response_groups(self, document: Any) -> Groups:
        doc = as_dict(document)
        if doc.get("type") == "message":
            return anthropic_response_groups(doc)
        if isinstance(doc.get("output"), dict):
            return _converse_message(as_dict(doc["output"].get("message")))
        return strings(document)


def _converse_message(message: dict[str, Any]) -> Groups:
    """Text blocks read as one; tool use input values; tool results' text and JSON values."""
    groups = [content(message, "content", None)]
    for block in dicts(message.get("content")):
        groups += json_field(as_dict(block.get("toolUse")), "input")
        result = as_dict(block.get("toolResult"))
        groups.append(content(result, "content", None))
        for part in dicts(result.get("content")):
            groups += json_field(part, "json")
    return groups


class SigV4Signer:
    """Signs requests to one Bedrock region with credentials resolved once, at start."""

    def __init__(self, settings: AwsCredentials, region: str) -> None:
        self._region = region
        self._credentials = _credentials(settings)

    def sign(
        self, method: str, url: str, headers: Sequence[tuple[str, str]], body: bytes
    ) -> list[tuple[str, str]]:
        """The headers that authenticate this exact request (method, URL, body)."""
        credentials: ReadOnlyCredentials = self._credentials.get_frozen_credentials()
        kept = {name: value for name, value in headers if name.lower() == "content-type"}
        request = AWSRequest(method=method, url=url, data=body, headers=kept)
        SigV4Auth(credentials, "bedrock", self._region).add_auth(request)
        names = ("Authorization", "X-Amz-Date", "X-Amz-Security-Token")
        return [(name, str(request.headers[name])) for name in names if name in request.headers]


def _credentials(settings: AwsCredentials) -> Credentials:
    if settings.access_key_id and settings.secret_access_key:
        return Credentials(
            settings.access_key_id, settings.secret_access_key, settings.session_token
        )
    found = Session(profile=settings.profile).get_credentials()
    if found is None:
        raise ValueError(
            "no AWS credentials: give access_key_id and secret_access_key, or a profile the "
            "gateway host has"
        )
    return found
