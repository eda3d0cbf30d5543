"""`geogate sessions list/show/replay/export`, locally and through the admin API.

The official openai and anthropic SDKs call the demo LLM through a real gateway, grouping calls
with `x-geogate-session`; once the gateway has indexed them (every 100 ms here), the CLI reads
the same stores locally and through that gateway's admin API.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import anthropic
import openai
import pytest
from typer.testing import CliRunner, Result

from geogate.cli import app
from geogate.cli.sessions import LocalSessions, play, printable, schedule
from geogate.demo import DemoSettings, create_demo_app
from geogate.recording.calls import session_key
from geogate.recording.sessions import RecordedCall, Session, conversation, reply_turn
from tests.gateways import Gateway, run_gateway
from tests.recordings import records as log_records
from tests.servers import run_asgi

SSN = "123-45-6789"
CHUNK_DELAY = 0.05
"""The demo's pause between streamed events: the pace a replay must keep."""

# Requests are masked too: the record keeps a request as it left, so only then does a replay
# never show the SSN. Replies are masked as they stream, chunk by chunk, as in production.
POLICY = """\
version: 1
gateway:
  region: onprem:test-eu
  state: "sqlite:///{folder}/state.db"
  audit_key: "{folder}/audit.key"
  recordings: {{store: "file://{folder}/recordings", checkpoints: {{interval: 100ms}}}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
connections:
  llm: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  other: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  claude: {{type: anthropic, url: "{demo}", region: onprem:test-eu, credentials: {{header: {{x-api-key: demo}}}}}}
policies:
  - name: support
    subjects: {{groups: [support]}}
    connections: [llm, claude]
    mask: {{request: [us_ssn], response: [us_ssn]}}
  - name: sales
    subjects: {{groups: [sales]}}
    connections: [other]
"""

runner = CliRunner()


@dataclass
class Recorded:
    folder: Path
    gateway: Gateway
    root_key: str
    alice_key: str
    alice: str
    """The key of alice's `ticket-7` session."""
    bob: str
    """The key of bob's `ticket-7` session: the same session id, another caller."""
    streamed: str
    """The text the openai SDK received from the streamed chat call."""
    claude_streamed: str
    responses_streamed: str
    between: datetime
    """A moment after alice's calls and before bob's."""

    @property
    def config(self) -> str:
        return str(self.folder / "geogate.yaml")


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    folder = tmp_path_factory.mktemp("sessions")
    demo_app = create_demo_app(DemoSettings(api_key="demo", chunk_delay=CHUNK_DELAY))
    with run_asgi(demo_app) as demo:
        policy = POLICY.format(folder=folder, demo=demo)
        with run_gateway(folder, policy) as gw:
            alice_key = gw.create_key("alice@example.com", groups=["support"])
            bob_key = gw.create_key("bob@example.com", groups=["sales"])
            root_key = gw.create_key("root@example.com", groups=["geogate-admins"])
            llm = _openai(gw, "llm", alice_key, "ticket-7")
            first = [{"role": "user", "content": f"My SSN is {SSN}"}]
            answer = llm.chat.completions.create(model="demo", messages=first)
            history = [
                *first,
                {"role": "assistant", "content": answer.choices[0].message.content},
                {"role": "user", "content": f"Read back {SSN} word by word please"},
            ]
            stream = llm.chat.completions.create(model="demo", messages=history, stream=True)
            streamed = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
            events = llm.responses.create(
                model="demo", instructions="Be brief.", input="What is my ticket?", stream=True
            )
            responses_streamed = "".join(
                event.delta for event in events if event.type == "response.output_text.delta"
            )
            claude = anthropic.Anthropic(
                base_url=gw.url("claude"),
                api_key=alice_key,
                max_retries=0,
                default_headers={"x-geogate-session": "draft-2"},
            )
            with claude.messages.stream(
                model="demo",
                max_tokens=100,
                system="You draft replies.",
                messages=[{"role": "user", "content": "Draft a reply to ticket 4711"}],
            ) as claude_stream:
                claude_streamed = "".join(claude_stream.text_stream)
            _openai(gw, "llm", alice_key, "ansi-1").chat.completions.create(
                model="demo",
                messages=[
                    {"role": "user", "content": "look \x1b[2J\x1b]0;pwned\x07 a\u202egpj.exe"}
                ],
            )
            between = datetime.now(UTC)
            _openai(gw, "other", bob_key, "ticket-7").chat.completions.create(
                model="demo", messages=[{"role": "user", "content": "bob's own ticket-7"}]
            )
            with pytest.raises(openai.PermissionDeniedError):
                _openai(gw, "llm", bob_key, "denied-1").chat.completions.create(
                    model="demo", messages=[{"role": "user", "content": "let me in"}]
                )
            _wait_until_indexed(gw, calls=7)
            yield Recorded(
                folder=folder,
                gateway=gw,
                root_key=root_key,
                alice_key=alice_key,
                alice=session_key("alice@example.com", "ticket-7"),
                bob=session_key("bob@example.com", "ticket-7"),
                streamed=streamed,
                claude_streamed=claude_streamed,
                responses_streamed=responses_streamed,
                between=between,
            )


def _wait_until_indexed(gw: Gateway, calls: int) -> None:
    """Until the index has every call, and the reply of every call that was forwarded."""
    everything = (datetime(2000, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC))
    deadline = time.monotonic() + 10
    while True:
        rows = gw.on_store(lambda store: store.recorded.between(*everything))
        replied = [
            row for row in rows if row.decision == "deny" or row.last_index > row.first_index
        ]
        if len(rows) == len(replied) == calls:
            return
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GEOGATE_URL", "GEOGATE_TOKEN", "GEOGATE_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def _openai(gw: Gateway, connection: str, key: str, session: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.url(connection),
        api_key=key,
        max_retries=0,
        default_headers={"x-geogate-session": session},
    )


def cli(rec: Recorded, *args: str, remote: str | None = None) -> Result:
    where = ["--gateway", rec.gateway.base_url, "--token", remote] if remote else []
    return runner.invoke(app, ["sessions", *args, "--config", rec.config, *where])


def listed(rec: Recorded, *args: str) -> set[tuple[str, str]]:
    result = cli(rec, "list", "--json", *args)
    assert result.exit_code == 0, result.output
    return {(row["user"], row["session"]) for row in json.loads(result.stdout)}


def local_session(rec: Recorded, session_id: str) -> Session:
    return LocalSessions(rec.gateway.config).session(session_id)


ALICE = "alice@example.com"
BOB = "bob@example.com"


def test_list_filters(recorded: Recorded) -> None:
    everyone = {
        (ALICE, "ticket-7"),
        (ALICE, "draft-2"),
        (ALICE, "ansi-1"),
        (BOB, "ticket-7"),
        (BOB, "denied-1"),
    }
    assert listed(recorded) == everyone
    assert listed(recorded, "--since", "24h") == everyone
    assert listed(recorded, "--user", BOB) == {(BOB, "ticket-7"), (BOB, "denied-1")}
    assert listed(recorded, "--connection", "claude") == {(ALICE, "draft-2")}
    assert listed(recorded, "--decision", "deny") == {(BOB, "denied-1")}
    assert listed(recorded, "--decision", "error") == set()
    assert listed(recorded, "--since", recorded.between.isoformat()) == {
        (BOB, "ticket-7"),
        (BOB, "denied-1"),
    }
    assert listed(recorded, "--since", "2099-01-01") == set()
    assert len(listed(recorded, "--limit", "2")) == 2
    bad = cli(recorded, "list", "--since", "yesterday")
    assert bad.exit_code == 1 and "24h" in bad.output

    table = cli(recorded, "list", "--user", ALICE)
    assert table.exit_code == 0
    assert recorded.alice in table.stdout and "ticket-7" in table.stdout
    assert recorded.bob not in table.stdout


def test_show_lists_each_call(recorded: Recorded) -> None:
    result = cli(recorded, "show", recorded.alice)
    assert result.exit_code == 0, result.output
    session = local_session(recorded, recorded.alice)
    assert session.summary.calls == len(session.calls) == 3 and session.missing == 0
    for call in session.calls:
        assert call.call["request_id"] in result.stdout
    assert "onprem:test-eu; by=cidr" in result.stdout  # the evidence of each reply's region
    assert f"support@{session.calls[0].call['policy_version']}" in result.stdout
    assert "us_ssn=1" in result.stdout and "allow" in result.stdout

    denied = cli(recorded, "show", "denied-1")
    assert denied.exit_code == 0, denied.output
    assert "deny connection_not_allowed" in denied.stdout and "403" in denied.stdout


def test_a_session_id_of_two_callers_is_never_merged(recorded: Recorded) -> None:
    ambiguous = cli(recorded, "show", "ticket-7")
    assert ambiguous.exit_code == 1
    assert recorded.alice in ambiguous.output and recorded.bob in ambiguous.output
    alice = local_session(recorded, recorded.alice)
    bob = local_session(recorded, recorded.bob)
    assert {c.call["subject"] for c in alice.calls} == {ALICE}
    assert {c.call["subject"] for c in bob.calls} == {BOB} and len(bob.calls) == 1


def test_export_is_the_logs_records(recorded: Recorded) -> None:
    records = log_records(recorded.folder)
    for key in (recorded.alice, session_key(BOB, "denied-1")):
        result = cli(recorded, "export", key)
        assert result.exit_code == 0, result.output
        exported = json.loads(result.stdout)
        assert exported["session"]["key"] == key
        firsts = [r for r in records if r.get("session_key") == key]
        assert [pair["call"] for pair in exported["calls"]] == firsts
        replies = {r["request_id"]: r for r in records if r["kind"] == "reply"}
        assert [pair["reply"] for pair in exported["calls"]] == [
            replies.get(r["request_id"]) for r in firsts
        ]
    assert exported["calls"][0]["call"]["kind"] == "refused"
    assert exported["calls"][0]["reply"] is None
    show = cli(recorded, "show", recorded.alice, "--json")
    assert json.loads(show.stdout) == json.loads(cli(recorded, "export", recorded.alice).stdout)


def test_replay_prints_the_masked_conversation(recorded: Recorded) -> None:
    result = cli(recorded, "replay", recorded.alice, "--speed", "0")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert SSN not in out
    assert f"assistant: {recorded.streamed}\n" in out and "[US_SSN]" in recorded.streamed
    assert f"assistant: {recorded.responses_streamed}\n" in out
    assert "system: Be brief.\nuser: What is my ticket?\n" in out
    # The second call repeats the first as history: shown once.
    assert out.count("user: My SSN is [US_SSN]\n") == 1
    assert "user: Read back [US_SSN] word by word please\n" in out

    claude = cli(recorded, "replay", "draft-2", "--speed", "0")
    assert claude.exit_code == 0, claude.output
    assert "system: You draft replies.\nuser: Draft a reply to ticket 4711\n" in claude.stdout
    assert f"assistant: {recorded.claude_streamed}\n" in claude.stdout

    denied = cli(recorded, "replay", "denied-1", "--speed", "0")
    assert "gateway: refused (connection_not_allowed)" in denied.stdout


def test_replay_escapes_control_characters(recorded: Recorded) -> None:
    result = cli(recorded, "replay", "ansi-1", "--speed", "0")
    assert result.exit_code == 0, result.output
    assert not any(char in result.stdout for char in "\x1b\x07\u202e")
    assert "user: look \\x1b[2J\\x1b]0;pwned\\x07 a\\u202egpj.exe\n" in result.stdout


def _streamed_chat(session: Session) -> tuple[RecordedCall, dict[str, Any]]:
    """The streamed chat completion of a session, and its reply record."""
    (call,) = [
        c
        for c in session.calls
        if c.call["target"].endswith("/chat/completions")
        and c.call["request"]["text"].count('"stream":true')
    ]
    assert call.reply is not None
    return call, call.reply


def _text_chunks(reply: dict[str, Any]) -> list[tuple[float, str]]:
    """The recorded chat chunks that carry text, read here independently of the replay."""
    found, pending = [], ""
    for at, raw in reply["reply"]["chunks"]:
        pending += raw
        *events, pending = pending.split("\n\n")
        text = ""
        for event in events:
            if event.startswith("data: {"):
                for choice in json.loads(event[6:])["choices"]:
                    text += choice["delta"].get("content") or ""
        if text:
            found.append((at, text))
    return found


def test_replay_keeps_the_recorded_pace(recorded: Recorded) -> None:
    session = local_session(recorded, recorded.alice)
    call, reply = _streamed_chat(session)
    recorded_chunks = _text_chunks(reply)
    assert len(recorded_chunks) > 3
    assert "".join(text for _, text in recorded_chunks) == recorded.streamed
    assert recorded_chunks[-1][0] > 3 * CHUNK_DELAY * 1000  # paced by the demo, as recorded
    turn = reply_turn(call.call["request_id"], reply)
    assert turn.text == recorded.streamed
    for speed in (1.0, 2.0):
        assert schedule(turn, speed) == [(at / 1000 / speed, text) for at, text in recorded_chunks]
    assert schedule(turn, 0) == [(0.0, text) for _, text in recorded_chunks]

    one = Session(summary=session.summary, calls=[call])
    for speed in (1.0, 2.0):
        offsets = [at / 1000 / speed for at, _ in recorded_chunks]
        on_time = _reply_writes(one, speed, late=0.0, chunks=len(recorded_chunks))
        assert [text for _, text in on_time] == [text for _, text in recorded_chunks]
        # a punctual sleeper: each chunk exactly at its recorded time since the reply began
        assert [at for at, _ in on_time] == pytest.approx(offsets, abs=1e-9), speed

        late = 0.02
        woken_late = _reply_writes(one, speed, late=late, chunks=len(recorded_chunks))
        assert [text for _, text in woken_late] == [text for _, text in recorded_chunks]
        for index, ((measured, _), due) in enumerate(zip(woken_late, offsets, strict=True)):
            # never ahead of the recording, and a late wake-up does not delay the chunks
            # after it: at most one wake-up's lateness behind, however many came before
            assert due - 1e-9 <= measured <= due + late + 1e-9, (speed, index)


class _SlowWaker:
    """A clock that moves only when `play` sleeps, and a sleep that wakes `late` seconds after
    it was due, as on a loaded machine: the replay is timed without waiting for real."""

    def __init__(self, late: float) -> None:
        self.now = 1000.0
        self.late = late

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds + self.late


def _reply_writes(
    session: Session, speed: float, late: float, chunks: int
) -> list[tuple[float, str]]:
    """The `chunks` texts `play` writes after the last "assistant: ", each with the time it was
    written, in seconds after that "assistant: "."""
    waker = _SlowWaker(late)
    writes: list[tuple[float, str]] = []
    play(
        session,
        speed,
        lambda text: writes.append((waker.now, text)),
        clock=waker.clock,
        sleep=waker.sleep,
    )
    start = max(i for i, (_, text) in enumerate(writes) if text == "assistant: ")
    began = writes[start][0]
    return [(at - began, text) for at, text in writes[start + 1 : start + 1 + chunks]]


def test_conversation_of_other_shapes() -> None:
    """Events split across chunks, CRLF, error events, tool calls, binary and metadata only."""
    sse = "text/event-stream"
    delta = 'data: {"type":"response.output_text.delta","delta":"%s"}\r\n\r\n'
    chunks = [
        [0.0, "event: response.output_text.delta\r\n" + (delta % "Hel")[:20]],
        [10.0, (delta % "Hel")[20:] + (delta % "lo")],
        [20.0, 'event: error\ndata: {"error":{"message":"upstream went away"}}\n\n'],
    ]
    call = {"kind": "call", "request_id": "r1", "request": {"content_type": "application/json"}}
    call["request"]["text"] = json.dumps(
        {
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"function": {"name": "forecast", "arguments": '{"city":"Oslo"}'}}
                    ],
                },
                {"role": "tool", "content": "rain"},
            ]
        }
    )
    reply = {"kind": "reply", "request_id": "r1", "status": 200}
    reply["reply"] = {"content_type": sse, "chunks": chunks}
    binary = {"kind": "call", "request_id": "r2", "request": {"content_type": "", "base64": "AAEC"}}
    quiet = {"kind": "reply", "request_id": "r2", "status": 200}
    summary = {
        "key": "ses_x",
        "session": "s",
        "subject": None,
        "user": None,
        "started": "2026-12-01T00:00:00Z",
        "ended": "2026-12-01T00:00:00Z",
        "calls": 2,
        "denied": 0,
        "connections": [],
        "regions": [],
        "bytes_in": 0,
        "bytes_out": 0,
    }
    session = Session.model_validate(
        {
            "session": summary,
            "calls": [{"call": call, "reply": reply}, {"call": binary, "reply": quiet}],
        }
    )
    turns = conversation(session)
    assert [(t.role, t.text) for t in turns] == [
        ("user", "weather?"),
        ("assistant", '[tool call forecast({"city":"Oslo"})]'),
        ("tool", "rain"),
        ("assistant", "Hello[error: upstream went away]"),
        ("request", "<3 bytes of binary>"),
        ("gateway", "(HTTP 200; content not recorded)"),
    ]
    assert turns[3].chunks == (
        (10.0, "Hello"),
        (20.0, "[error: upstream went away]"),
    )


def test_remote_mode_answers_as_local(recorded: Recorded) -> None:
    root = recorded.root_key
    for args in (["list", "--json"], ["list", "--json", "--decision", "deny"]):
        local, remote = cli(recorded, *args), cli(recorded, *args, remote=root)
        assert remote.exit_code == 0, remote.output
        assert json.loads(remote.stdout) == json.loads(local.stdout)
    for args in (["show", recorded.alice, "--json"], ["export", "draft-2"]):
        local, remote = cli(recorded, *args), cli(recorded, *args, remote=root)
        assert remote.exit_code == 0, remote.output
        assert json.loads(remote.stdout) == json.loads(local.stdout)
    replay = cli(recorded, "replay", recorded.alice, "--speed", "0", remote=root)
    assert replay.stdout == cli(recorded, "replay", recorded.alice, "--speed", "0").stdout

    ambiguous = cli(recorded, "show", "ticket-7", remote=root)
    assert ambiguous.exit_code == 1 and recorded.bob in ambiguous.output
    unknown = cli(recorded, "show", "no-such-session", remote=root)
    assert unknown.exit_code == 1 and "No recorded session 'no-such-session'" in unknown.output

    refused = cli(recorded, "list", remote=recorded.alice_key)
    assert refused.exit_code == 1 and refused.stdout == ""
    status, body = _get(recorded, "/api/v1/sessions", recorded.alice_key)
    assert status == 403 and body["error"]["type"] == "geogate"
    status, body = _get(recorded, f"/api/v1/sessions/{recorded.alice}/export", recorded.alice_key)
    assert status == 403 and "calls" not in body


def _get(rec: Recorded, path: str, token: str) -> tuple[int, Any]:
    """A GET with `path` sent exactly as written: no client normalises `..` away."""
    parts = urlsplit(rec.gateway.base_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port)
    try:
        connection.request(
            "GET", quote(path, safe="/%.'="), headers={"Authorization": f"Bearer {token}"}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


ATTACKS = [
    "..",
    "../state.db",
    "../../../../etc/passwd",
    "%2e%2e",
    "..%2f..%2fstate.db",
    "logs/../audit.key",
    "' OR '1'='1",
    "%",
]


@pytest.mark.parametrize("session_id", ATTACKS)
def test_a_path_as_session_id_is_an_unknown_session(recorded: Recorded, session_id: str) -> None:
    result = cli(recorded, "export", session_id)
    assert result.exit_code == 1 and result.stdout == ""
    assert "No recorded session" in result.output
    remote = cli(recorded, "export", session_id, remote=recorded.root_key)
    assert remote.exit_code == 1 and "No recorded session" in remote.output
    for suffix in ("", "/export"):
        status, body = _get(recorded, f"/api/v1/sessions/{session_id}{suffix}", recorded.root_key)
        assert status == 404, body
        assert body["error"]["code"] == "not_found", body


def test_printable_shows_controls_and_bidi_overrides_as_escapes() -> None:
    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    shown = printable(f"tab\there\nnew line \x00\x1b\x7f\x9b {bidi}")
    assert shown == (
        "tab\there\nnew line \\x00\\x1b\\x7f\\x9b "
        "\\u061c\\u200e\\u200f\\u202a\\u202b\\u202c\\u202d\\u202e\\u2066\\u2067\\u2068\\u2069"
    )
    kept = "caf\u00e9, \u05e9\u05dc\u05d5\u05dd, \U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert printable(kept) == kept  # letters of any script, and emoji joiners, stay as they are
