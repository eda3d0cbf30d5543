"""Vertex AI through the gateway: service-account tokens minted by the gateway, location facts.

The caller uses the openai SDK against Vertex's OpenAI-compatible endpoint with its GeoGate key;
the gateway gets an access token from the service account's `token_uri` (a stand-in that checks
the signed assertion) and sends it to the regional Vertex host, over TLS, on an address the
policy places in `gcp:europe-west4`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import openai
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from starlette.types import Receive, Scope, Send

from tests.gateways import Gateway, run_gateway
from tests.servers import run_asgi
from tests.tls import CertificateAuthority
from tests.upstreams import Target

HOST = "europe-west4-aiplatform.googleapis.com"
BASE = "/v1/projects/p/locations/{location}/endpoints/openapi"


class TokenEndpoint:
    """Google's OAuth token endpoint, as far as the JWT bearer grant goes."""

    def __init__(self, key: RSAKey) -> None:
        self.key = key
        self.grants: list[dict[str, Any]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        form = parse_qs((await receive()).get("body", b"").decode())
        claims = jwt.decode(form["assertion"][0], self.key).claims
        self.grants.append(claims)
        body = json.dumps({"access_token": "ya29.test-token", "expires_in": 3599}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class Vertex(Target):
    """Vertex's OpenAI-compatible endpoint; keeps the Authorization it was sent."""

    def __init__(self) -> None:
        super().__init__("vertex")
        self.authorizations: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.authorizations.append(dict(scope["headers"]).get(b"authorization", b"").decode())
        await super().__call__(scope, receive, send)


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Gateway, Vertex, TokenEndpoint]]:
    folder = tmp_path_factory.mktemp("vertex")
    ca = CertificateAuthority.create(folder)
    cert, key_file = ca.issue(folder, HOST)
    key = RSAKey.generate_key(2048, private=True)
    tokens, vertex = TokenEndpoint(key), Vertex()
    with run_asgi(tokens) as token_url, run_asgi(vertex, certfile=cert, keyfile=key_file) as url:
        account = folder / "service-account.json"
        account.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "client_email": "geogate@p.iam.gserviceaccount.com",
                    "private_key": key.as_pem(private=True).decode(),
                    "token_uri": token_url + "/token",
                }
            )
        )
        port = url.rsplit(":", 1)[1]
        policy = f"""
version: 1
gateway: {{state: "sqlite:///state.db", region: onprem:gw, resolve: {{{HOST}: [127.0.0.1]}}}}
regions:
  onprem:gw: {{country: nl}}
  gcp:europe-west4: {{cidrs: ["127.0.0.0/8"]}}
connections:
  vertex:
    type: vertex
    url: "https://{HOST}:{port}"
    credentials: {{google: {{service_account_file: "{account}"}}}}
    tls: {{ca_file: "{ca.path}"}}
policies:
  - {{name: eu, subjects: {{groups: [team]}}, connections: [vertex], regions: [eu]}}
"""
        with run_gateway(folder, policy) as gateway:
            yield gateway, vertex, tokens


def test_the_gateway_mints_and_reuses_a_service_account_token(
    setup: tuple[Gateway, Vertex, TokenEndpoint],
) -> None:
    gw, vertex, tokens = setup
    key = gw.create_key("ann@example.eu", groups=["team"])
    client = openai.OpenAI(
        base_url=gw.url("vertex") + BASE.format(location="europe-west4"), api_key=key, max_retries=0
    )
    for _ in range(3):
        reply = client.chat.completions.create(
            model="google/gemini", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "from vertex"
    assert vertex.authorizations[-3:] == ["Bearer ya29.test-token"] * 3
    assert len(tokens.grants) == 1  # cached until it is about to expire
    grant = tokens.grants[0]
    assert grant["iss"] == "geogate@p.iam.gserviceaccount.com"
    assert grant["scope"] == "https://www.googleapis.com/auth/cloud-platform"
    assert key not in json.dumps(vertex.authorizations)


def test_a_location_outside_the_policy_is_refused_in_googles_shape(
    setup: tuple[Gateway, Vertex, TokenEndpoint],
) -> None:
    gw, vertex, _ = setup
    key = gw.create_key("bo@example.eu", groups=["team"])
    client = openai.OpenAI(
        base_url=gw.url("vertex") + BASE.format(location="us-central1"), api_key=key, max_retries=0
    )
    before = len(vertex.calls)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(model="google/gemini", messages=[])
    body = caught.value.body
    assert isinstance(body, dict)
    assert (body["status"], body["code"]) == ("region_not_allowed", "region_not_allowed")
    assert "gcp:us-central1" in body["message"]
    assert len(vertex.calls) == before
