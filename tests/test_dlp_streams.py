"""The real masker on real SSE wire formats: however the target splits its stream (into text
deltas, and those into network chunks), the caller gets the same bytes, and the text is the
masked whole text."""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geogate.config import BUILTIN_ENTITIES
from geogate.dlp import Engine, Masker
from geogate.protocols import adapter_for

ENGINE = Engine.build(BUILTIN_ENTITIES)


def openai_stream(deltas: list[str]) -> bytes:
    head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    events = [{**head, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}]
    events += [{**head, "choices": [{"index": 0, "delta": {"content": d}}]} for d in deltas]
    events.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + json.dumps(event).encode() + b"\n\n" for event in events)
    return body + b"data: [DONE]\n\n"


def anthropic_stream(deltas: list[str]) -> bytes:
    def event(name: str, data: dict[str, object]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    out = event("message_start", {"type": "message_start", "message": {"id": "msg_1"}})
    out += event(
        "content_block_start",
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    )
    for delta in deltas:
        out += event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": delta},
            },
        )
    out += event("content_block_stop", {"type": "content_block_stop", "index": 0})
    return out + event("message_stop", {"type": "message_stop"})


def text_of(kind: str, body: bytes) -> str:
    """The text a client assembles from the stream's deltas."""
    text = []
    for block in body.decode().split("\n\n"):
        data = next((line[6:] for line in block.splitlines() if line.startswith("data: ")), None)
        if data is None or data == "[DONE]":
            continue
        event = json.loads(data)
        if kind == "openai":
            text.append(event["choices"][0]["delta"].get("content") or "")
        elif event["type"] == "content_block_delta":
            text.append(event["delta"]["text"])
    return "".join(text)


def rewritten(kind: str, body: bytes, cuts: list[int]) -> bytes:
    adapter = adapter_for("openai" if kind == "openai" else "anthropic")
    rewriter = adapter.response_stream("text/event-stream", Masker(ENGINE))
    out, position = [], 0
    for cut in [*sorted(set(cuts)), len(body)]:
        out.append(rewriter.feed(body[position:cut]))
        position = cut
    out.append(rewriter.finish())
    return b"".join(out)


STREAMS = {"openai": openai_stream, "anthropic": anthropic_stream}
PROSE = (
    "Hi, your SSN 123-45-6789 and card 4111\u00a01111 1111 1111 are on file; mail jane@example.com."
)


def test_a_value_split_across_deltas_at_every_offset() -> None:
    whole = Masker(ENGINE).mask(PROSE)
    assert whole == "Hi, your SSN [US_SSN] and card [CREDIT_CARD] are on file; mail [EMAIL]."
    for kind, make in STREAMS.items():
        outputs = set()
        for split in range(1, len(PROSE)):
            body = rewritten(kind, make([PROSE[:split], PROSE[split:]]), [])
            assert text_of(kind, body) == whole, (kind, split)
            assert "6789" not in body.decode() or "***" in body.decode()
        for size in (1, 2, 3, 7):
            deltas = [PROSE[i : i + size] for i in range(0, len(PROSE), size)]
            body = make(deltas)
            outputs.add(rewritten(kind, body, []))
            outputs.add(rewritten(kind, body, list(range(1, len(body)))))  # one byte per chunk
            assert text_of(kind, rewritten(kind, body, [])) == whole
        assert len(outputs) == 4  # per delta size, one output however the bytes arrived


_FRAGMENTS = [
    "123-45-6789",
    "4111 1111 1111 1111",
    "DE89 3704 0044 0532 0130 00",
    "jane@example.com",
    "+1 415-555-0132",
    "AKIAIOSFODNN7EXAMPLE",
    "\uff11\uff12\uff13-45-6789",
    "\u200d",
    "\u00e9",
    " ",
    "-",
    "word",
    "7",
    "\n",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=12),
    st.integers(min_value=0, max_value=2**32),
    st.sampled_from(sorted(STREAMS)),
)
def test_property_any_deltas_any_chunks_same_bytes_and_masked_whole_text(
    parts: list[str], seed: int, kind: str
) -> None:
    text = "".join(parts)
    rng = random.Random(seed)
    deltas, position = [], 0
    while position < len(text):
        size = rng.randint(1, 6)
        deltas.append(text[position : position + size])
        position += size
    body = STREAMS[kind](deltas)
    cuts = sorted(rng.sample(range(1, len(body)), k=min(len(body) - 1, rng.randint(0, 40))))
    once = rewritten(kind, body, [])
    assert rewritten(kind, body, cuts) == once
    assert text_of(kind, once) == Masker(ENGINE).mask(text)
