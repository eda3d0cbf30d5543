"""Azure OpenAI and Mistral connections: OpenAI-compatible wire formats, their own residency rules.

Azure OpenAI's region is declared (its host names say nothing), and its deployment type decides
where it processes: a Standard deployment in its region, a Data Zone one anywhere in the EU or
US zone, a Global one anywhere. The official `openai.AzureOpenAI` client talks to the gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from geogate.config import ConfigError, parse_config
from geogate.identity import Principal
from geogate.policy import compile_policy
from geogate.residency import catalog_for
from tests.gateways import Gateway, run_gateway
from tests.servers import run_asgi
from tests.upstreams import Target

POLICY = """
version: 1
gateway: {{state: "sqlite:///state.db", region: onprem:gw}}
regions:
  onprem:gw: {{country: nl}}
  azure:westeurope: {{cidrs: ["127.0.0.0/8"]}}   # the stand-in answers on loopback
connections:
  azure: {{type: azure-openai, url: "{url}", region: azure:westeurope, deployment: {deployment},
          credentials: {{header: {{api-key: azure-upstream-key}}}}}}
  mistral: {{type: mistral, url: "https://api.eu.mistral.ai/v1", credentials: {{bearer: m}}}}
policies:
  - {{name: team, subjects: {{groups: [team]}}, connections: ["*"], regions: [onprem:gw, {regions}]}}
"""

ANN = Principal("ann@example.eu", "ann@example.eu", frozenset({"team"}), None, "api_key", None)


@pytest.mark.parametrize(
    ("deployment", "regions", "expected"),
    [
        ("standard", "eu", (True, "azure:westeurope")),
        ("standard", "azure:westeurope", (True, "azure:westeurope")),
        ("data-zone", "eu", (True, "azure:eu-datazone")),
        ("data-zone", "azure:westeurope", (False, "azure:eu-datazone")),
        ("data-zone", "us", (False, "azure:eu-datazone")),
        ("global", "eu", (False, "azure:global")),
        ("global", "eu, azure:global", (True, "azure:global")),
    ],
)
def test_the_deployment_type_decides_where_azure_processes(
    deployment: str, regions: str, expected: tuple[bool, str]
) -> None:
    text = POLICY.format(url="https://res.openai.azure.com", deployment=deployment, regions=regions)
    # a glob, so a connection outside the policy is refused per call, not by policy check
    config = parse_config(text.replace('["*"]', '["az*"]').replace("  mistral:", "  #"), env={})
    decision = compile_policy(config, catalog_for(config.regions, config.jurisdictions)).decide(
        ANN, "azure"
    )
    assert (decision.allowed, decision.target_region) == expected, decision.reasons


@pytest.mark.parametrize(
    ("connection", "fragment"),
    [
        (
            '{type: azure-openai, url: "https://res.openai.azure.com", region: azure:westeurope}',
            "an azure-openai connection needs `deployment: standard`",
        ),
        (
            '{type: openai, url: "https://api.openai.com/v1", deployment: standard}',
            "other connection types take no `deployment`",
        ),
        (
            '{type: azure-openai, url: "https://res.openai.azure.com", deployment: standard}',
            "Azure OpenAI",
        ),
    ],
)
def test_azure_settings_are_checked(connection: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"version: 1\nconnections:\n  llm: {connection}\n", env={})
    assert fragment in str(caught.value)


@pytest.fixture
def azure_target() -> Iterator[tuple[Target, str]]:
    target = Target("azure")
    with run_asgi(target) as url:
        yield target, url


@pytest.fixture
def gw(tmp_path: Path, azure_target: tuple[Target, str]) -> Iterator[Gateway]:
    _, url = azure_target
    policy = POLICY.format(url=url, deployment="data-zone", regions="eu")
    with run_gateway(tmp_path, policy) as gateway:
        yield gateway


def test_the_azure_sdk_talks_through_the_gateway(
    gw: Gateway, azure_target: tuple[Target, str]
) -> None:
    target, _ = azure_target
    key = gw.create_key("ann@example.eu", groups=["team"])
    client = openai.AzureOpenAI(
        azure_endpoint=gw.url("azure"), api_key=key, api_version="2024-10-21", max_retries=0
    )
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-eu", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "from azure"
    assert target.calls == ["/openai/deployments/gpt-4o-eu/chat/completions"]
    assert raw.headers["x-geogate-region"].startswith(
        "azure:eu-datazone; by=request; endpoint=azure:westeurope; endpoint-by=cidr"
    )

    stranger = openai.AzureOpenAI(
        azure_endpoint=gw.url("azure"),
        api_key="gk_" + "x" * 43,
        api_version="2024-10-21",
        max_retries=0,
    )
    with pytest.raises(openai.AuthenticationError) as caught:
        stranger.chat.completions.create(model="gpt-4o-eu", messages=[])
    assert caught.value.code == "unauthenticated"


def test_mistral_refusals_have_mistrals_shape(gw: Gateway) -> None:
    refused = httpx2.post(gw.url("mistral") + "/chat/completions", json={"model": "m"})
    body = refused.json()
    assert refused.status_code == 401
    assert (body["object"], body["code"]) == ("error", "unauthenticated")
    assert body["message"] == body["error"]["message"]
