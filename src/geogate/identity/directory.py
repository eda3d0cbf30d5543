"""Each worker's in-memory copy of the user directory: who is deactivated, who is in which group.

Every call runs `await directory.check(user)`. It reads the store's directory revision (a
synchronous one-row read of a few microseconds) and reloads the copy only when the revision
moved; the rest is set lookups. A deactivation committed by any process (CLI, SCIM, admin
API, another worker) is therefore seen by the very next call on every worker, however valid
the caller's token still is.

Users are matched without regard to case (`Alice@Example.com` is `alice@example.com`), as
IdPs and SCIM treat them: a deactivation is never dodged by changing the case of a name.

If the revision cannot be read, the gateway cannot prove the user is still active, and the
call is refused with `identity_unavailable` (fail closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from geogate.identity.principal import AuthError
from geogate.store import DirectorySnapshot, Store

log = logging.getLogger(__name__)

_EMPTY: frozenset[str] = frozenset()


class DirectoryWatch:
    def __init__(self, store: Store, *, record_every: float = 1.0) -> None:
        self._store = store
        self._record_every = record_every
        self._snapshot = DirectorySnapshot(revision=-1, inactive=frozenset(), groups={})
        self._loading: asyncio.Task[DirectorySnapshot] | None = None
        self._task: asyncio.Task[None] | None = None
        self._seen: set[str] = set()
        self._unseen: set[str] = set()

    async def start(self) -> None:
        """Load the directory now (a store that cannot be read fails the start)."""
        self._snapshot = await self._store.load_directory()
        self._task = asyncio.create_task(self._record_forever(), name="geogate-directory")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._record_seen()

    async def check(self, user: str) -> None:
        """Raise `AuthError` unless `user` is provably active right now."""
        try:
            revision = self._store.directory_revision_now()
            if revision != self._snapshot.revision:
                await self._reload()
        except Exception as exc:
            log.warning("could not read the user directory: %s", exc)
            raise AuthError(
                "identity_unavailable",
                "The gateway cannot read its user directory, so it cannot tell whether you are "
                "still active; retry in a moment, and tell the operator if it persists.",
            ) from None
        if user.casefold() in self._snapshot.inactive:
            raise AuthError(
                "identity_disabled",
                f"The user {user} is deactivated; ask an administrator to run "
                f"`geogate users activate {user}` if that is a mistake.",
                user,
            )

    def groups_of(self, user: str) -> frozenset[str]:
        """Groups the IdP provisioned through SCIM, added to those a credential carries."""
        return self._snapshot.groups.get(user.casefold(), _EMPTY)

    def saw(self, user: str) -> None:
        """Note a user known from a token; it is written to the store in the background."""
        if user not in self._seen:
            self._seen.add(user)
            self._unseen.add(user)

    async def _reload(self) -> None:
        """Load the new directory; concurrent callers share one load."""
        if self._loading is None or self._loading.done():
            self._loading = asyncio.create_task(self._store.load_directory())
        snapshot = await asyncio.shield(self._loading)
        if snapshot.revision > self._snapshot.revision:
            self._snapshot = snapshot

    async def _record_forever(self) -> None:
        while True:
            await asyncio.sleep(self._record_every)
            await self._record_seen()

    async def _record_seen(self) -> None:
        if not self._unseen:
            return
        users, self._unseen = self._unseen, set()
        try:
            await self._store.ensure_users(sorted(users), actor="oidc")
        except Exception as exc:  # retried at the next round; never fails a call
            log.warning("could not record users first seen in tokens: %s", exc)
            self._unseen |= users
