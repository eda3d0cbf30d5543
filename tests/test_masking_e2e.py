"""Masking through the gateway, with the official SDKs and the demo LLM (which echoes).

The demo LLM answers `You said: <last user message>`, so its reply shows what it received; a
recorder in front of it keeps the raw request bodies to prove what left the gateway.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx2
import openai
import pytest
from starlette.types import Message, Receive, Scope, Send

from geogate.config import load_config, quickstart_path
from geogate.demo import DemoSettings, create_demo_app
from geogate.dlp.plan import compile_masking
from geogate.protocols import ProtocolAdapter
from geogate.protocols.text import SseRewriter
from tests.gateways import Gateway, run_gateway
from tests.servers import run_asgi

SSN, CARD = "123-45-6789", "4111 1111 1111 1111"
PROMPT = f"My SSN is {SSN} and my card is {CARD}."


class Recorder:
    """Wraps an ASGI app and keeps every request body it receives."""

    def __init__(self, app: object) -> None:
        self.app = app
        self.bodies: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)  # type: ignore[operator]
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self.bodies.append(body)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)  # type: ignore[operator]

    def last(self) -> str:
        return self.bodies[-1].decode()


POLICY = """\
version: 1
gateway: {{region: onprem:test-eu, state: "sqlite:///{folder}/state.db", audit_key: "{folder}/audit.key"}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
masking:
  custom:
    employee_id: {{pattern: "EMP-[0-9]{{6}}"}}
  sets:
    customer-pii: [us_ssn, credit_card, iban, email, phone]
connections:
  redact: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  partial: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  tokens: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  reply: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  claude: {{type: anthropic, url: "{demo}", region: onprem:test-eu, credentials: {{header: {{x-api-key: demo}}}}}}
  raw: {{type: http, url: "{demo}", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  broken: {{type: openai, url: "{broken}", region: onprem:test-eu}}
  gzipped: {{type: openai, url: "{gzipped}", region: onprem:test-eu}}
  claude-reply: {{type: anthropic, url: "{demo}", region: onprem:test-eu, credentials: {{header: {{x-api-key: demo}}}}}}
  small: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, max_body: 300B, credentials: {{bearer: demo}}}}
  burst: {{type: openai, url: "{burst}", region: onprem:test-eu}}
policies:
  - name: redact
    subjects: {{groups: [support]}}
    connections: [redact, claude, raw]
    regions: [eu]
    mask: {{request: [customer-pii, employee_id], style: redact}}
  - name: partial
    subjects: {{groups: [support]}}
    connections: [partial]
    mask: {{request: [customer-pii], style: partial}}
  - name: tokens
    subjects: {{groups: [support]}}
    connections: [tokens]
    mask: {{request: [customer-pii], response: [us_ssn], style: tokenize}}
  - name: reply
    subjects: {{groups: [support]}}
    connections: [reply, broken, gzipped, small, claude-reply, burst]
    mask: {{response: [us_ssn, credit_card]}}
"""


async def bad_gateway(scope: Scope, receive: Receive, send: Send) -> None:
    """A target's proxy failing with an HTML page, as load balancers do."""
    if scope["type"] != "http":
        return
    page = b"<html><body>502 Bad Gateway for 123-45-6789</body></html>"
    headers = [(b"content-type", b"text/html"), (b"content-length", str(len(page)).encode())]
    await send({"type": "http.response.start", "status": 502, "headers": headers})
    await send({"type": "http.response.body", "body": page})


async def compressing(scope: Scope, receive: Receive, send: Send) -> None:
    """A target that compresses although the gateway asked for `identity`."""
    if scope["type"] != "http":
        return
    page = gzip.compress(b'{"choices": [{"message": {"content": "SSN 123-45-6789"}}]}')
    headers = [
        (b"content-type", b"application/json"),
        (b"content-encoding", b"gzip"),
        (b"content-length", str(len(page)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": page})


BURST_TEXTS = ["", "Your SSN ", "is 123-4", "5-6789, noted.", ""]


async def burst(scope: Scope, receive: Receive, send: Send) -> None:
    """A streamed reply whose events all go out in one write, as they reach a gateway that
    reads after a model has finished."""
    if scope["type"] != "http":
        return
    events = b"".join(
        b"data: "
        + json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "demo",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
            }
        ).encode()
        + b"\n\n"
        for text in BURST_TEXTS
    )
    headers = [(b"content-type", b"text/event-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": events + b"data: [DONE]\n\n"})


@pytest.fixture(scope="module")
def recorder() -> Iterator[Recorder]:
    recorder = Recorder(create_demo_app(DemoSettings(api_key="demo", chunk_delay=0.0)))
    yield recorder


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, recorder: Recorder) -> Iterator[Gateway]:
    folder: Path = tmp_path_factory.mktemp("masking")
    with (
        run_asgi(recorder) as demo,
        run_asgi(bad_gateway) as broken,
        run_asgi(compressing) as gzipped,
        run_asgi(burst) as bursting,
    ):
        policy = POLICY.format(
            folder=folder, demo=demo, broken=broken, gzipped=gzipped, burst=bursting
        )
        with run_gateway(folder, policy) as gateway:
            yield gateway


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.create_key("alice@example.com", groups=["support"])


def oai(gateway: Gateway, connection: str, key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url(connection), api_key=key, max_retries=0, default_headers=headers
    )


def test_prompt_reaches_the_llm_masked(gateway: Gateway, key: str, recorder: Recorder) -> None:
    raw = oai(gateway, "redact", key).chat.completions.with_raw_response.create(
        model="demo",
        messages=[{"role": "user", "content": PROMPT + " I am EMP-123456."}],
    )
    reply = raw.parse().choices[0].message.content
    assert reply == "You said: My SSN is [US_SSN] and my card is [CREDIT_CARD]. I am [EMPLOYEE_ID]."
    sent = json.loads(recorder.last())
    assert sent["model"] == "demo" and SSN not in recorder.last() and "4111" not in recorder.last()
    assert raw.headers["x-geogate-masked"] == "credit_card=1,employee_id=1,us_ssn=1"


def test_partial_style_and_split_content_parts(
    gateway: Gateway, key: str, recorder: Recorder
) -> None:
    reply = oai(gateway, "partial", key).chat.completions.create(
        model="demo",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "SSN 123-45"},
                    {"type": "text", "text": "-6789, mail jane@example.com"},
                ],
            }
        ],
    )
    assert "123-45" not in recorder.last() and "jane@" not in recorder.last()
    # the SSN's mask lands in the part where it began; the demo joins parts with a newline
    assert reply.choices[0].message.content == "You said: SSN ***-**-6789\n, mail j***@example.com"


def test_nothing_to_mask_sends_the_body_unchanged(
    gateway: Gateway, key: str, recorder: Recorder
) -> None:
    body = b'{"model": "demo", "messages": [{"role": "user", "content": "hello"}]}'
    response = httpx2.post(
        gateway.url("redact") + "/chat/completions",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    assert response.status_code == 200 and "x-geogate-masked" not in response.headers
    assert recorder.bodies[-1] == body


@pytest.mark.parametrize("stream", [False, True])
def test_tokenize_gives_the_caller_the_originals_and_the_llm_placeholders(
    gateway: Gateway, key: str, recorder: Recorder, stream: bool
) -> None:
    client = oai(gateway, "tokens", key, **{"x-geogate-session": "ticket-42"})
    messages = [{"role": "user", "content": PROMPT}]
    if stream:
        chunks = client.chat.completions.create(model="demo", messages=messages, stream=True)
        deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        assert len(deltas) > 2
        reply = "".join(deltas)
    else:
        reply = client.chat.completions.create(model="demo", messages=messages).choices[0]
        reply = reply.message.content or ""
    assert reply == f"You said: {PROMPT}"
    seen = json.loads(recorder.last())["messages"][0]["content"]
    assert SSN not in seen and "4111" not in seen
    assert seen.startswith("My SSN is [US_SSN_") and "my card is [CREDIT_CARD_" in seen
    # the same value in the same session keeps its placeholder
    client.chat.completions.create(model="demo", messages=messages)
    assert json.loads(recorder.last())["messages"][0]["content"] == seen


def test_tokenized_values_are_not_restored_for_another_session(
    gateway: Gateway, key: str, recorder: Recorder
) -> None:
    first = oai(gateway, "tokens", key, **{"x-geogate-session": "a"})
    first.chat.completions.create(model="demo", messages=[{"role": "user", "content": PROMPT}])
    placeholder = json.loads(recorder.last())["messages"][0]["content"].split()[3]
    other = oai(gateway, "tokens", key, **{"x-geogate-session": "b"})
    reply = other.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": f"what is {placeholder}"}]
    )
    assert reply.choices[0].message.content == f"You said: what is {placeholder}"


@pytest.mark.parametrize("stream", [False, True])
def test_response_masking(gateway: Gateway, key: str, stream: bool) -> None:
    client = oai(gateway, "reply", key)
    messages = [{"role": "user", "content": PROMPT}]
    lines = len(gateway.access_lines)
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model="demo", messages=messages, stream=True
        ) as response:
            text = "".join(
                chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices
            )
            assert "x-geogate-masked" not in response.headers  # counts come after the headers
    else:
        raw = client.chat.completions.with_raw_response.create(model="demo", messages=messages)
        text = raw.parse().choices[0].message.content or ""
        assert raw.headers["x-geogate-masked"] == "credit_card=1,us_ssn=1"
    assert text == "You said: My SSN is [US_SSN] and my card is [CREDIT_CARD]."
    deadline = time.monotonic() + 5  # the line is written once the gateway has closed the call
    while len(gateway.access_lines) < lines + 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    logged = json.loads(gateway.access_lines[lines])
    assert logged["masked"] == {"us_ssn": 1, "credit_card": 1}  # the stream's counts too


def test_sse_split_anywhere_by_the_target_is_masked_the_same(gateway: Gateway, key: str) -> None:
    """The demo streams word by word; the SSN crosses several deltas and still is masked."""
    client = oai(gateway, "reply", key)
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "ssn 1 2 3 - 45 - 6789 or 123 - 45-6789"}],
            stream=True,
        )
        if chunk.choices
    )
    assert text == "You said: ssn 1 2 3 - 45 - 6789 or 123 - 45-6789"  # not SSNs: left alone
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "x 987-65-4320 y 078-05-1121."}],
            stream=True,
        )
        if chunk.choices
    )
    assert text == "You said: x 987-65-4320 y [US_SSN]."  # 9xx is no SSN


def test_anthropic_sdk_request_masking(gateway: Gateway, key: str, recorder: Recorder) -> None:
    claude = anthropic.Anthropic(base_url=gateway.url("claude"), api_key=key, max_retries=0)
    message = claude.messages.create(
        model="demo",
        max_tokens=100,
        system="Customer card: 4111-1111-1111-1111",
        messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    )
    assert message.content[0].type == "text"
    assert message.content[0].text == "You said: My SSN is [US_SSN] and my card is [CREDIT_CARD]."
    sent = json.loads(recorder.last())
    assert sent["system"] == "Customer card: [CREDIT_CARD]"


def test_http_connection_masks_json_string_values(
    gateway: Gateway, key: str, recorder: Recorder
) -> None:
    body = {"note": PROMPT, "id": 4111111111111111, "ssn-key": {"nested": [SSN]}}
    response = httpx2.post(
        gateway.url("raw") + "/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code in (200, 400)  # the demo's own answer does not matter here
    sent = json.loads(recorder.last())
    assert sent == {
        "note": "My SSN is [US_SSN] and my card is [CREDIT_CARD].",
        "id": 4111111111111111,
        "ssn-key": {"nested": ["[US_SSN]"]},
    }


def test_body_that_cannot_be_inspected_is_refused_not_forwarded(
    gateway: Gateway, key: str, recorder: Recorder
) -> None:
    before = len(recorder.bodies)
    response = httpx2.post(
        gateway.url("raw") + "/upload",
        content=b"\x89PNG\r\n\x1a\n" + b"123-45-6789",
        headers={"authorization": f"Bearer {key}", "content-type": "image/png"},
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "data_blocked"
    assert len(recorder.bodies) == before


def test_an_error_page_that_cannot_be_masked_is_not_passed_on(gateway: Gateway, key: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        oai(gateway, "broken", key).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "upstream_error"
    assert "HTTP 502" in body["message"] and "123-45-6789" not in str(body)


def test_a_bug_in_request_masking_refuses_and_sends_nothing(
    gateway: Gateway, key: str, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> bytes:
        raise KeyError("123-45-6789")

    monkeypatch.setattr(ProtocolAdapter, "mask_request", broken)
    before = len(recorder.bodies)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        oai(gateway, "redact", key).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": PROMPT}]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "data_blocked"
    assert "KeyError" in body["message"] and "123-45-6789" not in body["message"]
    assert len(recorder.bodies) == before


def test_a_bug_in_stream_masking_ends_the_stream_with_an_error_event(
    gateway: Gateway, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: SseRewriter, chunk: bytes) -> bytes:
        raise RuntimeError("bug")

    monkeypatch.setattr(SseRewriter, "feed", broken)
    stream = oai(gateway, "reply", key).chat.completions.create(
        model="demo", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    with pytest.raises(openai.APIError, match="Masking failed"):
        text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
        assert SSN not in text


def test_the_first_event_of_a_burst_is_masked_and_sent_before_the_rest(
    gateway: Gateway, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply that reaches the gateway as one burst of events: the first event is masked on
    its own, so the caller's first byte does not wait for the whole burst to be masked."""
    fed: list[bytes] = []
    real_feed = SseRewriter.feed

    def spied(self: SseRewriter, chunk: bytes) -> bytes:
        fed.append(chunk)
        return real_feed(self, chunk)

    monkeypatch.setattr(SseRewriter, "feed", spied)
    stream = oai(gateway, "burst", key).chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "hi"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Your SSN is [US_SSN], noted."  # split across events, masked all the same
    assert fed[0].count(b"\n\n") == 1 and fed[0].endswith(b"\n\n")
    assert len(fed) >= 2 and b"".join(fed).count(b"\n\n") == len(BURST_TEXTS) + 1


def test_quickstart_masks_the_readme_example(tmp_path: Path) -> None:
    config = load_config(quickstart_path(), base_dir=tmp_path, env={})
    masker = compile_masking(config, b"")["support-eu"].start().request
    assert masker is not None
    text = "My SSN is 123-45-6789, card 4111 1111 1111 1111"
    assert masker.mask(text) == "My SSN is [US_SSN], card [CREDIT_CARD]"


def test_a_compressed_reply_is_not_passed_on_unmasked(gateway: Gateway, key: str) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        oai(gateway, "gzipped", key).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "hi"}]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "data_blocked"
    assert "compressed" in body["message"]


def test_a_reply_too_large_to_mask_whole_is_refused(gateway: Gateway, key: str) -> None:
    client = oai(gateway, "small", key)
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x" * 150}]
        )
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "data_blocked"
    assert "larger than 300 bytes" in body["message"]


def test_responses_api_stream_and_final_response_are_masked(gateway: Gateway, key: str) -> None:
    client = oai(gateway, "reply", key)
    deltas, final = [], None
    with client.responses.stream(model="demo", input=PROMPT) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    expected = "You said: My SSN is [US_SSN] and my card is [CREDIT_CARD]."
    assert "".join(deltas) == expected
    assert final.output_text == expected


def test_anthropic_stream_reply_is_masked(gateway: Gateway, key: str) -> None:
    claude = anthropic.Anthropic(base_url=gateway.url("claude-reply"), api_key=key, max_retries=0)
    with claude.messages.stream(
        model="demo", max_tokens=100, messages=[{"role": "user", "content": PROMPT}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expected = "You said: My SSN is [US_SSN] and my card is [CREDIT_CARD]."
    assert text == expected
    assert final.content[0].type == "text" and final.content[0].text == expected
