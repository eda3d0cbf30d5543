"""Run an ASGI app on a real loopback socket for the duration of a test.

    with run_asgi(app) as base_url:  # e.g. "http://127.0.0.1:53211"
        httpx2.get(f"{base_url}/healthz")

The server binds 127.0.0.1 on an ephemeral port (safe under pytest-xdist), runs uvicorn in a
daemon thread with its own event loop, and is shut down when the block exits.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


class _Server(uvicorn.Server):
    """A uvicorn server that remembers a crash in its thread so the test can re-raise it."""

    error: BaseException | None = None

    def run_in_thread(self) -> None:
        try:
            self.run()
        except BaseException as exc:  # reported to the test thread, not swallowed
            self.error = exc


@contextmanager
def run_asgi(
    app: ASGIApp,
    port: int = 0,
    *,
    host: str = "127.0.0.1",
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> Iterator[str]:
    """Serve `app` on `http://HOST:PORT` (a free port by default) and yield that base URL.

    With `certfile` and `keyfile` it serves https (see tests/tls.py for a test CA).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=None if certfile is None else str(certfile),
        ssl_keyfile=None if keyfile is None else str(keyfile),
        log_level="warning",
        timeout_graceful_shutdown=1,
    )
    server = _Server(config)
    thread = threading.Thread(target=server.run_in_thread, name="run_asgi", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"{'http' if certfile is None else 'https'}://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            server.force_exit = True
            thread.join(STOP_TIMEOUT)
    if server.error is not None:
        raise RuntimeError("the ASGI server crashed while the test ran") from server.error


def free_port() -> int:
    """A loopback port nothing listens on now, for servers whose URL must be known in advance."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_started(server: _Server, thread: threading.Thread) -> None:
    """Block until uvicorn listens, failing fast if it died (e.g. its lifespan startup failed)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the ASGI server stopped before it listened") from server.error
        if time.monotonic() > deadline:
            raise TimeoutError(f"the ASGI server did not start within {START_TIMEOUT}s")
        time.sleep(0.005)
