"""The official openai and anthropic SDKs through the gateway to the demo LLM."""

from __future__ import annotations

import threading

import anthropic
import httpx2
import openai
import pytest

from tests.gateways import Gateway
from tests.upstreams import GatedStream

MESSAGES = [{"role": "user", "content": "The ticket number is 4711"}]
ECHO = "You said: The ticket number is 4711"


@pytest.fixture(scope="module")
def alice_key(gateway: Gateway) -> str:
    return gateway.create_key("alice@example.com", groups=["support-eu"])


@pytest.fixture
def client(gateway: Gateway, alice_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url("oai"), api_key=alice_key, max_retries=0)


@pytest.fixture
def async_client(gateway: Gateway, alice_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.url("oai"), api_key=alice_key, max_retries=0)


@pytest.fixture
def claude(gateway: Gateway, alice_key: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url("claude"), api_key=alice_key, max_retries=0)


def test_chat_completion(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="demo", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == ECHO
    assert raw.headers["x-geogate-request-id"].startswith("req_")
    assert raw.headers["x-geogate-session-id"] == raw.headers["x-geogate-request-id"]
    assert raw.headers["x-geogate-region"].startswith("onprem:test-eu; by=cidr; address=127.0.0.1")


def test_chat_completion_streaming(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="demo", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    deltas = [
        c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(deltas) > 1
    assert "".join(deltas) == ECHO


async def test_async_chat_plain_and_streaming(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(model="demo", messages=MESSAGES)
    assert completion.choices[0].message.content == ECHO
    stream = await async_client.chat.completions.create(
        model="demo", messages=MESSAGES, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == ECHO


def test_responses_plain_and_streaming(client: openai.OpenAI) -> None:
    response = client.responses.create(model="demo", input="The ticket number is 4711")
    assert response.output_text == ECHO
    with client.responses.stream(model="demo", input="The ticket number is 4711") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == ECHO
    assert final.output_text == ECHO


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="demo-embed", input=["one", "two"])
    assert len(result.data) == 2
    assert len(result.data[0].embedding) > 8
    assert result.data[0].embedding != result.data[1].embedding


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()]


def test_anthropic_plain_and_streaming(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(model="demo", max_tokens=64, messages=MESSAGES)
    assert message.content[0].type == "text"
    assert message.content[0].text == ECHO
    with claude.messages.stream(model="demo", max_tokens=64, messages=MESSAGES) as stream:
        pieces = list(stream.text_stream)
    assert len(pieces) > 1
    assert "".join(pieces) == ECHO


def test_anthropic_raw_headers(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(model="demo", max_tokens=64, messages=MESSAGES)
    assert raw.headers["x-geogate-request-id"].startswith("req_")


def test_session_header_groups_calls(gateway: Gateway, alice_key: str) -> None:
    client = openai.OpenAI(
        base_url=gateway.url("oai"),
        api_key=alice_key,
        default_headers={"x-geogate-session": "ticket-4711"},
    )
    raw = client.chat.completions.with_raw_response.create(model="demo", messages=MESSAGES)
    assert raw.headers["x-geogate-session-id"] == "ticket-4711"


def test_first_chunk_arrives_before_the_target_finishes(
    gateway: Gateway, alice_key: str, gated: GatedStream
) -> None:
    """The gated target waits after its first chunk until the client has seen that chunk."""
    client = openai.OpenAI(base_url=gateway.url("gated"), api_key=alice_key, max_retries=0)
    stream = client.chat.completions.create(model="gated", messages=MESSAGES, stream=True)
    first = next(iter(stream))
    finished_before_first_chunk = gated.finished.is_set()
    gated.release.set()
    rest = [c.choices[0].delta.content for c in stream]
    assert first.choices[0].delta.content == "first"
    assert not finished_before_first_chunk
    assert rest == [" last"]


def test_caller_credentials_never_reach_the_target(gateway: Gateway, alice_key: str) -> None:
    response = httpx2.get(
        gateway.url("raw") + "/debug/echo-headers",
        headers={
            "x-api-key": alice_key,
            "api-key": "also-secret",
            "cookie": "session=secret",
            "x-geogate-session": "s1",
            "x-forwarded-for": "6.6.6.6",
            "connection": "x-hop",
            "x-hop": "dropped",
            "x-custom": "kept",
        },
    )
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert alice_key not in str(seen)
    for name in ("x-api-key", "api-key", "cookie", "x-geogate-session", "x-forwarded-for", "x-hop"):
        assert name not in seen
    assert seen["x-custom"] == "kept"


def test_connection_credentials_are_injected(gateway: Gateway, alice_key: str) -> None:
    """The demo LLM refuses calls without its own key, so a success proves the injection."""
    client = openai.OpenAI(base_url=gateway.url("oai"), api_key=alice_key, max_retries=0)
    assert client.chat.completions.create(model="demo", messages=MESSAGES).choices


def test_concurrent_streams(gateway: Gateway, alice_key: str) -> None:
    client = openai.OpenAI(base_url=gateway.url("oai"), api_key=alice_key, max_retries=0)
    results: list[str] = []

    def call() -> None:
        stream = client.chat.completions.create(model="demo", messages=MESSAGES, stream=True)
        results.append("".join(c.choices[0].delta.content or "" for c in stream if c.choices))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [ECHO] * 8


def test_anthropic_first_text_arrives_before_the_target_finishes(
    gateway: Gateway, alice_key: str, gated_claude: GatedStream
) -> None:
    client = anthropic.Anthropic(
        base_url=gateway.url("gated-claude"), api_key=alice_key, max_retries=0
    )
    with client.messages.stream(model="gated", max_tokens=16, messages=MESSAGES) as stream:
        texts = iter(stream.text_stream)
        first = next(texts)
        finished_before_first_text = gated_claude.finished.is_set()
        gated_claude.release.set()
        rest = list(texts)
    assert first == "first"
    assert not finished_before_first_text
    assert rest == [" last"]
