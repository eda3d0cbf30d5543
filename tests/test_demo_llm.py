"""The demo LLM against the official `openai` and `anthropic` SDKs, on a real loopback socket.

SDK clients run with `_strict_response_validation=True`, so every body and stream event is
validated against the SDK's own pydantic types, not merely constructed from them.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import typer
from starlette.applications import Starlette
from starlette.types import Message
from typer.testing import CliRunner

from geogate.cli import demo as demo_cli
from geogate.demo import DemoSettings, create_demo_app
from tests.servers import run_asgi

KEY = "demo-upstream-key"
SSN_PROMPT = "My SSN is 123-45-6789, call me"
SSN_REPLY = "You said: My SSN is 123-45-6789, call me"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with run_asgi(create_demo_app(DemoSettings(chunk_delay=0))) as url:
        yield url


@pytest.fixture
def oai(base_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


@pytest.fixture
async def aoai(base_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


@pytest.fixture
def claude(base_url: str) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=base_url, api_key=KEY, max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


@pytest.fixture
async def aclaude(base_url: str) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=base_url, api_key=KEY, max_retries=0, _strict_response_validation=True
    ) as client:
        yield client


@pytest.fixture
def raw(base_url: str) -> Iterator[httpx2.Client]:
    with httpx2.Client(base_url=base_url, trust_env=False) as client:
        yield client


def user(content: Any) -> Any:
    return {"role": "user", "content": content}


def sse_events(body: str) -> list[tuple[str | None, str]]:
    """(event name, data) of each server-sent event, checking the framing on the way."""
    assert body.endswith("\n\n")
    events = []
    for block in body[:-2].split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        assert set(fields) <= {"event", "data"}
        events.append((fields.get("event"), fields["data"]))
    return events


# --- Chat Completions --------------------------------------------------------------------------


def test_chat_completion_echoes_the_last_user_message(oai: openai.OpenAI) -> None:
    raw_response = oai.chat.completions.with_raw_response.create(
        model="demo-echo",
        messages=[
            {"role": "system", "content": "Be brief."},
            user("an earlier question"),
            {"role": "assistant", "content": "an earlier answer"},
            user(SSN_PROMPT),
        ],
    )
    completion = raw_response.parse()
    assert raw_response.headers["x-request-id"].startswith("req_")
    assert completion.object == "chat.completion"
    assert completion.model == "demo-echo"
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content == SSN_REPLY
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 2 + 3 + 3 + 6
    assert completion.usage.completion_tokens == 8
    assert completion.usage.total_tokens == 22


def test_chat_completion_reads_content_part_arrays(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="demo-echo",
        messages=[
            user(
                [
                    {"type": "text", "text": "My SSN is"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "123-45-6789"},
                ]
            )
        ],
    )
    assert completion.choices[0].message.content == "You said: My SSN is\n123-45-6789"


def test_chat_completion_without_a_user_message_still_answers(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="demo-echo", messages=[{"role": "system", "content": "nobody speaks"}]
    )
    assert completion.choices[0].message.content == "You said nothing."


def test_chat_stream_with_usage(oai: openai.OpenAI) -> None:
    chunks = list(
        oai.chat.completions.create(
            model="demo-echo",
            messages=[user(SSN_PROMPT)],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    first, *deltas, finish, usage = chunks
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert len(deltas) == 8  # one per word
    assert "".join(chunk.choices[0].delta.content or "" for chunk in deltas) == SSN_REPLY
    assert all(chunk.choices[0].finish_reason is None for chunk in [first, *deltas])
    assert finish.choices[0].finish_reason == "stop"
    assert finish.choices[0].delta.content is None
    assert usage.choices == []
    assert usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens) == (6, 8)
    assert all(chunk.usage is None for chunk in chunks[:-1])
    assert len({chunk.id for chunk in chunks}) == 1
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)


async def test_async_chat_plain_and_stream(aoai: openai.AsyncOpenAI) -> None:
    completion = await aoai.chat.completions.create(model="m", messages=[user("hello async")])
    assert completion.choices[0].message.content == "You said: hello async"

    stream = await aoai.chat.completions.create(
        model="m", messages=[user("hello async")], stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "You said: hello async"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert all(chunk.usage is None for chunk in chunks)  # no usage chunk unless asked


def test_chat_stream_wire_format(raw: httpx2.Client) -> None:
    response = raw.post(
        "/v1/chat/completions",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "m", "messages": [user("two  spaces\nand a newline")], "stream": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["x-request-id"].startswith("req_")
    events = sse_events(response.text)
    assert all(name is None for name, _ in events)
    assert events[-1] == (None, "[DONE]")
    pieces = [json.loads(data)["choices"][0]["delta"].get("content") for _, data in events[:-1]]
    assert "".join(piece or "" for piece in pieces) == "You said: two  spaces\nand a newline"


# --- Responses ---------------------------------------------------------------------------------


def test_responses_plain_with_string_input(oai: openai.OpenAI) -> None:
    response = oai.responses.create(model="demo-echo", input=SSN_PROMPT, instructions="Be kind.")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == SSN_REPLY
    [item] = response.output
    assert item.type == "message"
    assert item.status == "completed"
    assert response.instructions == "Be kind."
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (2 + 6, 8)


def test_responses_with_item_list_input(oai: openai.OpenAI) -> None:
    items: Any = [
        {"role": "developer", "content": "rules"},
        {"role": "user", "content": "first"},
        {"type": "function_call_output", "call_id": "call_1", "output": "42"},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "card 4111 1111 1111 1111"},
                {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            ],
        },
    ]
    response = oai.responses.create(model="demo-echo", input=items)
    assert response.output_text == "You said: card 4111 1111 1111 1111"


def test_responses_stream_events(oai: openai.OpenAI) -> None:
    events = list(oai.responses.create(model="demo-echo", input=SSN_PROMPT, stream=True))
    types = [event.type for event in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 8,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == SSN_REPLY
    created, completed = events[0], events[-1]
    assert created.type == "response.created"
    assert completed.type == "response.completed"
    assert created.response.status == "in_progress"
    assert created.response.output == []
    assert completed.response.id == created.response.id
    assert completed.response.output_text == SSN_REPLY
    item_ids = {getattr(event, "item_id", None) for event in events} - {None}
    assert item_ids == {completed.response.output[0].id}


def test_responses_stream_helper(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model="demo-echo", input=SSN_PROMPT) as stream:
        snapshots = [e.snapshot for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert snapshots[-1] == SSN_REPLY
    assert final.output_text == SSN_REPLY


async def test_async_responses_stream(aoai: openai.AsyncOpenAI) -> None:
    stream = await aoai.responses.create(model="m", input="async stream", stream=True)
    events = [event async for event in stream]
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "You said: async stream"


def test_responses_stream_names_each_event(raw: httpx2.Client) -> None:
    response = raw.post(
        "/v1/responses",
        headers={"authorization": f"Bearer {KEY}"},
        json={"model": "m", "input": "hi", "stream": True},
    )
    for name, data in sse_events(response.text):
        assert name == json.loads(data)["type"]


# --- Embeddings --------------------------------------------------------------------------------


def test_embeddings_base64_by_default_matches_float(base_url: str, oai: openai.OpenAI) -> None:
    # Not strict: the SDK validates the base64 string against `List[float]` before decoding it.
    with openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0) as lenient:
        from_base64 = lenient.embeddings.create(model="text-embedding-3-small", input="hello")
    from_float = oai.embeddings.create(
        model="text-embedding-3-small", input="hello", encoding_format="float"
    )
    vector = from_base64.data[0].embedding
    assert len(vector) == 1536
    assert vector == from_float.data[0].embedding
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-5)
    assert from_float.usage.prompt_tokens == 1


def test_embeddings_are_deterministic_per_input(oai: openai.OpenAI) -> None:
    def embed(value: Any) -> list[list[float]]:
        result = oai.embeddings.create(
            model="m", input=value, encoding_format="float", dimensions=8
        )
        assert [item.index for item in result.data] == list(range(len(result.data)))
        return [item.embedding for item in result.data]

    a, b, a_again = embed(["alpha", "beta", "alpha"])
    assert a == a_again != b
    assert len(a) == 8
    assert embed("alpha") == [a]
    [tokens] = embed([1, 2, 3])
    assert embed([[1, 2, 3], [4]])[0] == tokens != a


def test_embeddings_usage_counts_words_and_tokens(oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(
        model="m", input=[[5, 6, 7], [8]], encoding_format="float", dimensions=4
    )
    assert result.usage.prompt_tokens == 4
    result = oai.embeddings.create(
        model="m", input=["two words", "three words here"], encoding_format="float", dimensions=4
    )
    assert result.usage.prompt_tokens == 5


@pytest.mark.parametrize(
    "fields",
    [
        {"input": ""},
        {"input": []},
        {"input": ["ok", ""]},
        {"input": ["ok", 3]},
        {"input": [[1, 2], "mixed"]},
        {"input": [True, False]},
        {"input": [-1]},
        {"input": [[]]},
        {"input": {"text": "object"}},
        {"input": ["x"] * 2049},
        {"input": None},
        {"input": "x", "dimensions": 0},
        {"input": "x", "dimensions": 3073},
        {"input": "x", "dimensions": "8"},
        {"input": "x", "encoding_format": "int8"},
    ],
)
def test_embeddings_reject_bad_input(oai: openai.OpenAI, fields: dict[str, Any]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(model="m", **fields)
    assert caught.value.status_code == 400
    assert caught.value.type == "invalid_request_error"
    assert caught.value.param in {"input", "dimensions", "encoding_format"}


# --- Models ------------------------------------------------------------------------------------


def test_models_list_and_retrieve(oai: openai.OpenAI) -> None:
    ids = [model.id for model in oai.models.list()]
    assert "demo-echo" in ids
    model = oai.models.retrieve("demo-echo")
    assert (model.id, model.object) == ("demo-echo", "model")
    with pytest.raises(openai.NotFoundError) as caught:
        oai.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found"


# --- Anthropic Messages ------------------------------------------------------------------------


def test_messages_plain(claude: anthropic.Anthropic) -> None:
    raw_response = claude.messages.with_raw_response.create(
        model="claude-demo",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief."}],
        messages=[
            user("first"),
            {"role": "assistant", "content": "ok"},
            user([{"type": "text", "text": SSN_PROMPT}]),
        ],
    )
    message = raw_response.parse()
    assert raw_response.headers["request-id"].startswith("req_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == "claude-demo"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == SSN_REPLY  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2 + 1 + 1 + 6, 8)


def test_messages_stream_helper(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model="claude-demo", max_tokens=100, messages=[user(SSN_PROMPT)]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) == 8
    assert "".join(pieces) == SSN_REPLY
    assert final.content[0].text == SSN_REPLY  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 8


def test_messages_raw_stream_events(claude: anthropic.Anthropic) -> None:
    events = list(
        claude.messages.create(
            model="claude-demo", max_tokens=100, messages=[user("hi there")], stream=True
        )
    )
    assert [event.type for event in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.content == []
    assert start.message.stop_reason is None
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 4


def test_messages_stream_sends_ping_and_names_events(raw: httpx2.Client) -> None:
    response = raw.post(
        "/v1/messages",
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
        json={"model": "c", "max_tokens": 5, "messages": [user("hi")], "stream": True},
    )
    assert response.status_code == 200
    assert response.headers["request-id"].startswith("req_")
    events = sse_events(response.text)
    assert [name for name, _ in events][:3] == ["message_start", "content_block_start", "ping"]
    for name, data in events:
        assert name == json.loads(data)["type"]


async def test_async_messages_stream(aclaude: anthropic.AsyncAnthropic) -> None:
    async with aclaude.messages.stream(
        model="claude-demo", max_tokens=100, messages=[user("async hello")]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
    assert text == "You said: async hello"


# --- Authentication ----------------------------------------------------------------------------


def test_wrong_key_is_an_openai_authentication_error(base_url: str) -> None:
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="stolen", max_retries=0)
    with client, pytest.raises(openai.AuthenticationError) as caught:
        client.chat.completions.create(model="m", messages=[user("hi")])
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    assert caught.value.request_id is not None
    assert "stolen" not in caught.value.message


def test_wrong_key_is_an_anthropic_authentication_error(base_url: str) -> None:
    client = anthropic.Anthropic(base_url=base_url, api_key="stolen", max_retries=0)
    with client, pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="c", max_tokens=5, messages=[user("hi")])
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "authentication_error"
    assert body["request_id"] == caught.value.request_id


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": KEY},  # no scheme
        {"authorization": f"Basic {KEY}"},
        {"authorization": "Bearer"},
        {"authorization": f"Bearer {KEY}x"},
        {"authorization": f"Bearer {KEY[:-1]}"},
        {"x-api-key": KEY},  # the Anthropic header does not count on OpenAI paths
    ],
)
def test_openai_paths_demand_the_bearer_key(raw: httpx2.Client, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/v1/models"), ("POST", "/v1/embeddings")]:
        response = raw.request(method, path, headers=headers, json={"model": "m", "input": "x"})
        assert response.status_code == 401
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["code"] in {"missing_api_key", "invalid_api_key"}
        assert response.headers["x-request-id"].startswith("req_")


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"x-api-key": KEY}, 200),
        ({"authorization": f"Bearer {KEY}"}, 200),
        ({}, 401),
        ({"x-api-key": "wrong", "authorization": f"Bearer {KEY}"}, 401),  # x-api-key wins
        ({"x-api-key": ""}, 401),
    ],
)
def test_messages_key_headers(raw: httpx2.Client, headers: dict[str, str], status: int) -> None:
    response = raw.post(
        "/v1/messages",
        headers=headers,
        json={"model": "c", "max_tokens": 5, "messages": [user("hi")]},
    )
    assert response.status_code == status
    if status == 401:
        body = response.json()
        assert body["type"] == "error"
        assert body["error"]["type"] == "authentication_error"
        assert body["request_id"] == response.headers["request-id"]


def test_auth_is_checked_before_the_body_is_parsed(raw: httpx2.Client) -> None:
    response = raw.post("/v1/chat/completions", content=b"{not json")
    assert response.status_code == 401


# --- Bad requests ------------------------------------------------------------------------------

BAD_BODIES = [
    b"{not json",
    b"",
    b"[1, 2]",
    b'"a string"',
    b"\xff\xfe\x00garbage",
    b"[" * 100_000,
    # a lone surrogate escape parses in Python but cannot be echoed back as UTF-8
    b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "\\ud800"}]}',
]


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/embeddings"])
def test_openai_paths_reject_malformed_json(raw: httpx2.Client, path: str, body: bytes) -> None:
    response = raw.post(
        path,
        content=body,
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    assert "JSON" in error["message"]


@pytest.mark.parametrize("body", BAD_BODIES)
def test_messages_rejects_malformed_json(raw: httpx2.Client, body: bytes) -> None:
    response = raw.post(
        "/v1/messages",
        content=body,
        headers={"x-api-key": KEY, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": response.json()["error"]["message"]},
        "request_id": response.headers["request-id"],
    }


def test_escaped_non_ascii_text_is_echoed_as_utf8(raw: httpx2.Client) -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "caf\\u00e9 \\ud83d\\ude00"}]}'
    response = raw.post(
        "/v1/chat/completions", content=body, headers={"authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 200
    assert "You said: café 😀".encode() in response.content


def test_oversized_body_is_refused(raw: httpx2.Client) -> None:
    body = b'{"model": "m", "input": "' + b"x" * (8 * 1024 * 1024) + b'"}'
    response = raw.post("/v1/embeddings", content=body, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [user("hi")]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": 7, "messages": [user("hi")]}, "model"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": [{"content": "hi"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": 1, "content": "hi"}]}, "messages[0].role"),
        ({"model": "m", "messages": [user(42)]}, "messages[0].content"),
        ({"model": "m", "messages": [user(["part"])]}, "messages[0].content[0]"),
        ({"model": "m", "messages": [user([{"type": "text"}])]}, "messages[0].content[0].text"),
        ({"model": "m", "messages": [user("hi")], "stream": "yes"}, "stream"),
        (
            {"model": "m", "messages": [user("hi")], "stream": True, "stream_options": 1},
            "stream_options",
        ),
    ],
)
def test_chat_rejects_invalid_fields(raw: httpx2.Client, body: dict[str, Any], param: str) -> None:
    response = raw.post(
        "/v1/chat/completions", json=body, headers={"authorization": f"Bearer {KEY}"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert f"'{param}'" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m"},
        {"model": "m", "input": 5},
        {"model": "m", "input": [{"role": "user", "content": 5}]},
        {"model": "m", "input": "hi", "instructions": ["not", "a", "string"]},
    ],
)
def test_responses_rejects_invalid_fields(raw: httpx2.Client, body: dict[str, Any]) -> None:
    response = raw.post("/v1/responses", json=body, headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] is not None


@pytest.mark.parametrize(
    "body",
    [
        {"model": "c", "messages": [user("hi")]},
        {"model": "c", "max_tokens": 0, "messages": [user("hi")]},
        {"model": "c", "max_tokens": True, "messages": [user("hi")]},
        {"model": "c", "max_tokens": 5},
        {"model": "c", "max_tokens": 5, "messages": [user("hi")], "system": 3},
    ],
)
def test_messages_rejects_invalid_fields(claude: anthropic.Anthropic, body: dict[str, Any]) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.post("/v1/messages", body=body, cast_to=anthropic.types.Message)
    assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


def test_unknown_paths_and_methods_answer_in_the_provider_shape(raw: httpx2.Client) -> None:
    response = raw.post("/v1/completions", headers={"authorization": f"Bearer {KEY}"}, json={})
    assert response.status_code == 404
    assert "POST /v1/completions" in response.json()["error"]["message"]
    assert response.headers["x-request-id"].startswith("req_")

    response = raw.get("/v1/messages", headers={"x-api-key": KEY})
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["type"] == "error"
    assert response.headers["request-id"].startswith("req_")


# --- Debug endpoint, streaming mechanics, settings ---------------------------------------------


def test_echo_headers_needs_no_key_and_shows_what_arrived(raw: httpx2.Client) -> None:
    response = raw.get(
        "/v1/debug/echo-headers?a=1&b=2",
        headers=[("x-dup", "one"), ("x-dup", "two"), ("Authorization", "Bearer caller")],
    )
    assert response.status_code == 200
    echoed = response.json()
    assert echoed["method"] == "GET"
    assert echoed["path"] == "/v1/debug/echo-headers"
    assert echoed["query"] == "a=1&b=2"
    assert echoed["headers"]["x-dup"] == "one, two"
    assert echoed["headers"]["authorization"] == "Bearer caller"
    assert echoed["headers"]["host"].startswith("127.0.0.1:")


async def test_each_stream_event_is_its_own_body_message() -> None:
    """Without buffering, a proxy in front of the demo can pass every event on as it comes."""
    app = create_demo_app(DemoSettings(chunk_delay=0.001))
    body = json.dumps({"model": "m", "messages": [user("one two three")], "stream": True})
    sent: list[Message] = []
    requests: list[Message] = [{"type": "http.request", "body": body.encode(), "more_body": False}]

    async def receive() -> Message:
        if requests:
            return requests.pop()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"authorization", f"Bearer {KEY}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    await app(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    bodies = [message for message in sent[1:] if message["body"]]
    assert len(bodies) == 1 + 5 + 1 + 1  # role, five words, finish, [DONE]
    for message in bodies:
        assert message["more_body"] is True
        assert message["body"].count(b"\n\n") == 1
        assert message["body"].endswith(b"\n\n")
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


@pytest.mark.parametrize(
    "kwargs", [{"api_key": ""}, {"chunk_delay": -0.1}, {"chunk_delay": math.nan}]
)
def test_settings_reject_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"api_key|chunk_delay"):
        DemoSettings(**kwargs)


def test_a_custom_key_replaces_the_default() -> None:
    app = create_demo_app(DemoSettings(api_key="sk-custom"))
    with run_asgi(app) as url, httpx2.Client(base_url=url, trust_env=False) as client:
        assert (
            client.get("/v1/models", headers={"authorization": f"Bearer {KEY}"}).status_code == 401
        )
        ok = client.get("/v1/models", headers={"authorization": "Bearer sk-custom"})
        assert ok.status_code == 200


def test_run_asgi_fails_fast_when_the_app_cannot_start() -> None:
    @contextlib.asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise OSError("database unreachable")
        yield

    with (
        pytest.raises(RuntimeError, match="stopped before it listened"),
        run_asgi(Starlette(lifespan=broken)),
    ):
        pytest.fail("the server must not be reported as started")


# --- CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> tuple[typer.Typer, list[tuple[Any, ...]]]:
    """`demo-llm` on a local Typer app, with `serve` recording its arguments instead of serving."""
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(demo_cli, "serve", lambda *args: calls.append(args))
    monkeypatch.delenv("GEOGATE_DEMO_API_KEY", raising=False)
    app = typer.Typer()
    app.command("demo-llm")(demo_cli.demo_llm)
    app.command("other")(lambda: None)  # two commands, so `demo-llm` is addressed by name
    return app, calls


def test_cli_defaults(cli: tuple[typer.Typer, list[tuple[Any, ...]]]) -> None:
    app, calls = cli
    result = CliRunner().invoke(app, ["demo-llm"])
    assert result.exit_code == 0, result.output
    assert calls == [("127.0.0.1", 8090, DemoSettings())]
    assert "http://127.0.0.1:8090/v1" in result.output


def test_cli_options(cli: tuple[typer.Typer, list[tuple[Any, ...]]]) -> None:
    app, calls = cli
    args = ["demo-llm", "--listen", "[::1]:9001", "--chunk-delay", "0", "--api-key", "k"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert calls == [("::1", 9001, DemoSettings(api_key="k", chunk_delay=0.0))]
    assert "http://[::1]:9001" in result.output


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "8090"],
        ["--listen", "localhost"],
        ["--listen", ":8090"],
        ["--listen", "127.0.0.1:0"],
        ["--listen", "127.0.0.1:65536"],
        ["--listen", "127.0.0.1:80a"],
        ["--listen", "127.0.0.1:٨٠"],
        ["--chunk-delay", "-1"],
        ["--api-key", ""],
    ],
)
def test_cli_rejects_bad_options(
    cli: tuple[typer.Typer, list[tuple[Any, ...]]], args: list[str]
) -> None:
    app, calls = cli
    result = CliRunner().invoke(app, ["demo-llm", *args])
    assert result.exit_code == 2
    assert args[0] in result.output
    assert calls == []
