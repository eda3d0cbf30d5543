"""A bare reverse proxy on the gateway's own stack, as the floor the gateway is measured against.

uvicorn (httptools, uvloop) in front, a raw ASGI app, one pooled aiohttp `ClientSession` behind:
the parts DESIGN.md chose for the data path, doing only what any proxy must (drop the caller's
credentials and hop-by-hop headers, inject the target's key, stream the answer back). What
GeoGate costs beyond this is its own work; what this costs is the price of the stack.

    python -m bench.passthrough --listen 127.0.0.1:PORT --api-key KEY --workers N --route NAME=URL

serves `/c/NAME/REST` from `URL/REST`, like a GeoGate connection, with as many worker processes
as the gateway is given.
"""

from __future__ import annotations

import argparse
import json
import os

import aiohttp
from starlette.types import Receive, Scope, Send
from yarl import URL

from bench.upstream import read_body, serve

_DROPPED = frozenset(
    {
        b"host",
        b"content-length",
        b"authorization",
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"te",
        b"upgrade",
    }
)
_NOT_BACK = frozenset({b"connection", b"keep-alive", b"transfer-encoding"})


class Passthrough:
    def __init__(self, routes: dict[str, str], api_key: str) -> None:
        self._routes = {name.encode(): url.rstrip("/") for name, url in routes.items()}
        self._credential = ("Authorization", f"Bearer {api_key}")
        self._session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        _, _, name, rest = scope["raw_path"].split(b"/", 3)
        base = self._routes.get(name)
        if base is None or self._session is None:
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"no such route"})
            return
        body = await read_body(receive)
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in scope["headers"]
            if name not in _DROPPED
        ]
        headers.append(self._credential)
        url = URL(f"{base}/{rest.decode('ascii')}", encoded=True)
        async with self._session.request(scope["method"], url, headers=headers, data=body) as up:
            back = [(key.lower(), value) for key, value in up.raw_headers]
            await send(
                {
                    "type": "http.response.start",
                    "status": up.status,
                    "headers": [(key, value) for key, value in back if key not in _NOT_BACK],
                }
            )
            async for chunk in up.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=1024),
                    auto_decompress=False,
                    skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                    timeout=aiohttp.ClientTimeout(total=None),
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


_SETTINGS_ENV = "BENCH_PASSTHROUGH"
"""How `main` hands routes and key to uvicorn's worker processes, which build their own app."""


def from_env() -> Passthrough:
    settings = json.loads(os.environ[_SETTINGS_ENV])
    return Passthrough(settings["routes"], settings["api_key"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="HOST:PORT")
    parser.add_argument("--api-key", required=True, help="the key to inject upstream")
    parser.add_argument("--route", action="append", required=True, help="NAME=URL")
    parser.add_argument("--workers", type=int, default=1, help="worker processes")
    args = parser.parse_args()
    routes = dict(route.split("=", 1) for route in args.route)
    os.environ[_SETTINGS_ENV] = json.dumps({"routes": routes, "api_key": args.api_key})
    serve("bench.passthrough:from_env", args.listen, factory=True, workers=args.workers)


if __name__ == "__main__":
    main()
