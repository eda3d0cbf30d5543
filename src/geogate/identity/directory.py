"""Each worker's in-memory copy of the user directory: who is deactivated, who is in which group.

Every call runs `await directory.check(user)`. It looks at the store's directory marker (a
memory read, rewritten by any process right after it commits a directory change) and reloads
the copy only when the marker moved; the rest is set lookups. A deactivation committed by any
process (CLI, SCIM, admin API, another worker) is therefore seen by the very next call on every
worker, however valid the caller's token still is. A background poll of the revision in the
database (every `poll_every` seconds) covers a writer that died between its commit and the
marker.

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
    def __init__(self, store: Store, *, poll_every: float = 1.0) -> None:
        self._store = store
        self._poll_every = poll_every
        self._snapshot = DirectorySnapshot(revision=-1, inactive=frozenset(), groups={})
        self._marker = b""
        self._loading: tuple[bytes, asyncio.Task[DirectorySnapshot]] | None = None
        """The load in flight, and the marker it was started after."""
        self._task: asyncio.Task[None] | None = None
        self._seen: set[str] = set()
        self._unseen: set[str] = set()

    async def start(self) -> None:
        """Load the directory now (a store that cannot be read fails the start)."""
        self._marker = self._store.directory_marker()
        self._snapshot = await self._store.load_directory()
        self._task = asyncio.create_task(self._follow(), name="geogate-directory")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._record_seen()

    async def check(self, user: str) -> None:
        """Raise `AuthError` unless `user` is provably active right now."""
        try:
            marker = self._store.directory_marker()
            if marker != self._marker:
                # Taken as seen only once loaded: until then every call waits for the load, and
                # a load that fails is tried again by the next call. A change during the load
                # moves the marker past this one again.
                await self._reload(marker)
                self._marker = marker
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

    async def _reload(self, marker: bytes) -> None:
        """Load the directory as it stands once `marker` was seen; concurrent callers share
        one load. A load begun before the marker moved may have read the store before the
        change, so it is not shared with a caller who saw the move: that caller starts its own.
        """
        if self._loading is None or self._loading[0] != marker or self._loading[1].done():
            self._loading = (marker, asyncio.create_task(self._store.load_directory()))
        snapshot = await asyncio.shield(self._loading[1])
        if snapshot.revision > self._snapshot.revision:
            self._snapshot = snapshot

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self._poll_every)
            try:
                marker = self._store.directory_marker()  # read first: the load comes after it
                if await self._store.directory_revision() != self._snapshot.revision:
                    await self._reload(marker)
            except Exception as exc:  # the next round retries; calls still see the marker
                log.warning("could not poll the user directory: %s", exc)
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
