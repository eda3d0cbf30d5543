"""Residency-aware routing: a connection's targets, chosen only inside the policy's regions.

Three deployments of one API on three loopback addresses, each proven to be in its own region
by the policy's `cidrs`: two in the EU, one in the US. An EU policy spreads calls over the EU
targets, fails over between them, and never sends anything to the US one, not even when both
EU targets are down.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx2
import openai
import pytest

from geogate.config import ConfigError, parse_config
from geogate.identity import Principal
from geogate.policy import compile_policy
from geogate.residency import catalog_for
from tests.gateways import Gateway, run_gateway
from tests.servers import free_port, run_asgi
from tests.upstreams import Target

EU_A, EU_B, US = "127.0.0.3", "127.0.0.1", "127.0.0.2"

POLICY = """
version: 1
gateway: {{state: "sqlite:///state.db", region: onprem:gw}}
regions:
  onprem:gw: {{jurisdiction: eu}}
  onprem:eu-a: {{jurisdiction: eu, cidrs: ["{eu_a}/32"]}}
  onprem:eu-b: {{jurisdiction: eu, cidrs: ["{eu_b}/32"]}}
  onprem:us: {{jurisdiction: us, cidrs: ["{us}/32"]}}
connections:
  llm:
    type: openai
    targets:
      - {{url: "http://{eu_a}:{port_a}/v1", region: onprem:eu-a}}
      - {{url: "http://{eu_b}:{port_b}/v1", region: onprem:eu-b}}
      - {{url: "http://{us}:{port_us}/v1", region: onprem:us}}
policies:
  - {{name: eu-team, subjects: {{groups: [eu-team]}}, connections: [llm], regions: [eu]}}
  - {{name: anywhere, subjects: {{groups: [global]}}, connections: [llm]}}
"""


class Deployments:
    """The three targets; `eu_a` and `eu_b` can be taken down and brought back."""

    def __init__(self, folder: Path) -> None:
        self.ports = {"a": free_port(), "b": free_port(), "us": free_port()}
        self.targets = {name: Target(name) for name in self.ports}
        self._running: dict[str, ExitStack] = {}
        self.folder = folder

    def start(self, name: str) -> None:
        host = {"a": EU_A, "b": EU_B, "us": US}[name]
        stack = ExitStack()
        stack.enter_context(run_asgi(self.targets[name], self.ports[name], host=host))
        self._running[name] = stack

    def stop(self, name: str) -> None:
        self._running.pop(name).close()

    def close(self) -> None:
        for name in list(self._running):
            self.stop(name)

    def policy(self) -> str:
        return POLICY.format(
            eu_a=EU_A,
            eu_b=EU_B,
            us=US,
            port_a=self.ports["a"],
            port_b=self.ports["b"],
            port_us=self.ports["us"],
        )


@pytest.fixture
def deployments(tmp_path: Path) -> Iterator[Deployments]:
    running = Deployments(tmp_path)
    try:
        yield running
    finally:
        running.close()


def answer(gw: Gateway, key: str) -> tuple[int, str]:
    client = openai.OpenAI(base_url=gw.url("llm"), api_key=key, max_retries=0)
    try:
        reply = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}]
        )
    except openai.APIStatusError as exc:
        return exc.status_code, str(exc.code)
    return 200, reply.choices[0].message.content or ""


def test_calls_spread_over_the_targets_inside_the_policy(
    tmp_path: Path, deployments: Deployments
) -> None:
    for name in ("a", "b", "us"):
        deployments.start(name)
    with run_gateway(tmp_path, deployments.policy()) as gw:
        key = gw.create_key("ann@example.eu", groups=["eu-team"])
        answers = [answer(gw, key) for _ in range(6)]
    assert sorted(answers) == [(200, "from a")] * 3 + [(200, "from b")] * 3
    assert deployments.targets["us"].calls == []


def test_failover_stays_inside_the_jurisdiction(tmp_path: Path, deployments: Deployments) -> None:
    deployments.start("b")
    deployments.start("us")  # eu-a is down from the start
    with run_gateway(tmp_path, deployments.policy()) as gw:
        key = gw.create_key("ann@example.eu", groups=["eu-team"])
        assert [answer(gw, key) for _ in range(4)] == [(200, "from b")] * 4
        response = httpx2.post(
            gw.url("llm") + "/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "demo", "messages": []},
        )
        assert response.headers["x-geogate-region"].startswith(
            f"onprem:eu-b; by=cidr; address={EU_B}"
        )

        deployments.stop("b")  # now every EU target is down
        refused = httpx2.post(
            gw.url("llm") + "/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "demo", "messages": []},
        )
        assert refused.status_code == 403
        error = refused.json()["error"]
        assert error["code"] == "region_not_allowed"
        assert "targets in other regions are never used" in error["message"]
        assert "onprem:us" not in error["message"]

        deployments.start("b")  # back: calls flow again, still never to the US
        assert answer(gw, key) == (200, "from b")
    assert deployments.targets["us"].calls == []


def test_a_policy_without_regions_may_use_every_target(
    tmp_path: Path, deployments: Deployments
) -> None:
    for name in ("a", "b", "us"):
        deployments.start(name)
    with run_gateway(tmp_path, deployments.policy()) as gw:
        key = gw.create_key("gil@example.com", groups=["global"])
        answers = {answer(gw, key) for _ in range(6)}
    assert answers == {(200, "from a"), (200, "from b"), (200, "from us")}


ANN = Principal("ann@example.eu", "ann@example.eu", frozenset({"eu-team"}), None, "api_key", None)


def test_the_decision_names_the_targets_it_allows() -> None:
    config = parse_config(
        POLICY.format(eu_a=EU_A, eu_b=EU_B, us=US, port_a=1, port_b=2, port_us=3), env={}
    )
    decision = compile_policy(config, catalog_for(config.regions, config.jurisdictions)).decide(
        ANN, "llm"
    )
    assert decision.allowed and decision.targets == (0, 1)
    assert [(hop.name, hop.region) for hop in decision.hops] == [
        ("gateway", "onprem:gw"),
        ("target", "onprem:eu-a"),
        ("target", "onprem:eu-b"),
        ("recording store", "onprem:gw"),
    ]
    assert any("outside eu: not used" in reason for reason in decision.reasons)


def test_no_target_inside_the_policy_is_refused_at_once() -> None:
    """A Swiss team, none of whose targets is in Switzerland (a glob: refused per call)."""
    config = parse_config(
        textwrap.dedent(
            """\
            version: 1
            gateway: {region: onprem:zrh}
            regions:
              onprem:zrh: {country: ch}
              onprem:fra: {country: de}
              onprem:nyc: {country: us}
            connections:
              llm:
                type: openai
                targets:
                  - {url: "https://llm.fra.example/v1", region: onprem:fra}
                  - {url: "https://llm.nyc.example/v1", region: onprem:nyc}
            policies:
              - {name: ch-team, subjects: {groups: [eu-team]}, connections: ["ll*"], regions: [ch]}
            """
        ),
        env={},
    )
    decision = compile_policy(config, catalog_for(config.regions, config.jurisdictions)).decide(
        ANN, "llm"
    )
    assert (decision.allowed, decision.code) == (False, "region_not_allowed")
    assert "none of the 2 targets of connection 'llm'" in decision.message


@pytest.mark.parametrize(
    ("connection", "fragment", "line"),
    [
        (
            """\
            llm:
              type: openai
              url: https://api.openai.com/v1
              targets: [{url: "https://eu.api.openai.com/v1"}]""",
            "a connection takes either `url` or a list of `targets`",
            3,
        ),
        (
            """\
            llm:
              type: openai
              region: onprem:dc
              targets: [{url: "https://eu.api.openai.com/v1"}]""",
            "with `targets`, give each target its own `region`",
            3,
        ),
        (
            """\
            llm:
              type: openai
              targets:
                - {url: "https://bedrock-runtime.eu-central-1.amazonaws.com"}
                - {url: "https://bedrock-runtime.eu-west-1.amazonaws.com", region: aws:us-east-1}""",
            "says aws:eu-west-1, but region says 'aws:us-east-1'",
            7,
        ),
        (
            """\
            llm:
              type: openai
              targets:
                - {url: "https://eu.api.openai.com/v1"}
                - {url: "https://llm.corp.example/v1"}""",
            "host llm.corp.example is not one GeoGate can attribute",
            7,
        ),
    ],
)
def test_targets_are_checked_one_by_one(connection: str, fragment: str, line: int) -> None:
    text = "version: 1\nregions:\n  onprem:dc: {jurisdiction: eu}\nconnections:\n"
    text += textwrap.indent(textwrap.dedent(connection), "  ") + "\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, env={})
    [problem] = caught.value.problems
    assert fragment in problem.message
    assert problem.line == line + 2


def test_targets_get_their_attributed_regions_and_their_own_credentials() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            version: 1
            connections:
              llm:
                type: openai
                credentials: {bearer: shared}
                targets:
                  - {url: "https://bedrock-runtime.eu-central-1.amazonaws.com"}
                  - {url: "https://bedrock-runtime.eu-west-1.amazonaws.com", credentials: {bearer: own}}
            """
        ),
        env={},
    )
    deployments = config.connections["llm"].deployments
    assert [target.region for target in deployments] == ["aws:eu-central-1", "aws:eu-west-1"]
    assert [target.credentials.bearer for target in deployments if target.credentials] == [
        "shared",
        "own",
    ]
