"""Shared fixtures: the demo LLM as the remote provider, and a gateway in front of it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from geogate.demo import DemoSettings, create_demo_app
from geogate.store import Store, open_store
from tests.gateways import Gateway, run_gateway
from tests.servers import run_asgi
from tests.upstreams import (
    EndlessStream,
    GatedStream,
    garbage,
    hang,
    reset_mid_stream,
    run_tcp,
    stall_mid_stream,
    whoami,
)

UPSTREAM_KEY = "demo-upstream-key"

POLICY = """
version: 1
gateway:
  region: onprem:test-eu
  state: sqlite:///state.db
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
  onprem:test-us: {{jurisdiction: us}}
connections:
  oai: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  claude:
    type: anthropic
    url: "{demo}"
    region: onprem:test-eu
    credentials: {{header: {{x-api-key: {key}}}}}
  raw: {{type: http, url: "{demo}/v1", region: onprem:test-eu}}
  finance-llm: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  us-llm: {{type: openai, url: "{demo}/v1", region: onprem:test-us, credentials: {{bearer: {key}}}}}
  masked-llm: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  reviewed-llm: {{type: openai, url: "{demo}/v1", region: onprem:test-eu}}
  agent-llm: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, agent: dc1}}
  small: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, max_body: 2KB, credentials: {{bearer: {key}}}}}
  small-raw: {{type: http, url: "{whoami}", region: onprem:test-eu, max_body: 2KB}}
  gated: {{type: openai, url: "{gated}/v1", region: onprem:test-eu}}
  gated-claude: {{type: anthropic, url: "{gated_claude}", region: onprem:test-eu}}
  hang: {{type: openai, url: "{hang}/v1", region: onprem:test-eu, timeout: {{connect: 1s, first_byte: 500ms, idle: 500ms}}}}
  stall: {{type: http, url: "{stall}", region: onprem:test-eu, timeout: {{first_byte: 5s, idle: 500ms}}}}
  garbage: {{type: openai, url: "{garbage}/v1", region: onprem:test-eu}}
  reset: {{type: openai, url: "{reset}/v1", region: onprem:test-eu}}
  whoami: {{type: http, url: "{whoami}/base", region: onprem:test-eu}}
  endless: {{type: http, url: "{endless}", region: onprem:test-eu}}
  quick-answer: {{type: http, url: "{whoami}", region: onprem:test-eu, timeout: {{first_byte: 2s}}}}
  bad-ca: {{type: http, url: "{whoami}", region: onprem:test-eu, tls: {{ca_file: /nonexistent/ca.pem}}}}
  refused: {{type: openai, url: "{refused}/v1", region: onprem:test-eu, timeout: {{connect: 1s}}}}
policies:
  - name: masked
    subjects: {{groups: [support-eu]}}
    connections: [masked-llm]
    regions: [eu]
    mask: {{request: [us_ssn], on_detect: block}}
  - name: reviewed
    subjects: {{groups: [support-eu]}}
    connections: [reviewed-llm]
    review: {{approvers: {{groups: [security]}}, mode: ask}}
  - name: support-eu
    subjects: {{groups: [support-eu]}}
    connections: [oai, claude, raw, "us-*", agent-llm, small, small-raw, gated, gated-claude,
                  hang, stall, garbage, reset, refused, whoami,
                  endless, bad-ca, quick-answer]
    regions: [eu]
  - name: finance
    subjects: {{groups: [finance]}}
    connections: [finance-llm]
"""


@pytest.fixture
def state_url(tmp_path: Path) -> str:
    """A state store of the test's own; test_store.py nests it deeper to test folder creation."""
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture
async def store(state_url: str) -> AsyncIterator[Store]:
    async with await open_store(state_url) as opened:
        yield opened


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    with run_asgi(create_demo_app(DemoSettings(api_key=UPSTREAM_KEY, chunk_delay=0.0))) as url:
        yield url


@pytest.fixture(scope="session")
def gated() -> GatedStream:
    return GatedStream()


@pytest.fixture(scope="session")
def gated_claude() -> GatedStream:
    return GatedStream()


@pytest.fixture(scope="session")
def endless() -> EndlessStream:
    return EndlessStream()


@pytest.fixture(scope="session")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
    demo_url: str,
    gated: GatedStream,
    gated_claude: GatedStream,
    endless: EndlessStream,
) -> Iterator[Gateway]:
    with ExitStack() as stack:
        urls = {
            name: stack.enter_context(run_tcp(handler))
            for name, handler in {
                "hang": hang,
                "garbage": garbage,
                "reset": reset_mid_stream,
                "stall": stall_mid_stream,
            }.items()
        }
        # a port bound but never listening: connections are refused, and no other server
        # started during the session can take it
        blocker = stack.enter_context(socket.socket())
        blocker.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{blocker.getsockname()[1]}"
        urls["gated"] = stack.enter_context(run_asgi(gated))
        urls["gated_claude"] = stack.enter_context(run_asgi(gated_claude))
        urls["whoami"] = stack.enter_context(run_asgi(whoami))
        urls["endless"] = stack.enter_context(run_asgi(endless))
        policy = POLICY.format(demo=demo_url, key=UPSTREAM_KEY, refused=closed, **urls)
        yield stack.enter_context(run_gateway(tmp_path_factory.mktemp("gw"), policy))
