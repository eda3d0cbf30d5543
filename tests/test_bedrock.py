"""Bedrock through the gateway: boto3 as the caller, SigV4 signed by the gateway, region proven.

The caller holds only a GeoGate key (boto3 sends it as a Bedrock bearer token); the gateway
signs each request with the connection's AWS keys for the endpoint's region. The stand-in
Bedrock checks that signature the way AWS does, over TLS with a test CA, on an address that the
policy places in `aws:eu-central-1`.
"""

from __future__ import annotations

import binascii
import json
import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from starlette.types import Receive, Scope, Send

from tests.gateways import Gateway, run_gateway
from tests.servers import run_asgi
from tests.tls import CertificateAuthority

ACCESS, SECRET = "AKIDGEOGATETEST", "geogate/test/secret/key/for/sigv4/only"
HOST = "bedrock-runtime.eu-central-1.amazonaws.com"


class Bedrock:
    """Answers Converse calls whose SigV4 signature verifies; counts the rest."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, dict[str, str]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = [(await receive()).get("body", b"")]
        headers = {name.decode(): value.decode() for name, value in scope["headers"]}
        ok = _verifies(scope, headers, b"".join(chunks))
        self.calls.append((scope["path"], ok, headers))
        if ok and scope["path"].endswith("/converse-stream"):
            await _stream_reply(send)
            return
        if ok:
            status, body, extra = 200, _converse_reply(), []
        else:
            status = 403
            body = json.dumps({"message": "The request signature does not match."}).encode()
            extra = [(b"x-amzn-errortype", b"InvalidSignatureException")]
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *extra,
        ]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})


def _verifies(scope: Scope, headers: dict[str, str], body: bytes) -> bool:
    match = re.match(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/bedrock/aws4_request, "
        r"SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$",
        headers.get("authorization", ""),
    )
    if match is None or match.group(1) != ACCESS or match.group(3) != "eu-central-1":
        return False
    signed = {name: headers[name] for name in match.group(4).split(";") if name in headers}
    raw_path = scope["raw_path"].decode()
    request = AWSRequest(
        method=scope["method"],
        url=f"https://{headers['host']}{raw_path}",
        data=body,
        headers=signed,
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(Credentials(ACCESS, SECRET), "bedrock", "eu-central-1")
    expected = auth.signature(
        auth.string_to_sign(request, auth.canonical_request(request)), request
    )
    return bool(expected == match.group(5))


def _event(event_type: str, payload: dict[str, Any]) -> bytes:
    """One AWS event-stream message (prelude, string headers, JSON payload, CRCs)."""
    headers = b""
    for name, value in (
        (":message-type", "event"),
        (":event-type", event_type),
        (":content-type", "application/json"),
    ):
        raw = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(raw)) + raw
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message))


async def _stream_reply(send: Send) -> None:
    """ConverseStream's answer, one event per chunk, as Bedrock streams it."""
    headers = [(b"content-type", b"application/vnd.amazon.eventstream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    events = [
        _event("messageStart", {"role": "assistant"}),
        *(
            _event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": word}})
            for word in ("hello ", "from ", "eu")
        ),
        _event("contentBlockStop", {"contentBlockIndex": 0}),
        _event("messageStop", {"stopReason": "end_turn"}),
        _event(
            "metadata",
            {
                "usage": {"inputTokens": 1, "outputTokens": 3, "totalTokens": 4},
                "metrics": {"latencyMs": 1},
            },
        ),
    ]
    for event in events:
        await send({"type": "http.response.body", "body": event, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


def _converse_reply() -> bytes:
    return json.dumps(
        {
            "output": {"message": {"role": "assistant", "content": [{"text": "hello from eu"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 1, "outputTokens": 3, "totalTokens": 4},
            "metrics": {"latencyMs": 1},
        }
    ).encode()


POLICY = """
version: 1
gateway:
  state: "sqlite:///state.db"
  region: onprem:gw
  resolve: {{{host}: [127.0.0.1]}}
regions:
  onprem:gw: {{country: de}}
  aws:eu-central-1: {{cidrs: ["127.0.0.0/8"]}}   # the stand-in's address counts as that region
connections:
  bedrock:
    type: bedrock
    url: "https://{host}:{port}"
    credentials: {{aws: {{access_key_id: {access}, secret_access_key: "{secret}"}}}}
    tls: {{ca_file: "{ca}"}}
policies:
  - {{name: eu, subjects: {{groups: [team]}}, connections: [bedrock], regions: [eu]}}
"""


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def bedrock(
    tmp_path_factory: pytest.TempPathFactory, ca: CertificateAuthority
) -> Iterator[tuple[Bedrock, int, Path]]:
    cert, key = ca.issue(tmp_path_factory.mktemp("bedrock"), HOST)
    app = Bedrock()
    with run_asgi(app, certfile=cert, keyfile=key) as url:
        yield app, int(url.rsplit(":", 1)[1]), ca.path


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory,
    ca: CertificateAuthority,
    bedrock: tuple[Bedrock, int, Path],
) -> Iterator[Gateway]:
    """Served over https: boto3 sends a bearer token to https endpoints only."""
    _, port, ca_path = bedrock
    folder = tmp_path_factory.mktemp("gw")
    cert, key = ca.issue(folder, "127.0.0.1")
    policy = POLICY.format(host=HOST, port=port, access=ACCESS, secret=SECRET, ca=ca_path)
    with run_gateway(folder, policy, certfile=cert, keyfile=key) as gateway:
        yield gateway


def client(gw: Gateway, key: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """boto3 as a caller would set it up, with the GeoGate key as its Bedrock API key."""
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", key)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    return boto3.client(
        "bedrock-runtime",
        region_name="eu-central-1",
        endpoint_url=gw.url("bedrock"),
        verify=str(gw.config.connections["bedrock"].tls.ca_file),
    )


MESSAGES = [{"role": "user", "content": [{"text": "hi"}]}]


def test_converse_is_signed_by_the_gateway(
    gw: Gateway, bedrock: tuple[Bedrock, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _, _ = bedrock
    key = gw.create_key("ann@example.eu", groups=["team"])
    reply = client(gw, key, monkeypatch).converse(
        modelId="anthropic.claude-3-haiku", messages=MESSAGES
    )
    assert reply["output"]["message"]["content"][0]["text"] == "hello from eu"
    path, verified, headers = app.calls[-1]
    assert path == "/model/anthropic.claude-3-haiku/converse"
    assert verified
    assert key not in json.dumps(headers)  # the caller's key never reaches AWS
    region = reply["ResponseMetadata"]["HTTPHeaders"]["x-geogate-region"]
    assert region.startswith("aws:eu-central-1; by=cidr; address=127.0.0.1")


def test_an_eu_profile_is_allowed_and_a_us_one_refused_with_a_boto3_error_code(
    gw: Gateway, bedrock: tuple[Bedrock, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _, _ = bedrock
    key = gw.create_key("bo@example.eu", groups=["team"])
    bedrock_client = client(gw, key, monkeypatch)
    reply = bedrock_client.converse(modelId="eu.anthropic.claude-3-haiku", messages=MESSAGES)
    assert reply["ResponseMetadata"]["HTTPHeaders"]["x-geogate-region"].startswith(
        "aws:eu-profile; by=request; endpoint=aws:eu-central-1"
    )
    before = len(app.calls)
    with pytest.raises(ClientError) as caught:
        bedrock_client.converse(modelId="us.anthropic.claude-3-haiku", messages=MESSAGES)
    error = caught.value.response["Error"]
    assert error["Code"] == "region_not_allowed"
    assert "aws:us-profile" in error["Message"]
    assert len(app.calls) == before


def test_a_caller_without_a_gateway_key_is_refused(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ClientError) as caught:
        client(gw, "not-a-key", monkeypatch).converse(
            modelId="anthropic.claude-3-haiku", messages=MESSAGES
        )
    assert caught.value.response["Error"]["Code"] == "unauthenticated"


def test_converse_stream_passes_through_as_an_event_stream(
    gw: Gateway, bedrock: tuple[Bedrock, int, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    app, _, _ = bedrock
    key = gw.create_key("cy@example.eu", groups=["team"])
    reply = client(gw, key, monkeypatch).converse_stream(
        modelId="anthropic.claude-3-haiku", messages=MESSAGES
    )
    texts = [
        event["contentBlockDelta"]["delta"]["text"]
        for event in reply["stream"]
        if "contentBlockDelta" in event
    ]
    assert texts == ["hello ", "from ", "eu"]
    assert app.calls[-1][0] == "/model/anthropic.claude-3-haiku/converse-stream"
    assert app.calls[-1][1]  # signed by the gateway
