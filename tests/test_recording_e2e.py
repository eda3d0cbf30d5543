"""Recording through the gateway: every call is in the signed log before it leaves.

The official OpenAI SDK calls the demo LLM through a gateway whose recordings go to a folder
of the test; the log is then read and verified as `geogate audit verify` does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from geogate.demo import DemoSettings, create_demo_app
from geogate.recording import AuditKey, open_storage
from geogate.recording.verify import Report, verify
from tests.gateways import Gateway, run_gateway
from tests.recordings import records
from tests.servers import run_asgi

SSN = "123-45-6789"

POLICY = """\
version: 1
gateway:
  region: onprem:test-eu
  state: "sqlite:///{folder}/state.db"
  audit_key: "{folder}/audit.key"
  recordings: {{store: "file://{folder}/recordings", checkpoints: {{records: 5}}}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
connections:
  llm: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  quiet: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
policies:
  - name: support
    subjects: {{groups: [support]}}
    connections: [llm]
    mask: {{request: [us_ssn], response: [us_ssn]}}
  - name: quiet
    subjects: {{groups: [support]}}
    connections: [quiet]
    record: metadata
"""


def verified(folder: Path) -> Report:
    async def run() -> Report:
        key = AuditKey.load(folder / "audit.key", create=False)
        return await verify(open_storage(f"file://{folder}/recordings"), key.verifier())

    return asyncio.run(run())


def deltas(sse: str) -> str:
    """The text of an OpenAI chat stream."""
    text = ""
    for line in sse.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


@pytest.fixture()
def demo() -> Iterator[str]:
    with run_asgi(create_demo_app(DemoSettings(api_key="demo", chunk_delay=0.005))) as url:
        yield url


def client(gw: Gateway, connection: str, key: str, session: str | None = None) -> openai.OpenAI:
    headers = {"x-geogate-session": session} if session else None
    return openai.OpenAI(
        base_url=gw.url(connection), api_key=key, max_retries=0, default_headers=headers
    )


def test_calls_are_recorded_masked_and_the_log_verifies(tmp_path: Path, demo: str) -> None:
    with run_gateway(tmp_path, POLICY.format(folder=tmp_path, demo=demo)) as gw:
        key = gw.create_key("alice@example.com", groups=["support"])
        llm = client(gw, "llm", key, session="ticket-7")
        reply = llm.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": f"My SSN is {SSN}"}]
        )
        assert SSN not in (reply.choices[0].message.content or "")
        stream = llm.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hello there"}], stream=True
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        client(gw, "quiet", key).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "say nothing"}]
        )
        with pytest.raises(openai.NotFoundError):
            llm.models.retrieve("x")  # an unknown path of the demo: recorded with its status
    found = records(tmp_path)
    kinds = [record["kind"] for record in found]
    assert kinds.count("call") == 4 and kinds.count("reply") == 4
    text = json.dumps(found)
    assert SSN not in text  # masked before it was recorded, in the request and the reply
    first = next(r for r in found if r["kind"] == "call")
    assert first["subject"] == "alice@example.com" and first["groups"] == ["support"]
    assert first["via"] == "api_key" and first["policy"] == "support"
    assert first["session"] == "ticket-7" and first["region"] == "onprem:test-eu"
    assert first["masked"] == {"us_ssn": 1}
    assert "[US_SSN]" in first["request"]["text"]
    stream_reply = [r for r in found if r["kind"] == "reply"][1]
    assert len(stream_reply["reply"]["chunks"]) > 1
    played = "".join(text for _, text in stream_reply["reply"]["chunks"])
    assert deltas(played) == streamed and "hello there" in streamed
    quiet = [r for r in found if r["kind"] == "call"][2]
    assert "request" not in quiet  # record: metadata
    for index, record in enumerate(found):
        assert record["i"] == index
    report = verified(tmp_path)
    assert report.ok, report.to_json()
    assert report.logs[0].signed == len(found)  # the gateway signed its log when it stopped


def test_refused_calls_are_recorded(tmp_path: Path, demo: str) -> None:
    with run_gateway(tmp_path, POLICY.format(folder=tmp_path, demo=demo)) as gw:
        key = gw.create_key("bob@example.com", groups=["nobody"])
        with pytest.raises(openai.PermissionDeniedError):
            client(gw, "llm", key).chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "hi"}]
            )
    (refusal,) = [r for r in records(tmp_path) if r["kind"] == "refused"]
    assert refusal["code"] == "connection_not_allowed" and refusal["user"] == "bob@example.com"
    assert refusal["decision"] == "deny"
    assert verified(tmp_path).ok
