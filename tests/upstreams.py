"""Misbehaving and controllable targets: the remote failures a gateway must survive.

Raw TCP servers, because a well-behaved HTTP framework cannot hang, reset mid-body or send
garbage on purpose.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

from starlette.types import Receive, Scope, Send

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextmanager
def run_tcp(handler: Handler) -> Iterator[str]:
    """Serve raw TCP on 127.0.0.1:PORT with `handler` per connection; yield `http://...`."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    port: list[int] = []
    stop = asyncio.Event()

    async def main() -> None:
        tasks: set[asyncio.Task[None]] = set()

        async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await handler(reader, writer)
            finally:
                tasks.discard(task)
                writer.close()

        server = await asyncio.start_server(tracked, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        ready.set()
        async with server:
            await stop.wait()
            for task in list(tasks):  # end hanging handlers instead of abandoning them
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    ready.wait(10)
    try:
        yield f"http://127.0.0.1:{port[0]}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accepts the request and never answers."""
    await _read_request(reader)
    await asyncio.sleep(3600)


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers with bytes that are not HTTP."""
    await _read_request(reader)
    writer.write(b"\x00\xffNOT HTTP AT ALL\r\n\r\n")
    await writer.drain()
    writer.close()


async def reset_mid_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Starts a chunked SSE response, sends one whole event, then drops the connection."""
    await _read_request(reader)
    event = b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m",' + (
        b'"choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}\n\n'
    )
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\n\r\n" + f"{len(event):x}\r\n".encode() + event + b"\r\n"
    )
    await writer.drain()
    writer.transport.abort()


async def stall_mid_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Sends headers and half a body, then falls silent."""
    await _read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nhalf")
    await writer.drain()
    await asyncio.sleep(3600)


class GatedStream:
    """An SSE target that sends its first text, then waits for the test to release the rest.

    It speaks OpenAI chat chunks, or Anthropic message events for paths ending in `/messages`.
    If the gateway buffered the response, the client would never see the first text while the
    target is still waiting, and the test would time out instead of passing.
    """

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()

    @staticmethod
    def _event(payload: dict[str, object], name: str | None = None) -> bytes:
        head = f"event: {name}\n".encode() if name else b""
        return head + b"data: " + json.dumps(payload).encode() + b"\n\n"

    def _openai(self, text: str, finish: str | None = None) -> bytes:
        return self._event(
            {
                "id": "chatcmpl-gated",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gated",
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
            }
        )

    def _anthropic_delta(self, text: str) -> bytes:
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        }
        return self._event(delta, "content_block_delta")

    def _parts(self, anthropic: bool) -> tuple[bytes, bytes]:
        if not anthropic:
            return self._openai("first"), self._openai(" last", "stop") + b"data: [DONE]\n\n"
        message = {
            "id": "msg_gated",
            "type": "message",
            "role": "assistant",
            "model": "gated",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 0},
        }
        first = (
            self._event({"type": "message_start", "message": message}, "message_start")
            + self._event(
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
                "content_block_start",
            )
            + self._anthropic_delta("first")
        )
        rest = (
            self._anthropic_delta(" last")
            + self._event({"type": "content_block_stop", "index": 0}, "content_block_stop")
            + self._event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": 2},
                },
                "message_delta",
            )
            + self._event({"type": "message_stop"}, "message_stop")
        )
        return first, rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        first, rest = self._parts(anthropic=scope["path"].endswith("/messages"))
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": first, "more_body": True})
        await asyncio.to_thread(self.release.wait, 30)
        await send({"type": "http.response.body", "body": rest, "more_body": True})
        self.finished.set()
        await send({"type": "http.response.body", "body": b""})


async def whoami(scope: Scope, receive: Receive, send: Send) -> None:
    """Reads the whole body, then answers with the client port it saw and misbehaving headers.

    The port shows whether the gateway reuses connections.
    `/redirect` answers 302 to another host, which the gateway must pass back, not follow.
    """
    if scope["type"] != "http":
        return
    message = await receive()
    while message.get("more_body", False):  # read the whole body before answering
        message = await receive()
    if scope["path"].endswith("/redirect"):
        headers = [(b"location", b"http://127.0.0.1:9/elsewhere"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 302, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps({"client_port": scope["client"][1]}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-geogate-region", b"forged:region"),
        (b"connection", b"x-private"),
        (b"x-private", b"hop"),
        (b"x-target", b"kept"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class EndlessStream:
    """An SSE target that streams for a long time and notes whether its caller went away."""

    def __init__(self) -> None:
        self.caller_left = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        done = False

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not done:
                self.caller_left.set()

        watcher = asyncio.ensure_future(watch())
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for index in range(400):
            if self.caller_left.is_set():
                break
            await send(
                {"type": "http.response.body", "body": b"data: %d\n\n" % index, "more_body": True}
            )
            await asyncio.sleep(0.025)
        done = True
        await send({"type": "http.response.body", "body": b""})
        watcher.cancel()


class Target:
    """A minimal OpenAI-style upstream that names itself in its answer and counts its calls."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        while message.get("more_body"):
            message = await receive()
        self.calls.append(scope["path"])
        body = json.dumps(
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "demo",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": f"from {self.name}"},
                        "finish_reason": "stop",
                    }
                ],
            }
        ).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),  # every call opens a new connection: nothing is pooled
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
