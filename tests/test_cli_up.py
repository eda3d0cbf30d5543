"""`geogate up` as a user runs it: several worker processes, keys and users from the CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.gateways import geogate_up

POLICY = """
version: 1
gateway:
  region: onprem:lab
  state: sqlite:///state.db
regions:
  onprem:lab: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
connections:
  llm: {{type: openai, url: "{demo}/v1", region: onprem:lab, credentials: {{bearer: {key}}}}}
policies:
  - name: support
    subjects: {{groups: [support-eu]}}
    connections: [llm]
    regions: [eu]
"""


def geogate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "geogate", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def running(tmp_path: Path, demo_url: str) -> Iterator[str]:
    (tmp_path / "geogate.yaml").write_text(POLICY.format(demo=demo_url, key=UPSTREAM_KEY))
    with geogate_up(tmp_path) as up:
        yield up.base_url
    assert "Traceback" not in up.output, up.output
    access_lines = [json.loads(line) for line in up.output.splitlines() if line.startswith("{")]
    assert access_lines, "no access log lines reached stdout"
    assert {"request_id", "subject", "decision", "status", "added_ms"} <= access_lines[0].keys()


def fresh_call(base: str, key: str) -> int:
    """A new client each time: a new TCP connection, so either worker may serve it."""
    client = openai.OpenAI(base_url=base + "/c/llm", api_key=key, max_retries=0)
    try:
        client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "hi"}])
    except openai.APIStatusError as exc:
        return exc.status_code
    finally:
        client.close()
    return 200


def test_up_serves_with_workers_and_deactivation_reaches_all(running: str, tmp_path: Path) -> None:
    created = geogate(
        "keys",
        "create",
        "--owner",
        "dana@example.com",
        "--groups",
        "support-eu",
        "--json",
        cwd=tmp_path,
    )
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    assert [fresh_call(running, key) for _ in range(6)] == [200] * 6

    assert geogate("users", "deactivate", "dana@example.com", cwd=tmp_path).returncode == 0
    deadline = time.monotonic() + 10
    while [fresh_call(running, key) for _ in range(10)] != [401] * 10:
        assert time.monotonic() < deadline, "a worker still accepts the deactivated user's key"
        time.sleep(0.2)

    assert geogate("users", "activate", "dana@example.com", cwd=tmp_path).returncode == 0
    deadline = time.monotonic() + 10
    while [fresh_call(running, key) for _ in range(10)] != [200] * 10:
        assert time.monotonic() < deadline, "a worker still refuses the reactivated user"
        time.sleep(0.2)

    def counted() -> float:
        metrics = httpx2.get(running + "/metrics").text
        pattern = r'^geogate_requests_total\{connection="llm".*\} (\S+)$'
        return sum(float(value) for value in re.findall(pattern, metrics, re.M))

    deadline = time.monotonic() + 10
    while counted() < 26:  # every call, whichever worker served it (each counts once it answered)
        assert time.monotonic() < deadline, counted()
        time.sleep(0.1)


def test_up_refuses_a_broken_policy(tmp_path: Path) -> None:
    (tmp_path / "geogate.yaml").write_text("version: 1\nconnections:\n  x: {type: nope}\n")
    result = geogate("up", cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(r"geogate\.yaml:3: ", result.stderr), result.stderr


def test_up_reports_an_unusable_state_store(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be")
    (tmp_path / "geogate.yaml").write_text(
        "version: 1\ngateway: {state: 'sqlite:///blocker/state.db'}\n"
    )
    result = geogate("up", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip()


def test_up_refuses_an_unreadable_ca_file(tmp_path: Path) -> None:
    (tmp_path / "geogate.yaml").write_text(
        "version: 1\nconnections:\n  llm:\n    type: openai\n    url: https://eu.api.openai.com/v1\n"
        "    tls: {ca_file: missing-ca.pem}\n"
    )
    result = geogate("up", cwd=tmp_path)
    assert result.returncode == 1
    assert "connections.llm.tls.ca_file" in result.stderr
    assert "missing-ca.pem cannot be read" in result.stderr
