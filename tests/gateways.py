"""A real gateway on a loopback port, with its own policy file and state store, for tests.

    with run_gateway(tmp_path, POLICY_YAML) as gw:
        key = gw.create_key("alice@example.com", groups=["support-eu"])
        OpenAI(base_url=gw.url("oai") + "/v1", api_key=key)

Keys and users go through the same store API the CLI uses.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from geogate.config import Config, parse_config
from geogate.gateway import create_app
from geogate.store import open_store
from tests.servers import run_asgi

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

    def url(self, connection: str) -> str:
        return f"{self.base_url}/c/{connection}"

    def create_key(
        self,
        owner: str,
        *,
        groups: Sequence[str] = (),
        service_account: str | None = None,
        expires_in: float = 3600.0,
    ) -> str:
        async def create() -> str:
            store = await open_store(self.config.gateway.state)
            try:
                created = await store.create_key(
                    owner, groups=groups, expires_in=expires_in, service_account=service_account
                )
            finally:
                await store.close()
            return created.key

        return run_sync(create())

    def set_active(self, user: str, active: bool) -> None:
        async def change() -> None:
            store = await open_store(self.config.gateway.state)
            try:
                assert await store.set_user_active(user, active)
            finally:
                await store.close()

        run_sync(change())

    def revoke(self, key_id: str) -> None:
        async def revoke() -> None:
            store = await open_store(self.config.gateway.state)
            try:
                assert await store.revoke_key(key_id)
            finally:
                await store.close()

        run_sync(revoke())


@contextmanager
def run_gateway(folder: Path, policy_yaml: str) -> Iterator[Gateway]:
    (folder / "geogate.yaml").write_text(policy_yaml)
    config = parse_config(policy_yaml, filename=str(folder / "geogate.yaml"), base_dir=folder)
    with run_asgi(create_app(config)) as base_url:
        yield Gateway(base_url, config)
