"""Attributing a connection's region from its provider URL, and what the policy file makes of it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geogate.cli.policy import app as policy_app
from geogate.config import ConfigError, Problem, check_config, parse_config
from geogate.identity import Principal
from geogate.policy import compile_policy
from geogate.residency import (
    Attribution,
    Unattributable,
    attribute_host,
    attribute_url,
    bundled_catalog,
    catalog_for,
    classify_host,
)

# --- host names ------------------------------------------------------------------------------

HOSTS: list[tuple[str, str | None]] = [
    # AWS Bedrock: every service, FIPS, PrivateLink and partition form
    ("bedrock-runtime.eu-central-1.amazonaws.com", "aws:eu-central-1"),
    ("bedrock.eu-central-1.amazonaws.com", "aws:eu-central-1"),
    ("bedrock-runtime.us-east-1.amazonaws.com", "aws:us-east-1"),
    ("bedrock-runtime.eu-west-3.amazonaws.com", "aws:eu-west-3"),
    ("bedrock-runtime.ap-northeast-1.amazonaws.com", "aws:ap-northeast-1"),
    ("bedrock-runtime.us-gov-west-1.amazonaws.com", "aws:us-gov-west-1"),
    ("bedrock-runtime-fips.us-east-1.amazonaws.com", "aws:us-east-1"),
    ("bedrock-fips.us-west-2.amazonaws.com", "aws:us-west-2"),
    ("bedrock-runtime-fips.ca-central-1.amazonaws.com", "aws:ca-central-1"),
    ("bedrock-agent-runtime.eu-central-1.amazonaws.com", "aws:eu-central-1"),
    ("bedrock-agent.eu-west-1.amazonaws.com", "aws:eu-west-1"),
    (
        "vpce-0a1b2c3d4e5f67890-abcdefgh.bedrock-runtime.eu-central-1.vpce.amazonaws.com",
        "aws:eu-central-1",
    ),
    (
        "vpce-0a1b2c3d4e5f67890-abcdefgh-eu-central-1a.bedrock-runtime.eu-central-1.vpce.amazonaws.com",
        "aws:eu-central-1",
    ),
    ("bedrock-runtime.eusc-de-east-1.amazonaws.eu", "aws:eusc-de-east-1"),
    ("bedrock-runtime.cn-north-1.amazonaws.com.cn", "aws:cn-north-1"),
    ("BEDROCK-RUNTIME.EU-CENTRAL-1.AMAZONAWS.COM", "aws:eu-central-1"),
    ("bedrock-runtime.eu-central-1.amazonaws.com.", "aws:eu-central-1"),
    # ... and what only looks like it
    ("bedrock-runtime.eusc-de-east-1.amazonaws.com", None),  # wrong partition's domain
    ("bedrock-runtime.eu-central-1.amazonaws.com.cn", None),
    ("bedrock-runtime.xx-fake-9.amazonaws.com", None),  # not in the catalog
    ("bedrock-runtime.global.amazonaws.com", None),
    ("bedrock-runtime.amazonaws.com", None),
    ("bedrock-runtime.eu-central-1.amazonaws.com.evil.example", None),
    ("evil-bedrock-runtime.eu-central-1.amazonaws.com", None),
    ("evil.bedrock-runtime.eu-central-1.amazonaws.com", None),
    ("vpce-1.bedrock-runtime.eu-central-1.amazonaws.com", None),  # PrivateLink without .vpce.
    ("bedrock-runtime.eu-central-1.amazonaws.co", None),
    ("bedrock-runtime.eu-central-1.amazonaws.com..", None),
    ("bedrock-runtime.eu-central-1.xn--amazonws-66g.com", None),  # a Cyrillic a in amazonaws
    ("s3.eu-central-1.amazonaws.com", None),  # AWS, but not Bedrock
    # Google Vertex AI: regional, multi-region, REP, mTLS, global
    ("europe-west4-aiplatform.googleapis.com", "gcp:europe-west4"),
    ("europe-west3-aiplatform.googleapis.com", "gcp:europe-west3"),
    ("us-central1-aiplatform.googleapis.com", "gcp:us-central1"),
    ("asia-northeast1-aiplatform.googleapis.com", "gcp:asia-northeast1"),
    ("europe-west4-aiplatform.mtls.googleapis.com", "gcp:europe-west4"),
    ("eu-aiplatform.googleapis.com", "gcp:eu"),
    ("us-aiplatform.googleapis.com", "gcp:us"),
    ("aiplatform.eu.rep.googleapis.com", "gcp:eu"),
    ("aiplatform.us.rep.googleapis.com", "gcp:us"),
    ("aiplatform.europe-west4.rep.googleapis.com", "gcp:europe-west4"),
    ("aiplatform.googleapis.com", "gcp:global"),
    ("generativelanguage.googleapis.com", "gcp:global"),
    ("Europe-West4-AIPlatform.GoogleAPIs.com.", "gcp:europe-west4"),
    ("europe-west99-aiplatform.googleapis.com", None),
    ("evil-europe-west4-aiplatform.googleapis.com", None),
    ("europe-west4-aiplatform.googleapis.com.evil.example", None),
    ("global-aiplatform.googleapis.com", None),
    ("storage.googleapis.com", None),
    # OpenAI: the global host and every data-residency host
    ("api.openai.com", "openai:global"),
    ("us.api.openai.com", "openai:us"),
    ("eu.api.openai.com", "openai:eu"),
    ("jp.api.openai.com", "openai:jp"),
    ("au.api.openai.com", "openai:au"),
    ("in.api.openai.com", "openai:in"),
    ("ca.api.openai.com", "openai:ca"),
    ("gb.api.openai.com", "openai:gb"),
    ("kr.api.openai.com", "openai:kr"),
    ("sg.api.openai.com", "openai:sg"),
    ("ae.api.openai.com", "openai:ae"),
    ("EU.API.OPENAI.COM.", "openai:eu"),
    ("zz.api.openai.com", None),
    ("eu.api.openai.com.attacker.io", None),
    ("api.openai.com.attacker.io", None),
    ("eu-api.openai.com", None),
    ("api-openai.com", None),
    ("openai.com", None),
    ("api.xn--penai-iye.com", None),  # a Cyrillic o in openai
    ("xn--u-itb.api.openai.com", None),  # a Cyrillic e in eu
    ("api.\u043epenai.com", None),  # the same, not encoded
    # Mistral
    ("api.mistral.ai", "mistral:global"),
    ("api.eu.mistral.ai", "mistral:eu"),
    ("api.us.mistral.ai", "mistral:us"),
    ("codestral.mistral.ai", "mistral:global"),
    ("api.fr.mistral.ai", None),
    ("api.eu.mistral.ai.evil.example", None),
    # Anthropic: its geography is a request fact, not a host
    ("api.anthropic.com", "anthropic:global"),
    ("us.api.anthropic.com", None),
    ("api.xn--anthropi-mch.com", None),  # a Cyrillic c in anthropic
    ("api.anthropic.com.evil.example", None),
    # Azure OpenAI: its host names carry no region
    ("my-resource.openai.azure.com", None),
    ("my-resource.cognitiveservices.azure.com", None),
    ("my-project.services.ai.azure.com", None),
    # not a provider's host
    ("localhost", None),
    ("127.0.0.1", None),
    ("::1", None),
    ("10.20.3.4", None),
    ("llm.corp.example.eu", None),
    ("", None),
    (".", None),
]


@pytest.mark.parametrize(("host", "region"), HOSTS, ids=[host or "empty" for host, _ in HOSTS])
def test_host_attribution(host: str, region: str | None) -> None:
    attribution = attribute_host(host)
    assert (attribution.region if attribution else None) == region
    if attribution is not None:
        assert bundled_catalog().get(attribution.region) is not None
        assert host.lower().rstrip(".") in attribution.basis


def test_the_table_covers_dozens_of_real_hosts() -> None:
    assert sum(region is not None for _, region in HOSTS) >= 40


@pytest.mark.parametrize(
    ("host", "attested"),
    [
        ("bedrock-runtime.eu-central-1.amazonaws.com", True),
        ("europe-west4-aiplatform.googleapis.com", True),
        ("aiplatform.eu.rep.googleapis.com", True),
        ("me-central2-aiplatform.googleapis.com", False),  # no documented in-region processing
        ("eu.api.openai.com", True),
        ("us.api.openai.com", True),
        ("jp.api.openai.com", False),  # stored in Japan, processed anywhere
        ("api.eu.mistral.ai", True),
        ("api.openai.com", False),
        ("aiplatform.googleapis.com", False),
        ("api.anthropic.com", False),
        ("api.mistral.ai", False),
    ],
)
def test_only_documented_regional_hosts_are_attested(host: str, attested: bool) -> None:
    attribution = attribute_host(host)
    assert attribution is not None
    assert attribution.endpoint_attested is attested


def test_basis_is_one_sentence_of_evidence() -> None:
    assert attribute_host("bedrock-runtime.eu-central-1.amazonaws.com") == Attribution(
        "aws:eu-central-1",
        "host bedrock-runtime.eu-central-1.amazonaws.com is AWS Bedrock Runtime's eu-central-1 "
        "endpoint",
        endpoint_attested=True,
    )


@pytest.mark.parametrize(
    "host",
    [
        "my-resource.openai.azure.com",
        "my-resource.cognitiveservices.azure.com",
        "my-project.services.ai.azure.com",
    ],
)
def test_azure_hosts_are_known_but_need_a_declared_region(host: str) -> None:
    verdict = classify_host(host)
    assert isinstance(verdict, Unattributable)
    assert "Azure OpenAI" in verdict.reason and "declare `region:`" in verdict.reason
    assert verdict.named_region is None


def test_a_region_the_catalog_does_not_know_is_named() -> None:
    verdict = classify_host("bedrock-runtime.xx-fake-9.amazonaws.com")
    assert isinstance(verdict, Unattributable)
    assert verdict.named_region == "aws:xx-fake-9"
    assert "not in the region catalog" in verdict.reason


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://bedrock-runtime.eu-central-1.amazonaws.com", "aws:eu-central-1"),
        ("https://eu.api.openai.com/v1", "openai:eu"),
        ("https://EU.API.OPENAI.COM./v1", "openai:eu"),
        ("https://api.openai.com:443/v1", "openai:global"),
        ("http://api.anthropic.com", "anthropic:global"),
        (
            "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/locations/europe-west4",
            "gcp:europe-west4",
        ),
        ("https://api.openai.com:443@evil.example/v1", None),  # the host is evil.example
        ("https://user@api.openai.com/v1", None),  # user info: never attributed
        ("https://evil.example@eu.api.openai.com/v1", None),
        ("https://api.openai.com\\@evil.example/v1", None),
        ("https://api.openai.com%2eevil.example/v1", None),
        ("https://api.openai.com.evil.example/v1", None),
        ("ftp://api.openai.com/v1", None),
        ("api.openai.com/v1", None),
        ("https:///v1", None),
        ("https://[::1]:8090/v1", None),
        ("http://127.0.0.1:8090/v1", None),
        ("https://[not an address]/v1", None),
    ],
)
def test_url_attribution(url: str, region: str | None) -> None:
    attribution = attribute_url(url)
    assert (attribution.region if attribution else None) == region


# --- policy decisions on attributed regions --------------------------------------------------

POLICY = """\
version: 1
gateway: {{region: {gateway}}}
regions:
  onprem:gw-eu: {{jurisdiction: eu}}
  onprem:gw-us: {{jurisdiction: us}}
  onprem:dc1: {{jurisdiction: eu, cidrs: [10.0.0.0/8]}}
connections:
  target: {{type: {type}, url: "{url}"{region}}}
policies:
  - name: residency
    subjects: {{groups: [team]}}
    connections: ["tar*"]   # a glob, so an outside target is a run-time refusal, not a config error
    regions: {regions}
"""

POLICIES = {
    "eu": ("[eu]", "onprem:gw-eu"),
    "us": ("[us]", "onprem:gw-us"),
    "eu+openai:eu": ("[eu, openai:eu]", "onprem:gw-eu"),
    "us+openai:global": ("[us, openai:global]", "onprem:gw-us"),
    "onprem": ("[onprem:dc1]", "onprem:dc1"),
}
"""Policy name -> (its `regions`, a gateway region inside them, so the target hop decides)."""

ANN = Principal("ann@example.com", "ann@example.com", frozenset({"team"}), None, "api_key", None)

BEDROCK_EU = "https://bedrock-runtime.eu-central-1.amazonaws.com"
BEDROCK_US = "https://bedrock-runtime.us-east-1.amazonaws.com"
ALLOWED = (True, None)
OUTSIDE = (False, "region_not_allowed")


def decide(
    policy: str, kind: str, url: str, region: str | None = None
) -> tuple[tuple[bool, str | None], str | None]:
    regions, gateway = POLICIES[policy]
    text = POLICY.format(
        gateway=gateway,
        type=kind,
        url=url,
        region=f", region: {region}" if region else "",
        regions=regions,
    )
    config = parse_config(text, env={})
    compiled = compile_policy(config, catalog_for(config.regions, config.jurisdictions))
    decision = compiled.decide(ANN, "target")
    target = next(hop for hop in decision.hops if hop.name == "target")
    return (decision.allowed, decision.code), target.region


@pytest.mark.parametrize(
    ("policy", "kind", "url", "declared", "outcome", "target"),
    [
        ("eu", "http", BEDROCK_EU, None, ALLOWED, "aws:eu-central-1"),
        ("us", "http", BEDROCK_EU, None, OUTSIDE, "aws:eu-central-1"),
        ("us", "http", BEDROCK_US, None, ALLOWED, "aws:us-east-1"),
        ("eu", "http", BEDROCK_US, None, OUTSIDE, "aws:us-east-1"),
        ("onprem", "http", BEDROCK_EU, None, OUTSIDE, "aws:eu-central-1"),
        ("eu", "http", BEDROCK_EU, "aws:eu-central-1", ALLOWED, "aws:eu-central-1"),  # redundant
        ("eu", "openai", "https://api.openai.com/v1", None, OUTSIDE, "openai:global"),
        ("us", "openai", "https://api.openai.com/v1", None, OUTSIDE, "openai:global"),
        ("us+openai:global", "openai", "https://api.openai.com/v1", None, ALLOWED, "openai:global"),
        ("eu", "openai", "https://eu.api.openai.com/v1", None, OUTSIDE, "openai:eu"),  # EEA + ch
        ("eu+openai:eu", "openai", "https://eu.api.openai.com/v1", None, ALLOWED, "openai:eu"),
        ("us", "openai", "https://us.api.openai.com/v1", None, ALLOWED, "openai:us"),
        ("eu", "openai", "https://us.api.openai.com/v1", None, OUTSIDE, "openai:us"),
        ("eu", "openai", "https://jp.api.openai.com/v1", None, OUTSIDE, "openai:jp"),
        ("eu", "http", "https://europe-west4-aiplatform.googleapis.com", None, ALLOWED, "gcp:europe-west4"),
        ("eu", "http", "https://europe-west6-aiplatform.googleapis.com", None, OUTSIDE, "gcp:europe-west6"),  # Zurich
        ("eu", "http", "https://aiplatform.eu.rep.googleapis.com", None, ALLOWED, "gcp:eu"),
        ("eu", "http", "https://eu-aiplatform.googleapis.com", None, ALLOWED, "gcp:eu"),
        ("us", "http", "https://aiplatform.eu.rep.googleapis.com", None, OUTSIDE, "gcp:eu"),
        ("us", "http", "https://us-central1-aiplatform.googleapis.com", None, ALLOWED, "gcp:us-central1"),
        ("eu", "http", "https://aiplatform.googleapis.com", None, OUTSIDE, "gcp:global"),
        ("eu", "openai", "https://api.eu.mistral.ai/v1", None, ALLOWED, "mistral:eu"),
        ("eu", "openai", "https://api.mistral.ai/v1", None, OUTSIDE, "mistral:global"),
        ("eu", "anthropic", "https://api.anthropic.com", None, OUTSIDE, "anthropic:global"),
        ("eu", "openai", "https://res.openai.azure.com/openai", "azure:westeurope", ALLOWED, "azure:westeurope"),
        ("us", "openai", "https://res.openai.azure.com/openai", "azure:westeurope", OUTSIDE, "azure:westeurope"),
        ("onprem", "openai", "http://10.1.2.3:8000/v1", "onprem:dc1", ALLOWED, "onprem:dc1"),
        ("onprem", "http", "https://llm.dc1.example.internal", "onprem:dc1", ALLOWED, "onprem:dc1"),
        ("eu", "http", "http://127.0.0.1:8090", "onprem:dc1", ALLOWED, "onprem:dc1"),
        ("us", "http", "http://127.0.0.1:8090", "onprem:dc1", OUTSIDE, "onprem:dc1"),
        # a type this version cannot forward is refused, but its hop is still placed
        ("eu", "bedrock", BEDROCK_EU, None, ALLOWED, "aws:eu-central-1"),
        ("us", "bedrock", BEDROCK_EU, None, OUTSIDE, "aws:eu-central-1"),
    ],
)  # fmt: skip
def test_decisions_on_attributed_regions(
    policy: str,
    kind: str,
    url: str,
    declared: str | None,
    outcome: tuple[bool, str | None],
    target: str,
) -> None:
    assert decide(policy, kind, url, declared) == (outcome, target)


def test_a_policy_with_regions_needs_the_gateways_own_region() -> None:
    """Connections can no longer lack a region; a gateway without one is refused up front."""
    problems = errors(
        "version: 1\nconnections:\n  llm: {type: openai, url: 'https://us.api.openai.com/v1'}\n"
        "policies:\n  - {name: p, subjects: {groups: [team]}, connections: [llm], regions: [us]}\n"
    )
    assert [problem.message for problem in problems] == [
        "policies[0].regions: policy 'p' keeps data inside us, but the gateway (gateway.region) "
        "has no region, so no "
        "call could be proven to stay inside; declare it",
        "policies[0].regions: policy 'p' keeps data inside us, but the recording store "
        "(gateway.recordings) has no region, so no call could be proven to stay inside; declare it",
    ]


# --- the policy file -------------------------------------------------------------------------


def errors(text: str, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), env=env or {})
    return caught.value.problems


def marked_line(text: str) -> int:
    lines = textwrap.dedent(text).splitlines()
    return next(number for number, line in enumerate(lines, 1) if "# <-" in line)


def test_a_declared_region_that_contradicts_the_url_is_an_error() -> None:
    text = """\
        version: 1
        connections:
          bedrock:
            type: http
            url: https://bedrock-runtime.eu-central-1.amazonaws.com
            region: aws:us-east-1   # <-
        """
    (problem,) = errors(text)
    assert problem.line == marked_line(text)
    assert problem.message == (
        "connections.bedrock.region: url 'https://bedrock-runtime.eu-central-1.amazonaws.com' "
        "says aws:eu-central-1, but region says 'aws:us-east-1'; remove `region` or fix the URL"
    )


def test_an_onprem_region_cannot_relabel_a_provider_url() -> None:
    text = """\
        version: 1
        regions:
          onprem:dc1: {jurisdiction: eu}
        connections:
          gpt:
            type: openai
            url: https://api.openai.com/v1
            region: onprem:dc1   # <-
        """
    (problem,) = errors(text)
    assert problem.line == marked_line(text)
    assert "says openai:global, but region says 'onprem:dc1'" in problem.message


def test_a_declared_region_equal_to_the_url_is_redundant_but_fine() -> None:
    config = parse_config(
        "version: 1\nconnections:\n  gpt:\n    type: openai\n    url: https://eu.api.openai.com/v1"
        "\n    region: openai:eu\n",
        env={},
    )
    assert config.connections["gpt"].region == "openai:eu"


def test_an_unknown_host_without_a_region_is_an_error() -> None:
    text = """\
        version: 1
        connections:
          internal:
            type: openai
            url: https://llm.corp.example.eu/v1   # <-
        """
    (problem,) = errors(text)
    assert problem.line == marked_line(text)
    assert problem.message == (
        "connections.internal.url: no region is declared, and host llm.corp.example.eu is not "
        "one GeoGate can attribute to a region; declare `region:` (an onprem: region for your "
        "own servers)"
    )


def test_a_loopback_connection_without_a_region_is_an_error() -> None:
    """What used to load and be refused per call with region_unverified is now refused upfront."""
    text = """\
        version: 1
        connections:
          undeclared: {type: openai, url: "http://127.0.0.1:8090/v1"}   # <-
        """
    (problem,) = errors(text)
    assert problem.line == marked_line(text)
    assert problem.message.startswith(
        "connections.undeclared.url: no region is declared, and host 127.0.0.1 is not one"
    )


def test_an_azure_host_without_a_region_says_azure_needs_one() -> None:
    text = """\
        version: 1
        connections:
          azure:
            type: azure-openai
            deployment: standard
            url: https://my-resource.openai.azure.com/openai   # <-
        """
    (problem,) = errors(text)
    assert problem.line == marked_line(text)
    assert problem.message.startswith(
        "connections.azure.url: no region is declared, and host my-resource.openai.azure.com is "
        "Azure OpenAI, whose host names do not say which region the resource is in; declare "
        "`region:`"
    )


def test_a_region_the_catalog_does_not_know_is_reported() -> None:
    text = """\
        version: 1
        connections:
          fake:
            type: http
            url: https://bedrock-runtime.xx-fake-9.amazonaws.com   # <-
        """
    (problem,) = errors(text)
    assert problem.line == marked_line(text)
    assert "names aws:xx-fake-9, which is not in the region catalog" in problem.message


def test_a_region_the_catalog_does_not_know_cannot_be_declared_away() -> None:
    text = """\
        version: 1
        connections:
          fake:
            type: http
            url: https://bedrock-runtime.xx-fake-9.amazonaws.com
            region: aws:eu-central-1   # <-
        """
    (problem,) = errors(text)
    assert problem.line == marked_line(text)
    assert "names aws:xx-fake-9, which is not in the region catalog" in problem.message


def test_every_connection_problem_is_reported_at_once() -> None:
    text = """\
        version: 1
        connections:
          a: {type: openai, url: "https://llm-a.example.com"}   # line 3
          b: {type: openai, url: "https://eu.api.openai.com/v1", region: openai:us}   # line 4
          c: {type: openai, url: "https://c.openai.azure.com"}   # line 5
          d: {type: openai, url: "https://us.api.openai.com/v1"}
        """
    assert [problem.line for problem in errors(text)] == [3, 4, 5]


def test_a_host_from_the_environment_never_appears_in_the_message() -> None:
    secret = "sk-live-9f8e7d6c5b4a39281706"
    problems = errors(
        'version: 1\nconnections:\n  llm: {type: openai, url: "https://${HOST}.example.com"}\n',
        env={"HOST": secret},
    )
    assert problems and all(secret not in str(problem) for problem in problems)


def test_the_attributed_region_is_filled_in_and_the_declared_one_kept() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            version: 1
            regions:
              onprem:dc1: {jurisdiction: eu}
            connections:
              bedrock: {type: http, url: "https://bedrock-runtime.eu-central-1.amazonaws.com"}
              internal: {type: openai, url: "https://llm.corp.example.eu/v1", region: onprem:dc1}
            """
        ),
        env={},
    )
    bedrock, internal = config.connections["bedrock"], config.connections["internal"]
    assert (bedrock.region, internal.region) == ("aws:eu-central-1", "onprem:dc1")
    # attributed or declared: the URL tells
    assert attribute_url(bedrock.url) is not None
    assert attribute_url(internal.url) is None


# --- the CLI ---------------------------------------------------------------------------------

CLI_POLICY = """\
version: 1
gateway: {region: onprem:eu-dc1}
regions:
  onprem:eu-dc1: {jurisdiction: eu}
connections:
  openai-eu: {type: openai, url: "https://eu.api.openai.com/v1"}
  bedrock: {type: http, url: "https://bedrock-runtime.eu-central-1.amazonaws.com"}
policies:
  - name: support-eu
    subjects: {groups: [support-eu]}
    connections: ["openai-*", bedrock]   # a glob: openai-eu's region is checked per call
    regions: [eu]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "geogate.yaml"
    path.write_text(CLI_POLICY)
    return path


def test_policy_check_accepts_attributed_regions(policy_file: Path) -> None:
    result = check_config(policy_file, env={})
    assert result.errors == []
    assert result.notes == []  # regions are enforced in full: nothing to point out


def test_policy_explain_shows_the_attributed_region(policy_file: Path) -> None:
    runner = CliRunner()
    explain = ["explain", "--config", str(policy_file), "--user", "ann@example.com"]
    result = runner.invoke(
        policy_app, [*explain, "--groups", "support-eu", "--connection", "bedrock"]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ALLOWED")
    target = next(line for line in result.stdout.splitlines() if line.strip().startswith("target"))
    assert target.split()[1:] == ["aws:eu-central-1", "inside"]
    result = runner.invoke(
        policy_app, [*explain, "--groups", "support-eu", "--connection", "openai-eu"]
    )
    assert result.stdout.startswith("DENIED (region_not_allowed)")
    assert "connection 'openai-eu' is in openai:eu" in result.stdout


WHOLE_PATH = """\
version: 1
gateway:
  region: {gateway}
  recordings: {{region: {recordings}}}
regions:
  onprem:gw-eu: {{jurisdiction: eu}}
  onprem:gw-us: {{jurisdiction: us}}
connections:
  bedrock-us: {{type: openai, url: "https://bedrock-runtime.us-east-1.amazonaws.com"}}
  bedrock-eu: {{type: openai, url: "https://bedrock-runtime.eu-central-1.amazonaws.com"}}
  claude: {{type: anthropic, url: "https://api.anthropic.com"}}
policies:
  - {{name: eu-team, subjects: {{groups: [team]}}, connections: {connections}, regions: [eu]}}
"""


@pytest.mark.parametrize(
    ("gateway", "recordings", "connections", "expected"),
    [
        ("onprem:gw-eu", "onprem:gw-eu", "[bedrock-eu]", []),
        ("onprem:gw-eu", "onprem:gw-eu", '["bedrock-*"]', []),  # a glob: checked per call
        ("onprem:gw-eu", "onprem:gw-eu", "[claude]", []),  # inference_geo may bring it inside
        (
            "onprem:gw-eu",
            "onprem:gw-eu",
            "[bedrock-eu, bedrock-us]",
            ["connection 'bedrock-us' is in aws:us-east-1: every call it grants would be refused"],
        ),
        (
            "onprem:gw-us",
            "onprem:gw-eu",
            "[bedrock-eu]",
            ["the gateway (gateway.region) is in onprem:gw-us: every call"],
        ),
        (
            "onprem:gw-eu",
            "aws:us-east-1",
            "[bedrock-eu]",
            ["the recording store (gateway.recordings) is in aws:us-east-1: every call"],
        ),
    ],
)
def test_policy_check_refuses_paths_that_leave_the_policys_regions(
    gateway: str, recordings: str, connections: str, expected: list[str]
) -> None:
    text = WHOLE_PATH.format(gateway=gateway, recordings=recordings, connections=connections)
    if not expected:
        parse_config(text, env={})
        return
    problems = errors(text)
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem.message
