"""A minimal OpenAI-shaped upstream: canned bytes from a raw ASGI app on uvicorn.

The demo LLM parses JSON, routes through Starlette and builds every answer, which costs more per
call than the gateway's own work; beside it, the gateway's share shrinks and the ratios flatter
it. This upstream does as little as an ASGI server can (read the body, check the injected key,
send prepared bytes), on the same server stack as the gateway (uvicorn, httptools, uvloop), so
what the gateway adds stands out.

    python -m bench.upstream --listen 127.0.0.1:PORT --api-key KEY
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

Event = dict[str, object]

_WORDS = ["You ", "said: ", "Summarise ", "the ", "ticket ", "in ", "one ", "line."]


def _completion() -> bytes:
    """A `chat.completion` the size and shape of the demo LLM's answer to the bench prompt."""
    return json.dumps(
        {
            "id": "chatcmpl-bench0000000000000000",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "demo-echo",
            "service_tier": "default",
            "system_fingerprint": "fp_bench",
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(_WORDS),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 6, "completion_tokens": 8, "total_tokens": 14},
        }
    ).encode()


def _events() -> list[bytes]:
    """The `chat.completion.chunk` stream the demo LLM sends for the bench prompt."""
    base: Event = {
        "id": "chatcmpl-bench0000000000000000",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "demo-echo",
        "system_fingerprint": "fp_bench",
    }

    def chunk(delta: Event, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        data = json.dumps({**base, "choices": [choice]}, separators=(",", ":"))
        return f"data: {data}\n\n".encode()

    return [
        chunk({"role": "assistant", "content": "", "refusal": None}),
        *(chunk({"content": word}) for word in _WORDS),
        chunk({}, "stop"),
        b"data: [DONE]\n\n",
    ]


class MinimalUpstream:
    """Answers any request: 401 without the key, an SSE stream if asked to stream, else JSON."""

    def __init__(self, api_key: str) -> None:
        self._authorization = f"Bearer {api_key}".encode()
        completion = _completion()
        self._json_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(completion)).encode()),
        ]
        self._completion = completion
        self._events = _events()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await _lifespan(receive, send)
            return
        body = await read_body(receive)
        if (b"authorization", self._authorization) not in scope["headers"]:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b"wrong upstream key"})
        elif b'"stream":true' in body or b'"stream": true' in body:
            headers = [(b"content-type", b"text/event-stream; charset=utf-8")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for event in self._events:
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        else:
            start = {"type": "http.response.start", "status": 200, "headers": self._json_headers}
            await send(start)
            await send({"type": "http.response.body", "body": self._completion})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--api-key", required=True, help="the key the gateway must inject")
    args = parser.parse_args()
    serve(MinimalUpstream(args.api_key), args.listen)


async def read_body(receive: Receive) -> bytes:
    """The whole request body, as both bench servers need it before they answer."""
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def serve(app: ASGIApp | str, listen: str, **options: Any) -> None:
    """Run on the gateway's server stack (uvicorn, httptools, uvloop), quietly."""
    host, _, port = listen.rpartition(":")
    uvicorn.run(
        app,
        host=host,
        port=int(port),
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        **options,
    )


if __name__ == "__main__":
    main()
