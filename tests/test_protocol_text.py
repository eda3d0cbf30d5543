"""Finding, masking and writing back the text of provider bodies and SSE streams.

The transform here is a stand-in for the masking engine: it replaces every run of digits with
`#`, across the fields of a group, and its stream holds back a trailing run of digits (which the
next piece could extend). So ids, numbers and keys that stay intact prove the adapters only hand
over text fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import anthropic
import openai
import pytest
from starlette.types import Receive, Scope, Send

from geogate.dlp.transform import DataBlocked, MaskingError
from geogate.protocols import adapter_for
from tests.servers import run_asgi

DIGITS = "0123456789"
JSON = "application/json"


def mask(texts: Sequence[str]) -> list[str]:
    """Each run of digits -> "#", placed in the field where the run starts."""
    out, in_run = [], False
    for text in texts:
        part = ""
        for char in text:
            if char in DIGITS:
                part += "" if in_run else "#"
                in_run = True
            else:
                part += char
                in_run = False
        out.append(part)
    return out


class DigitStream:
    def __init__(self) -> None:
        self.held = ""

    def feed(self, text: str) -> str:
        text = self.held + text
        cut = len(text.rstrip(DIGITS))
        self.held = text[cut:]
        return mask([text[:cut]])[0]

    def finish(self) -> str:
        tail, self.held = self.held, ""
        return mask([tail])[0]


class Digits:
    def __init__(self) -> None:
        self.groups: list[list[str]] = []

    def apply(self, texts: Sequence[str]) -> list[str]:
        self.groups.append(list(texts))
        return mask(texts)

    def stream(self) -> DigitStream:
        return DigitStream()


class Blocking(Digits):
    """`on_detect: block`: any digit refuses the call."""

    def apply(self, texts: Sequence[str]) -> list[str]:
        if mask(texts) != list(texts):
            raise DataBlocked(["us_ssn"])
        return list(texts)

    def stream(self) -> DigitStream:
        return BlockingStream()


class BlockingStream(DigitStream):
    def feed(self, text: str) -> str:
        if mask([text]) != [text]:
            raise DataBlocked(["us_ssn"])
        return text


def test_fake_transform_streams_like_it_applies() -> None:
    text = "a 12 b 3456 c 7"
    for cut in range(len(text) + 1):
        stream = DigitStream()
        assert (
            stream.feed(text[:cut]) + stream.feed(text[cut:]) + stream.finish() == mask([text])[0]
        )


def request(adapter: str, document: Any, transform: Digits | None = None) -> Any:
    body = json.dumps(document).encode()
    out = adapter_for(adapter).mask_request(body, JSON, transform or Digits())
    return json.loads(out)


def response(adapter: str, document: Any) -> Any:
    body = json.dumps(document).encode()
    return json.loads(adapter_for(adapter).mask_response(body, JSON, Digits()))


# --- whole bodies -----------------------------------------------------------------------------


def test_openai_chat_request() -> None:
    document = {
        "model": "gpt-4o-2024-08-06",
        "max_tokens": 100,
        "messages": [
            {"role": "system", "content": "Agent 007"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "SSN 123-45-6789"},
                    {"type": "image_url", "image_url": {"url": "https://x/1.png"}},
                    {"type": "input_text", "text": "card 4111"},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_42",
                        "type": "function",
                        "function": {
                            "name": "lookup2",
                            "arguments": '{"ssn": "123-45-6789", "limit": 5, "tags": ["a1"]}',
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_42", "content": "found 3 rows"},
        ],
    }
    masked = request("openai", document)
    messages = masked["messages"]
    assert messages[0]["content"] == "Agent #"
    assert messages[1]["content"][0]["text"] == "SSN #-#-#"
    assert messages[1]["content"][1] == document["messages"][1]["content"][1]  # type: ignore[index]
    assert messages[1]["content"][2]["text"] == "card #"
    call = messages[2]["tool_calls"][0]
    assert (call["id"], call["function"]["name"]) == ("call_42", "lookup2")
    assert json.loads(call["function"]["arguments"]) == {"ssn": "#-#-#", "limit": 5, "tags": ["a#"]}
    assert messages[3] == {"role": "tool", "tool_call_id": "call_42", "content": "found # rows"}
    assert (masked["model"], masked["max_tokens"]) == ("gpt-4o-2024-08-06", 100)


def test_a_value_split_across_two_parts_of_one_message_is_found() -> None:
    transform = Digits()
    parts = [{"type": "text", "text": "card 4111 1111"}, {"type": "text", "text": "1111 ok"}]
    document = {"messages": [{"role": "user", "content": parts}]}
    masked = request("openai", document, transform)
    assert ["card 4111 1111", "1111 ok"] in transform.groups
    assert [part["text"] for part in masked["messages"][0]["content"]] == ["card # #", " ok"]


def test_unchanged_body_is_the_same_bytes_object() -> None:
    body = b'{"model": "gpt-four",  "max_tokens": 10, "messages": [{"role": "user", "content": "hello"}]}'
    for adapter in ("openai", "anthropic", "bedrock", "vertex", "http", "mistral"):
        assert adapter_for(adapter).mask_request(body, JSON, Digits()) is body
        assert adapter_for(adapter).mask_response(body, JSON, Digits()) is body
    assert adapter_for("openai").mask_request(b"", "", Digits()) == b""
    assert adapter_for("http").mask_request(b"", "application/octet-stream", Digits()) == b""


def test_changed_body_is_compact_utf8_json() -> None:
    body = '{"messages": [{"role": "user", "content": "café 12"}]}'.encode()
    out = adapter_for("openai").mask_request(body, "application/json; charset=utf-8", Digits())
    assert out == '{"messages":[{"role":"user","content":"café #"}]}'.encode()


def test_openai_prompt_embeddings_and_responses_input() -> None:
    assert request("openai", {"prompt": "a1"})["prompt"] == "a#"
    assert request("openai", {"prompt": ["a1", "b2"]})["prompt"] == ["a#", "b#"]
    assert request("openai", {"input": ["x 1", "y 2"]})["input"] == ["x #", "y #"]
    assert request("openai", {"input": [[1, 2, 3], [4]]})["input"] == [[1, 2, 3], [4]]
    assert request("openai", {"input": [1, 2, 3]})["input"] == [1, 2, 3]
    document = {
        "model": "gpt-4.1",
        "instructions": "room 101",
        "input": [
            {"role": "user", "content": "call 555"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "a9"}]},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "b8"}],
            },
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"q": "7"}'},
            {"type": "function_call_output", "call_id": "c1", "output": "result 6"},
        ],
    }
    masked = request("openai", document)
    assert masked["instructions"] == "room #"
    items = masked["input"]
    assert items[0]["content"] == "call #"
    assert items[1]["content"][0]["text"] == "a#"
    assert items[2]["content"][0]["text"] == "b#"
    assert (items[3]["call_id"], json.loads(items[3]["arguments"])) == ("c1", {"q": "#"})
    assert items[4] == {"type": "function_call_output", "call_id": "c1", "output": "result #"}
    assert request("openai", {"input": "just 1 text"})["input"] == "just # text"


def test_tool_arguments_that_are_not_json_are_masked_as_text() -> None:
    for arguments, masked_arguments in [
        ("ssn 123-45 {", "ssn #-# {"),
        ('{"ssn": "123", "ssn": "x"}', '{"ssn": "#", "ssn": "x"}'),
    ]:
        call = {"function": {"name": "f", "arguments": arguments}}
        masked = request("openai", {"messages": [{"role": "assistant", "tool_calls": [call]}]})
        assert masked["messages"][0]["tool_calls"][0]["function"]["arguments"] == masked_arguments


def test_openai_responses() -> None:
    chat = {
        "id": "chatcmpl-123",
        "created": 1700000000,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "SSN 123",
                    "tool_calls": [{"id": "call_1", "function": {"arguments": '{"n": "42"}'}}],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"total_tokens": 12},
    }
    masked = response("openai", chat)
    assert masked["choices"][0]["message"]["content"] == "SSN #"
    assert json.loads(
        masked["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    ) == {"n": "#"}
    assert (masked["id"], masked["created"], masked["usage"]) == (
        "chatcmpl-123",
        1700000000,
        {"total_tokens": 12},
    )
    completion = response("azure-openai", {"choices": [{"index": 0, "text": "x 12"}]})
    assert completion["choices"][0]["text"] == "x #"
    responses = {
        "id": "resp_1",
        "output": [
            {"id": "rs_1", "type": "reasoning", "summary": []},
            {
                "id": "msg_1",
                "type": "message",
                "content": [{"type": "output_text", "text": "hi 7", "annotations": []}],
            },
            {"id": "fc_1", "type": "function_call", "call_id": "call_9", "arguments": '{"a": "1"}'},
        ],
    }
    masked = response("openai", responses)
    assert masked["output"][1]["content"][0]["text"] == "hi #"
    assert (masked["output"][2]["call_id"], json.loads(masked["output"][2]["arguments"])) == (
        "call_9",
        {"a": "#"},
    )
    embeddings = {
        "object": "list",
        "data": [{"embedding": [0.1, 2.0]}],
        "model": "text-embedding-3",
    }
    assert response("openai", embeddings) == embeddings


def test_logprobs_are_refused() -> None:
    body = {"choices": [{"message": {"content": "hi"}, "logprobs": {"content": [{"token": "hi"}]}}]}
    with pytest.raises(MaskingError, match="logprobs"):
        response("openai", body)


def test_anthropic() -> None:
    document = {
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "system": [{"type": "text", "text": "ticket 12"}],
        "messages": [
            {"role": "user", "content": "ssn 123-45-6789"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "looking 1"},
                    {
                        "type": "tool_use",
                        "id": "toolu_01",
                        "name": "f",
                        "input": {"q": {"ssn": "9"}, "n": 3},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "row 4"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_02",
                        "content": [{"type": "text", "text": "row 5"}],
                    },
                ],
            },
        ],
    }
    masked = request("anthropic", document)
    assert masked["system"][0]["text"] == "ticket #"
    assert request("anthropic", {"system": "ticket 1"})["system"] == "ticket #"
    messages = masked["messages"]
    assert messages[0]["content"] == "ssn #-#-#"
    assert messages[1]["content"][0]["text"] == "looking #"
    assert messages[1]["content"][1] == {
        "type": "tool_use",
        "id": "toolu_01",
        "name": "f",
        "input": {"q": {"ssn": "#"}, "n": 3},
    }
    assert messages[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "toolu_01",
        "content": "row #",
    }
    assert messages[2]["content"][1]["content"][0]["text"] == "row #"
    reply = {
        "id": "msg_01",
        "type": "message",
        "content": [
            {"type": "text", "text": "call 555"},
            {"type": "tool_use", "id": "toolu_9", "name": "g", "input": {"a": "1"}},
        ],
        "usage": {"input_tokens": 10, "output_tokens": 5},
    }
    masked = response("anthropic", reply)
    assert masked["content"][0]["text"] == "call #"
    assert masked["content"][1]["input"] == {"a": "#"}
    assert (masked["id"], masked["usage"]) == ("msg_01", reply["usage"])


def test_bedrock() -> None:
    converse = {
        "system": [{"text": "agent 7"}],
        "inferenceConfig": {"maxTokens": 512},
        "messages": [
            {"role": "user", "content": [{"text": "ssn 123"}, {"image": {"format": "png"}}]},
            {
                "role": "assistant",
                "content": [{"toolUse": {"toolUseId": "t1", "name": "f", "input": {"q": "4"}}}],
            },
            {
                "role": "user",
                "content": [
                    {
                        "toolResult": {
                            "toolUseId": "t1",
                            "content": [{"text": "r 5"}, {"json": {"v": "6"}}],
                        }
                    }
                ],
            },
        ],
    }
    masked = request("bedrock", converse)
    assert masked["system"] == [{"text": "agent #"}]
    assert masked["inferenceConfig"] == {"maxTokens": 512}
    assert masked["messages"][0]["content"][0] == {"text": "ssn #"}
    assert masked["messages"][1]["content"][0]["toolUse"] == {
        "toolUseId": "t1",
        "name": "f",
        "input": {"q": "#"},
    }
    result = masked["messages"][2]["content"][0]["toolResult"]
    assert result["content"] == [{"text": "r #"}, {"json": {"v": "#"}}]
    reply = {
        "output": {"message": {"role": "assistant", "content": [{"text": "ok 1"}]}},
        "usage": {"inputTokens": 3},
    }
    assert response("bedrock", reply)["output"]["message"]["content"] == [{"text": "ok #"}]
    invoke = {
        "anthropic_version": "bedrock-2023-05-31",
        "max_tokens": 9,
        "messages": [{"role": "user", "content": "a 1"}],
    }
    assert request("bedrock", invoke)["messages"][0]["content"] == "a #"
    titan = {"inputText": "ssn 123", "textGenerationConfig": {"maxTokenCount": 512}}
    assert request("bedrock", titan) == {
        "inputText": "ssn #",
        "textGenerationConfig": {"maxTokenCount": 512},
    }
    claude = {"type": "message", "content": [{"type": "text", "text": "b 2"}], "id": "msg_9"}
    assert response("bedrock", claude)["content"][0]["text"] == "b #"


def test_vertex() -> None:
    document = {
        "systemInstruction": {"parts": [{"text": "agent 7"}]},
        "contents": [
            {
                "role": "user",
                "parts": [
                    {"text": "ssn 123"},
                    {"inlineData": {"mimeType": "image/png", "data": "AAA1"}},
                ],
            },
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"q": "4"}}}]},
        ],
        "generationConfig": {"maxOutputTokens": 8},
    }
    masked = request("vertex", document)
    assert masked["systemInstruction"]["parts"][0]["text"] == "agent #"
    assert masked["contents"][0]["parts"] == [
        {"text": "ssn #"},
        document["contents"][0]["parts"][1],
    ]  # type: ignore[index]
    assert masked["contents"][1]["parts"][0]["functionCall"] == {"name": "f", "args": {"q": "#"}}
    assert masked["generationConfig"] == {"maxOutputTokens": 8}
    reply = {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": "ok 1"}]}, "finishReason": "STOP"}
        ],
        "modelVersion": "gemini-2.5",
    }
    assert response("vertex", reply)["candidates"][0]["content"]["parts"][0]["text"] == "ok #"
    assert (
        response("vertex", [reply, reply])[1]["candidates"][0]["content"]["parts"][0]["text"]
        == "ok #"
    )
    chat = {"model": "google/gemini-2.5-flash", "messages": [{"role": "user", "content": "hi 5"}]}
    assert request("vertex", chat)["messages"][0]["content"] == "hi #"
    assert (
        response("vertex", {"choices": [{"message": {"content": "c 3"}}]})["choices"][0]["message"][
            "content"
        ]
        == "c #"
    )


def test_http() -> None:
    http = adapter_for("http")
    document = {"k1": "v 1", "nested": [{"x2": "y 2", "n": 3}], "flag": True}
    assert request("http", document) == {
        "k1": "v #",
        "nested": [{"x2": "y #", "n": 3}],
        "flag": True,
    }
    assert request("http", "bare 4") == "bare #"
    assert (
        http.mask_request("card 4111 ☕".encode(), "text/plain; charset=utf-8", Digits())
        == "card # ☕".encode()
    )
    form = b"a=1&b=x+2%26&c="
    assert (
        http.mask_request(form, "application/x-www-form-urlencoded", Digits())
        == b"a=%23&b=x+%23%26&c="
    )
    unchanged = b"a=x&b="
    assert http.mask_request(unchanged, "application/x-www-form-urlencoded", Digits()) is unchanged
    with pytest.raises(MaskingError, match="octet-stream"):
        http.mask_request(b"\x00\x01", "application/octet-stream", Digits())
    with pytest.raises(MaskingError, match="UTF-8"):
        http.mask_response(b"\xff\xfe", "text/plain", Digits())


@pytest.mark.parametrize(
    ("adapter", "body", "content_type", "match"),
    [
        ("openai", b'{"messages": [', JSON, "not JSON"),
        ("openai", b"\xff", JSON, "not JSON"),
        ("anthropic", b'{"system": "a", "system": "b"}', JSON, "twice"),
        ("openai", b"--x\r\n", "multipart/form-data; boundary=x", "multipart/form-data"),
        ("bedrock", b"\x00\x00", "application/octet-stream", "octet-stream"),
    ],
)
def test_bodies_that_cannot_be_inspected_are_refused(
    adapter: str, body: bytes, content_type: str, match: str
) -> None:
    with pytest.raises(MaskingError, match=match):
        adapter_for(adapter).mask_request(body, content_type, Digits())


def test_data_blocked_propagates() -> None:
    body = b'{"messages": [{"role": "user", "content": "ssn 123"}]}'
    with pytest.raises(DataBlocked):
        adapter_for("openai").mask_request(body, JSON, Blocking())


def test_streams_that_cannot_be_masked_are_refused_up_front() -> None:
    with pytest.raises(MaskingError, match="without streaming"):
        adapter_for("bedrock").response_stream("application/vnd.amazon.eventstream", Digits())
    with pytest.raises(MaskingError, match="streamed vertex"):
        adapter_for("vertex").response_stream("text/event-stream", Digits())
    with pytest.raises(MaskingError, match="audio/mpeg"):
        adapter_for("openai").response_stream("audio/mpeg", Digits())


def test_non_sse_responses_are_masked_whole_at_the_end() -> None:
    rewriter = adapter_for("anthropic").response_stream(JSON, Digits())
    assert rewriter.feed(b'{"content": [{"type": "text", "te') == b""
    assert rewriter.feed(b'xt": "a 1"}]}') == b""
    assert rewriter.finish() == b'{"content":[{"type":"text","text":"a #"}]}'


# --- streams ----------------------------------------------------------------------------------


def sse(*events: tuple[str | None, Any], newline: str = "\n") -> bytes:
    """Events as the providers write them: compact JSON, `event:` only when named."""
    out = ""
    for name, data in events:
        text = (
            data
            if isinstance(data, str)
            else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        )
        out += (f"event: {name}{newline}" if name else "") + f"data: {text}{newline}{newline}"
    return out.encode()


CHUNK = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion.chunk",
    "created": 1741569952,
    "model": "gpt-4.1-2025-04-14",
    "service_tier": "default",
    "system_fingerprint": "fp_b376dfbbd5",
}


def chunk(
    delta: dict[str, Any], finish: str | None = None, index: int = 0
) -> tuple[None, dict[str, Any]]:
    return None, {
        **CHUNK,
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }


CHAT_DELTAS = ["Hi! Your number is 123", "-45-", "6789, café ☕ at 4", "2", " or 555"]
CHAT = sse(
    chunk({"role": "assistant", "content": "", "refusal": None}),
    *(chunk({"content": text}) for text in CHAT_DELTAS),
    chunk({}, "stop"),
    (
        None,
        {
            **CHUNK,
            "choices": [],
            "usage": {"prompt_tokens": 19, "completion_tokens": 10, "total_tokens": 29},
        },
    ),
    (None, "[DONE]"),
)

TOOLS = sse(
    chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_DdmO9pD3xa9XTPNJ32zg2hcA",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"zip":"'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1000"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '1"}'}}]}),
    chunk(
        {
            "tool_calls": [
                {
                    "index": 1,
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "f", "arguments": '{"a":"7'},
                }
            ]
        }
    ),
    chunk({}, "tool_calls"),
    (None, "[DONE]"),
)

ITEM = "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654"
CALL = "fc_67ca09c6bedc8190a7abfec07b1a1332096610f474011cc0"
RESPONSE = {
    "id": "resp_67c9fdcecf488190bdd9a0409de3a1ec07b8b0ad4e5eb654",
    "object": "response",
    "created_at": 1741290958,
    "status": "in_progress",
    "error": None,
    "incomplete_details": None,
    "instructions": "You are a helpful assistant.",
    "model": "gpt-4.1-2025-04-14",
    "output": [],
    "parallel_tool_calls": True,
    "text": {"format": {"type": "text"}},
    "tool_choice": "auto",
    "tools": [],
    "usage": None,
    "metadata": {},
}
TEXT_DELTAS = ["Room 10", "1, café ☕ floor ", "3"]
FULL_TEXT = "".join(TEXT_DELTAS)
ARGS = '{"zip":"10001"}'


def responses_stream() -> bytes:
    message = {
        "id": ITEM,
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": FULL_TEXT}],
    }
    call = {
        "id": CALL,
        "type": "function_call",
        "status": "completed",
        "arguments": ARGS,
        "call_id": "call_unLAR8MvFNptuiZK6K6HCy5k",
        "name": "get_weather",
    }
    events: list[tuple[str, dict[str, Any]]] = [
        ("response.created", {"response": RESPONSE}),
        ("response.in_progress", {"response": RESPONSE}),
        (
            "response.output_item.added",
            {"output_index": 0, "item": {**message, "status": "in_progress", "content": []}},
        ),
        (
            "response.content_part.added",
            {
                "item_id": ITEM,
                "output_index": 0,
                "content_index": 0,
                "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""},
            },
        ),
        *(
            (
                "response.output_text.delta",
                {
                    "item_id": ITEM,
                    "output_index": 0,
                    "content_index": 0,
                    "delta": text,
                    "logprobs": [],
                },
            )
            for text in TEXT_DELTAS
        ),
        (
            "response.output_text.done",
            {
                "item_id": ITEM,
                "output_index": 0,
                "content_index": 0,
                "text": FULL_TEXT,
                "logprobs": [],
            },
        ),
        (
            "response.content_part.done",
            {"item_id": ITEM, "output_index": 0, "content_index": 0, "part": message["content"][0]},
        ),
        ("response.output_item.done", {"output_index": 0, "item": message}),
        (
            "response.output_item.added",
            {"output_index": 1, "item": {**call, "status": "in_progress", "arguments": ""}},
        ),
        (
            "response.function_call_arguments.delta",
            {"item_id": CALL, "output_index": 1, "delta": '{"zip":"100'},
        ),
        (
            "response.function_call_arguments.delta",
            {"item_id": CALL, "output_index": 1, "delta": '01"}'},
        ),
        (
            "response.function_call_arguments.done",
            {"item_id": CALL, "output_index": 1, "arguments": ARGS},
        ),
        ("response.output_item.done", {"output_index": 1, "item": call}),
        (
            "response.completed",
            {
                "response": {
                    **RESPONSE,
                    "status": "completed",
                    "output": [message, call],
                    "usage": {
                        "input_tokens": 37,
                        "input_tokens_details": {"cached_tokens": 0},
                        "output_tokens": 11,
                        "output_tokens_details": {"reasoning_tokens": 0},
                        "total_tokens": 48,
                    },
                }
            },
        ),
    ]
    return sse(
        *(
            (name, {"type": name, "sequence_number": number, **data})
            for number, (name, data) in enumerate(events)
        )
    )


def block_delta(index: int, kind: str, text: str) -> tuple[str, dict[str, Any]]:
    field = "text" if kind == "text_delta" else "partial_json"
    return "content_block_delta", {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": kind, field: text},
    }


ANTHROPIC = sse(
    (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": "claude-sonnet-4-5-20250929",
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 25, "output_tokens": 1},
            },
        },
    ),
    (
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ),
    ("ping", '{"type": "ping"}'),
    block_delta(0, "text_delta", "Your SSN 123-"),
    block_delta(0, "text_delta", "45-67"),
    block_delta(0, "text_delta", "89 and café ☕ 12"),
    ("content_block_stop", {"type": "content_block_stop", "index": 0}),
    (
        "content_block_start",
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                "name": "get_weather",
                "input": {},
            },
        },
    ),
    block_delta(1, "input_json_delta", ""),
    block_delta(1, "input_json_delta", '{"zip": "9021'),
    block_delta(1, "input_json_delta", '0"}'),
    ("content_block_stop", {"type": "content_block_stop", "index": 1}),
    (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 15},
        },
    ),
    ("message_stop", {"type": "message_stop"}),
)


def rewrite(adapter: str, chunks: Sequence[bytes], transform: Digits | None = None) -> bytes:
    rewriter = adapter_for(adapter).response_stream(
        "text/event-stream; charset=utf-8", transform or Digits()
    )
    return b"".join(rewriter.feed(chunk) for chunk in chunks) + rewriter.finish()


def events(body: bytes) -> list[tuple[str | None, Any]]:
    """(event name, data) of each event, via the openai SDK's own decoder."""
    decoded = openai._streaming.SSEDecoder().iter_bytes(iter([body]))
    return [
        (event.event, event.data if event.data == "[DONE]" else json.loads(event.data))
        for event in decoded
    ]


STREAMS = [
    ("openai", CHAT),
    ("openai", TOOLS),
    ("openai", responses_stream()),
    ("anthropic", ANTHROPIC),
]


@pytest.mark.parametrize(
    ("adapter", "body"), STREAMS, ids=["chat", "tools", "responses", "anthropic"]
)
def test_stream_output_does_not_depend_on_chunking(adapter: str, body: bytes) -> None:
    whole = rewrite(adapter, [body])
    assert whole != body
    assert not any(char in DIGITS for _, data in events(whole) for char in _texts(data))
    assert rewrite(adapter, [body[i : i + 1] for i in range(len(body))]) == whole
    for cut in range(1, len(body)):  # every split point, several inside "é" and "☕"
        assert rewrite(adapter, [body[:cut], body[cut:]]) == whole, cut
    crlf = body.replace(b"\n", b"\r\n")
    assert rewrite(adapter, [crlf[i : i + 7] for i in range(0, len(crlf), 7)]) == whole.replace(
        b"\n", b"\r\n"
    )


def _texts(data: Any) -> str:
    """The streamed text in an event (deltas and whole texts), for the no-digit check."""
    if not isinstance(data, dict):
        return ""
    delta = data.get("delta")
    found = [delta if isinstance(delta, str) else ""]
    for choice in data.get("choices", []):
        found.append(choice["delta"].get("content") or "")
        found += [
            call["function"].get("arguments", "") for call in choice["delta"].get("tool_calls", [])
        ]
    if isinstance(delta, dict):
        found += [delta.get("text", ""), delta.get("partial_json", "")]
    found += [data.get("text", ""), data.get("arguments", "")]
    return "".join(found)


def test_events_without_text_pass_through_at_once_and_unchanged() -> None:
    rewriter = adapter_for("anthropic").response_stream("text/event-stream", Digits())
    ping = b'event: ping\ndata: {"type": "ping"}\n\n'
    assert rewriter.feed(ping[:-1]) == b""
    assert rewriter.feed(ping[-1:]) == ping
    assert rewriter.feed(b": keep-alive\n\n") == b": keep-alive\n\n"
    unchanged = b'event: content_block_delta\nid: 7\ndata: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "hello"}}\n\n'
    assert rewriter.feed(unchanged) == unchanged
    changed = unchanged.replace(b"hello", b"room 1")
    assert (
        rewriter.feed(changed)
        == b'event: content_block_delta\nid: 7\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"room "}}\n\n'
    )


def test_chat_tail_goes_into_the_finish_reason_chunk() -> None:
    out = events(rewrite("openai", [CHAT]))
    contents = [data["choices"][0]["delta"].get("content") for _, data in out[:-2]]
    assert contents == ["", "Hi! Your number is ", "#-#-", "#, café ☕ at ", "", "# or ", "#"]
    assert out[6][1]["choices"][0]["finish_reason"] == "stop"
    assert out[6][1]["id"] == CHUNK["id"] and out[7][1]["usage"]["total_tokens"] == 29
    assert out[-1] == (None, "[DONE]")
    tools = events(rewrite("openai", [TOOLS]))
    arguments = "".join(
        call["function"].get("arguments", "")
        for _, data in tools[:-1]
        for call in data["choices"][0]["delta"].get("tool_calls", [])
    )
    assert arguments == '{"zip":"#"}{"a":"#'
    assert tools[-2][1]["choices"][0]["delta"]["tool_calls"] == [
        {"index": 1, "function": {"arguments": "#"}},
    ]


def test_chat_tail_without_finish_reason_is_sent_before_done() -> None:
    body = sse(chunk({"content": "call 555"}), (None, "[DONE]"))
    out = rewrite("openai", [body])
    extra = {key: CHUNK[key] for key in ("id", "object", "created", "model", "system_fingerprint")}
    extra["choices"] = [{"index": 0, "delta": {"content": "#"}, "finish_reason": None}]
    assert out.endswith(
        b"data: " + json.dumps(extra, separators=(",", ":")).encode() + b"\n\ndata: [DONE]\n\n"
    )


def test_responses_tail_and_whole_texts() -> None:
    out = events(rewrite("openai", [responses_stream()]))
    names = [name for name, _ in out]
    done = names.index("response.output_text.done")
    assert names[done - 1] == "response.output_text.delta"
    synthetic = out[done - 1][1]
    assert synthetic == {
        "type": "response.output_text.delta",
        "item_id": ITEM,
        "output_index": 0,
        "content_index": 0,
        "delta": "#",
        "logprobs": [],
        "sequence_number": out[done][1]["sequence_number"],
    }
    deltas = "".join(data["delta"] for name, data in out if name == "response.output_text.delta")
    assert deltas == "Room #, café ☕ floor #" == out[done][1]["text"]
    completed = out[-1][1]["response"]
    assert completed["output"][0]["content"][0]["text"] == deltas
    assert completed["id"] == RESPONSE["id"] and completed["usage"]["total_tokens"] == 48
    arguments = "".join(
        data["delta"] for name, data in out if name == "response.function_call_arguments.delta"
    )
    assert arguments == '{"zip":"#"}' == completed["output"][1]["arguments"]
    assert (
        names[names.index("response.function_call_arguments.done") - 1]
        == "response.function_call_arguments.delta"
    )


def test_anthropic_tail_is_sent_before_content_block_stop() -> None:
    out = events(rewrite("anthropic", [ANTHROPIC]))
    texts = [(name, data.get("delta"), data.get("index")) for name, data in out]
    first_stop = next(i for i, (name, _, _) in enumerate(texts) if name == "content_block_stop")
    assert texts[first_stop - 1] == ("content_block_delta", {"type": "text_delta", "text": "#"}, 0)
    text = "".join(
        delta["text"]
        for name, delta, _ in texts
        if name == "content_block_delta" and delta["type"] == "text_delta"
    )
    assert text == "Your SSN #-#-# and café ☕ #"
    partial = "".join(
        delta["partial_json"]
        for name, delta, _ in texts
        if name == "content_block_delta" and delta["type"] == "input_json_delta"
    )
    assert partial == '{"zip": "#"}'


def test_stream_errors() -> None:
    with pytest.raises(DataBlocked):
        rewrite("anthropic", [ANTHROPIC], Blocking())
    with pytest.raises(MaskingError, match="not JSON"):
        rewrite("openai", [b"data: {oops\n\n"])
    with pytest.raises(MaskingError, match="UTF-8"):
        rewrite("openai", [b"data: \xff\n\n"])
    with pytest.raises(MaskingError, match="logprobs"):
        rewrite(
            "openai",
            [
                sse(
                    (
                        None,
                        {
                            **CHUNK,
                            "choices": [
                                {
                                    "index": 0,
                                    "delta": {"content": "a"},
                                    "logprobs": {"content": [{"token": "a"}]},
                                }
                            ],
                        },
                    )
                )
            ],
        )


def test_a_last_event_without_its_blank_line_is_masked_too() -> None:
    assert (
        rewrite("openai", [b'data: {"choices":[{"index":0,"text":"a 1"}]}'])
        == b'data: {"choices":[{"index":0,"text":"a "}]}\n\ndata: {"choices":[{"index":0,"text":"#","finish_reason":null}]}\n\n'
    )


def test_http_streams_mask_each_event() -> None:
    body = b'event: message\ndata: {"id":1,"result":{"text":"ssn 123"}}\n\ndata: plain 4\ndata: line 5\n\n'
    out = rewrite("http", [body])
    assert (
        out
        == b'event: message\ndata: {"id":1,"result":{"text":"ssn #"}}\n\ndata: plain #\ndata: line #\n\n'
    )


# --- the official SDKs read the rewritten streams ---------------------------------------------


@contextmanager
def serving(body: bytes) -> Iterator[str]:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    with run_asgi(app) as url:
        yield url


def test_sdks_accept_the_rewritten_streams() -> None:
    with serving(rewrite("openai", [CHAT])) as url:
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        assert (
            "".join(part.choices[0].delta.content or "" for part in stream if part.choices)
            == "Hi! Your number is #-#-#, café ☕ at # or #"
        )
    with serving(rewrite("openai", [responses_stream()])) as url:
        client = openai.OpenAI(base_url=url, api_key="k", max_retries=0)
        with client.responses.stream(model="m", input="x") as responses:
            final = responses.get_final_response()
        assert final.output_text == "Room #, café ☕ floor #"
    with serving(rewrite("anthropic", [ANTHROPIC])) as url:
        claude = anthropic.Anthropic(base_url=url, api_key="k", max_retries=0)
        with claude.messages.stream(
            model="m", max_tokens=9, messages=[{"role": "user", "content": "x"}]
        ) as messages:
            message = messages.get_final_message()
        assert message.content[0].text == "Your SSN #-#-# and café ☕ #"  # type: ignore[union-attr]
        assert message.content[1].input == {"zip": "#"}  # type: ignore[union-attr]
