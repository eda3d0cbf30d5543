"""A real gateway on a loopback port, with its own policy file and state store, for tests.

    with run_gateway(tmp_path, POLICY_YAML) as gw:
        key = gw.create_key("alice@example.com", groups=["support-eu"])
        OpenAI(base_url=gw.url("oai") + "/v1", api_key=key)

Keys and users go through the same store API the CLI uses.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2

from geogate.config import Config, parse_config
from geogate.gateway import create_app
from geogate.store import Store, UserInfo, open_store
from tests.servers import free_port, run_asgi

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync or async test code (in a thread of its own)."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


@dataclass
class Gateway:
    base_url: str
    config: Config
    access_lines: list[str]
    """The access log: one JSON line per call."""

    def url(self, connection: str) -> str:
        return f"{self.base_url}/c/{connection}"

    def on_store(self, action: Callable[[Store], Awaitable[T]]) -> T:
        """Act on the gateway's state store as another process (the CLI) would."""

        async def run() -> T:
            async with await open_store(self.config.gateway.state) as store:
                return await action(store)

        return run_sync(run())

    def create_key(
        self,
        owner: str,
        *,
        groups: Sequence[str] = (),
        service_account: str | None = None,
        expires_in: float = 3600.0,
    ) -> str:
        created = self.on_store(
            lambda store: store.create_key(
                owner, groups=groups, expires_in=expires_in, service_account=service_account
            )
        )
        return created.key

    def set_active(self, user: str, active: bool) -> None:
        assert self.on_store(lambda store: store.set_user_active(user, active))

    def users(self) -> list[UserInfo]:
        return self.on_store(lambda store: store.list_users())

    def revoke(self, key_id: str) -> None:
        assert self.on_store(lambda store: store.revoke_key(key_id))

    def key_ids(self, owner: str) -> list[str]:
        keys = self.on_store(lambda store: store.list_keys())
        return [key.id for key in keys if key.owner == owner]


@dataclass
class UpProcess:
    """`geogate up` as a subprocess; `output` is everything it printed, once it has stopped."""

    base_url: str
    output: str = ""


ADDRESS_IN_USE = "address already in use"
"""What uvicorn prints when another process took the port between `free_port` and its bind."""


@contextmanager
def geogate_up(folder: Path, workers: int = 2) -> Iterator[UpProcess]:
    """Run `geogate up --workers N` in `folder` (with its geogate.yaml) until the block ends.

    A port chosen in advance can be taken by another process (a parallel test's server, or a
    client connection's own port) before the gateway binds it; it then starts on another."""
    for attempt in range(3):
        up = UpProcess(f"http://127.0.0.1:{free_port()}")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "geogate",
                "up",
                "--listen",
                up.base_url[7:],
                "--workers",
                str(workers),
            ],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        try:
            if until_ready(process, up.base_url):
                break
        except AssertionError:
            process.kill()
            raise
        output = process.communicate()[0]
        assert ADDRESS_IN_USE in output.lower() and attempt < 2, output
    try:
        yield up
    finally:
        process.send_signal(signal.SIGINT)
        try:
            up.output = process.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            up.output = process.communicate()[0]


def until_ready(process: subprocess.Popen[Any], base_url: str) -> bool:
    """Wait until the gateway's `/readyz` answers (True) or its process has ended (False)."""
    deadline = time.monotonic() + 60
    while process.poll() is None:
        try:
            if httpx2.get(base_url + "/readyz").status_code == 200:
                return True
        except httpx2.TransportError:
            pass
        assert time.monotonic() < deadline, "gateway did not become ready"
        time.sleep(0.05)
    return False


@contextmanager
def run_gateway(
    folder: Path,
    policy_yaml: str,
    port: int = 0,
    *,
    certfile: Path | None = None,
    keyfile: Path | None = None,
) -> Iterator[Gateway]:
    """The gateway on a loopback port; https with `certfile`/`keyfile` (see tests/tls.py)."""
    (folder / "geogate.yaml").write_text(policy_yaml)
    config = parse_config(policy_yaml, filename=str(folder / "geogate.yaml"), base_dir=folder)
    access_lines: list[str] = []
    app = create_app(config, access_lines.append)
    with run_asgi(app, port, certfile=certfile, keyfile=keyfile) as base_url:
        yield Gateway(base_url, config, access_lines)
