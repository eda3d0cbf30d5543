"""Each worker's in-memory copy of the user directory: who is deactivated, who is in which group.

Every call asks `is_active(user)` and `groups_of(user)`; those are set lookups, never I/O.
A background task polls the store's directory revision (one tiny query every `poll_every`
seconds) and reloads the copy only when the revision moved, so a deactivation made by any
process (CLI, SCIM, admin API, another worker) takes effect everywhere within that interval.

If the store cannot be read for `stale_after` seconds, the copy can no longer prove that a user
is still active, and `check` refuses every call it is asked about (fail closed) until a poll
succeeds again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from geogate.identity.principal import AuthError
from geogate.store import DirectorySnapshot, Store

log = logging.getLogger(__name__)

_EMPTY: frozenset[str] = frozenset()


class DirectoryWatch:
    def __init__(
        self, store: Store, *, poll_every: float = 0.25, stale_after: float = 10.0
    ) -> None:
        self._store = store
        self._poll_every = poll_every
        self._stale_after = stale_after
        self._snapshot = DirectorySnapshot(revision=-1, inactive=frozenset(), groups={})
        self._fresh_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._seen: set[str] = set()
        self._unseen: set[str] = set()

    async def start(self) -> None:
        """Load the directory now (a store that cannot be read fails the start), then follow it."""
        self._snapshot = await self._store.load_directory()
        self._fresh_at = time.monotonic()
        self._task = asyncio.create_task(self._follow(), name="geogate-directory")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self._record_seen()
        except Exception as exc:
            log.warning("could not record users first seen in tokens: %s", exc)

    @property
    def revision(self) -> int:
        return self._snapshot.revision

    def check(self, user: str) -> None:
        """Raise `AuthError` unless `user` is provably active right now."""
        if time.monotonic() - self._fresh_at > self._stale_after:
            raise AuthError(
                "identity_unavailable",
                "The gateway cannot read its user directory, so it cannot tell whether you are "
                "still active; retry in a moment, and tell the operator if it persists.",
            )
        if user in self._snapshot.inactive:
            raise AuthError(
                "identity_disabled",
                f"The user {user} is deactivated; ask an administrator to run "
                f"`geogate users activate {user}` if that is a mistake.",
            )

    def groups_of(self, user: str) -> frozenset[str]:
        """Groups the IdP provisioned through SCIM, added to those a credential carries."""
        return self._snapshot.groups.get(user, _EMPTY)

    def saw(self, users: Iterable[str]) -> None:
        """Note users known from tokens; they are written to the store in the background."""
        for user in users:
            if user not in self._seen:
                self._seen.add(user)
                self._unseen.add(user)

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_every)
            try:
                revision = await self._store.directory_revision()
                if revision != self._snapshot.revision:
                    self._snapshot = await self._store.load_directory()
                self._fresh_at = time.monotonic()
                await self._record_seen()
            except Exception as exc:  # the next poll retries; `check` fails closed meanwhile
                log.warning("could not read the user directory: %s", exc)

    async def _record_seen(self) -> None:
        if not self._unseen:
            return
        users, self._unseen = self._unseen, set()
        try:
            await self._store.ensure_users(users, actor="oidc")
        except Exception:
            self._unseen |= users
            raise
