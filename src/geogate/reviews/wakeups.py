"""Wake the calls held for a review, in whichever process of this host holds them.

A decision is made by one worker (the one the approver's request reached) and the call waits
in another. Each gateway process binds a Unix datagram socket in the abstract namespace and
lists itself in a folder beside the state database; a decision sends the review id to every
process listed there. A process that died leaves a name nobody answers to: the first send to
it fails, and the name is removed.

    wakeups = Wakeups(store.folder)
    await wakeups.start()
    with wakeups.watch(review_id) as woken:
        await asyncio.wait_for(woken.wait(), timeout)   # a decision anywhere sets it
    wakeups.announce(review_id)                         # after a decision is committed

Nothing polls: a held call sleeps until a datagram arrives. Waiters still look at the store
now and then (`RECHECK`), so a lost datagram (a full socket buffer) delays, never loses, a
decision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

_log = logging.getLogger("geogate.reviews")
_PREFIX = "\0geogate-reviews-"
_MAX_ID = 64
RECHECK = 5.0
"""Seconds a held call waits for a wakeup before it looks at the store anyway."""


class Wakeups:
    def __init__(self, folder: Path) -> None:
        self._folder = folder / "reviews.wakeups"
        self._name = f"{os.getpid()}-{secrets.token_hex(6)}"
        self._socket: socket.socket | None = None
        self._waiting: dict[str, set[asyncio.Event]] = {}

    async def start(self) -> None:
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(_PREFIX + self._name)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._received)
        self._socket = sock
        (self._folder / self._name).touch(mode=0o600)

    async def close(self) -> None:
        if self._socket is not None:
            asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        with contextlib.suppress(FileNotFoundError):
            (self._folder / self._name).unlink()

    @contextlib.contextmanager
    def watch(self, review_id: str) -> Iterator[asyncio.Event]:
        """An event set when `review_id` is decided (or may have been) in any process."""
        woken = asyncio.Event()
        self._waiting.setdefault(review_id, set()).add(woken)
        try:
            yield woken
        finally:
            waiters = self._waiting.get(review_id)
            if waiters is not None:
                waiters.discard(woken)
                if not waiters:
                    del self._waiting[review_id]

    def announce(self, review_id: str) -> None:
        """Tell every process of this host (this one too) that `review_id` changed."""
        self._wake(review_id)
        if self._socket is None:
            return
        message = review_id.encode()
        try:
            names = [entry.name for entry in os.scandir(self._folder) if entry.name != self._name]
        except OSError as exc:
            _log.warning("cannot list the processes to wake for review %s: %s", review_id, exc)
            return
        for name in names:
            try:
                self._socket.sendto(message, _PREFIX + name)
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):  # that process is gone
                    (self._folder / name).unlink()
            except OSError as exc:  # a full buffer: the waiter's recheck finds the decision
                _log.warning("could not wake process %s for review %s: %s", name, review_id, exc)

    def _received(self) -> None:
        assert self._socket is not None
        while True:
            try:
                data = self._socket.recv(_MAX_ID)
            except (BlockingIOError, InterruptedError):
                return
            self._wake(data.decode("ascii", "replace"))

    def _wake(self, review_id: str) -> None:
        for woken in self._waiting.get(review_id, ()):
            woken.set()
