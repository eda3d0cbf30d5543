"""Request-level residency facts: Anthropic's `inference_geo` decides where Claude processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import pytest
from starlette.types import Receive, Scope, Send

from geogate.config import parse_config
from geogate.identity import Principal
from geogate.policy import RequestFacts, compile_policy
from geogate.residency import catalog_for
from tests.gateways import run_gateway
from tests.servers import run_asgi

ANN = Principal("ann@example.com", "ann@example.com", frozenset({"team"}), None, "api_key", None)

POLICY = """
version: 1
gateway: {{state: "sqlite:///state.db", region: onprem:gw}}
regions:
  onprem:gw: {{country: ch}}                     # the gateway's own hop, listed in every policy
  anthropic:global: {{cidrs: ["127.0.0.0/8"]}}   # the test's Anthropic stand-in is on loopback
connections:
  claude: {{type: anthropic, url: "{url}", region: anthropic:global}}
policies:
  - {{name: team, subjects: {{groups: [team]}}, connections: [claude], regions: [onprem:gw, {regions}]}}
"""


def decide(regions: str, geo: str | None) -> tuple[bool, str | None, dict[str, str], str | None]:
    config = parse_config(POLICY.format(url="https://api.anthropic.com", regions=regions))
    policy = compile_policy(config, catalog_for(config.regions, config.jurisdictions))
    decision = policy.decide(ANN, "claude", RequestFacts(model="claude", geo=geo))
    target = next(hop.region for hop in decision.hops if hop.name == "target")
    return decision.allowed, decision.code, dict(decision.set_fields), target


@pytest.mark.parametrize(
    ("regions", "geo", "expected"),
    [
        ("us", None, (True, None, {"inference_geo": "us"}, "anthropic:us")),
        ("us", "us", (True, None, {}, "anthropic:us")),
        ("us", "global", (False, "region_not_allowed", {}, "anthropic:global")),
        ("eu", None, (False, "region_not_allowed", {}, "anthropic:global")),
        ("us, anthropic:global", None, (True, None, {}, "anthropic:global")),
        ("us, anthropic:global", "global", (True, None, {}, "anthropic:global")),
        ("eu", "us", (False, "region_not_allowed", {}, "anthropic:us")),
        ("us", "mars", (False, "region_not_allowed", {}, "anthropic:mars")),
    ],
)
def test_inference_geo_decides_the_target_region(
    regions: str, geo: str | None, expected: tuple[bool, str | None, dict[str, str], str]
) -> None:
    assert decide(regions, geo) == expected


class Claude:
    """An Anthropic Messages stand-in that keeps the request bodies it received."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        message = await receive()
        chunks.append(message.get("body", b""))
        while message.get("more_body"):
            message = await receive()
            chunks.append(message.get("body", b""))
        self.bodies.append(json.loads(b"".join(chunks)))
        body = json.dumps(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": "claude",
                "content": [{"type": "text", "text": "hello"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture
def claude() -> Iterator[tuple[Claude, str]]:
    app = Claude()
    with run_asgi(app) as url:
        yield app, url


def test_the_gateway_sets_inference_geo_the_policy_needs(
    tmp_path: Path, claude: tuple[Claude, str]
) -> None:
    app, url = claude
    with run_gateway(tmp_path, POLICY.format(url=url, regions="us")) as gw:
        key = gw.create_key("ann@example.com", groups=["team"])
        client = anthropic.Anthropic(base_url=gw.url("claude"), api_key=key, max_retries=0)
        messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]
        raw = client.messages.with_raw_response.create(
            model="claude", max_tokens=8, messages=messages
        )
        assert raw.parse().content[0].type == "text"
        assert raw.headers["x-geogate-region"].startswith(
            "anthropic:us; by=request; endpoint=anthropic:global; endpoint-by=cidr; "
            "address=127.0.0.1; range=127.0.0.0/8"
        )
        assert json.loads(gw.access_lines[-1])["region"] == "anthropic:us"
        assert app.bodies[-1]["inference_geo"] == "us"
        assert app.bodies[-1]["messages"] == [{"role": "user", "content": "hi"}]

        with pytest.raises(anthropic.PermissionDeniedError) as caught:
            client.messages.create(
                model="claude",
                max_tokens=8,
                messages=messages,
                extra_body={"inference_geo": "global"},
            )
        assert caught.value.body["error"]["type"] == "region_not_allowed"  # type: ignore[index]
        assert len(app.bodies) == 1


def test_explain_shows_the_field_the_gateway_sets(tmp_path: Path) -> None:
    config = parse_config(POLICY.format(url="https://api.anthropic.com", regions="us"))
    policy = compile_policy(config, catalog_for(config.regions, config.jurisdictions))
    explained = policy.decide(ANN, "claude").to_json()
    assert explained["set_fields"] == {"inference_geo": "us"}
    assert any("inference_geo" in reason for reason in explained["reasons"])  # type: ignore[attr-defined]


def test_a_body_that_is_not_an_object_cannot_take_the_field(
    tmp_path: Path, claude: tuple[Claude, str]
) -> None:
    _, url = claude
    with run_gateway(tmp_path, POLICY.format(url=url, regions="us")) as gw:
        key = gw.create_key("ann@example.com", groups=["team"])
        refused = httpx2.post(
            gw.url("claude") + "/v1/messages",
            headers={"x-api-key": key, "content-type": "application/json"},
            content=b"[1, 2]",
        )
    assert refused.status_code == 400
    assert "inference_geo" in refused.json()["error"]["message"]


PATH_POLICY = """
version: 1
gateway: {{state: "sqlite:///state.db", region: onprem:gw}}
regions:
  onprem:gw: {{country: de}}
connections:
  bedrock: {{type: http, url: "https://bedrock-runtime.eu-central-1.amazonaws.com"}}
  vertex: {{type: http, url: "https://europe-west4-aiplatform.googleapis.com"}}
  vertex-global: {{type: http, url: "https://aiplatform.googleapis.com"}}
policies:
  - {{name: team, subjects: {{groups: [team]}}, connections: ["*"], regions: [onprem:gw, {regions}]}}
"""

PROFILE = "/model/{model}/converse"
VERTEX = "/v1/projects/p/locations/{location}/publishers/google/models/gemini:generateContent"


@pytest.mark.parametrize(
    ("regions", "connection", "path", "expected"),
    [
        ("eu", "bedrock", PROFILE.format(model="anthropic.claude-3"), (True, "aws:eu-central-1")),
        ("eu", "bedrock", PROFILE.format(model="eu.anthropic.claude-3"), (True, "aws:eu-profile")),
        ("eu", "bedrock", PROFILE.format(model="us.anthropic.claude-3"), (False, "aws:us-profile")),
        ("eu", "bedrock", PROFILE.format(model="global.anthropic.claude-3"), (False, "aws:global-profile")),
        ("eu", "bedrock", PROFILE.format(model="apac.anthropic.claude-3"), (False, "aws:apac-profile")),
        ("eu, aws:global", "bedrock", PROFILE.format(model="global.anthropic.claude-3"), (True, "aws:global-profile")),
        ("aws:eu-central-1", "bedrock", PROFILE.format(model="eu.anthropic.claude-3"), (False, "aws:eu-profile")),
        ("de", "bedrock", PROFILE.format(model="anthropic.claude-3"), (True, "aws:eu-central-1")),
        ("eu", "bedrock", PROFILE.format(model="arn%3Aaws%3Abedrock%3Aus-east-1%3A123%3Afoundation-model%2Fanthropic.claude-3"), (False, "aws:us-east-1")),
        ("eu", "bedrock", PROFILE.format(model="arn:aws:bedrock:eu-west-1:123:inference-profile/eu.anthropic.claude-3"), (True, "aws:eu-profile")),
        ("eu", "vertex", VERTEX.format(location="europe-west4"), (True, "gcp:europe-west4")),
        ("eu", "vertex-global", VERTEX.format(location="europe-west4"), (True, "gcp:europe-west4")),
        ("eu", "vertex-global", VERTEX.format(location="us-central1"), (False, "gcp:us-central1")),
        ("eu", "vertex-global", VERTEX.format(location="global"), (False, "gcp:global")),
        ("eu", "vertex-global", "/v1/models", (False, "gcp:global")),
    ],
)  # fmt: skip
def test_bedrock_and_vertex_paths_decide_where_the_model_runs(
    regions: str, connection: str, path: str, expected: tuple[bool, str]
) -> None:
    config = parse_config(PATH_POLICY.format(regions=regions))
    policy = compile_policy(config, catalog_for(config.regions, config.jurisdictions))
    from geogate.protocols import adapter_for

    facts = adapter_for("http").path_facts(path.lstrip("/").encode(), RequestFacts())
    decision = policy.decide(ANN, connection, facts)
    assert (decision.allowed, decision.target_region) == expected, decision.reasons
    if not decision.allowed:
        assert decision.code == "region_not_allowed"


def test_a_bedrock_profile_outside_the_policy_is_refused_before_anything_is_sent(
    tmp_path: Path,
) -> None:
    with run_gateway(tmp_path, PATH_POLICY.format(regions="eu")) as gw:
        key = gw.create_key("ann@example.com", groups=["team"])
        refused = httpx2.post(
            gw.url("bedrock") + "/model/us.anthropic.claude-3/converse",
            headers={"Authorization": f"Bearer {key}"},
            json={"messages": []},
        )
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "region_not_allowed"
    assert "aws:us-profile" in error["message"]
