"""Gateway API keys (`gk_...`) on the hot path.

Every call is authenticated, so a repeat lookup must cost microseconds: the outcome of a store
lookup is cached per key hash and reused until it is `recheck_after` seconds old. Then the store
is read again, so a revocation or deactivation made by another process (the CLI, another worker)
takes effect within that time everywhere. Expiry is checked against the clock on every call.

Unknown keys are cached too (separately, so a flood of made-up keys cannot push real ones out)
and for no longer than known ones, so a key that is created and used at once works at once.
Concurrent first lookups of one key share a single store query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from geogate.identity.principal import AuthError, AuthErrorCode, Principal
from geogate.store import KeyRecord, Store, hash_api_key, looks_like_api_key

log = logging.getLogger(__name__)

_LAST_USED_RESOLUTION = 60.0
"""Seconds; `last_used_at` is written at most this often per key and worker, not per call."""
_CREATE_HINT = "create a new one with `geogate keys create`"


@dataclass(frozen=True, slots=True)
class _Refusal:
    code: AuthErrorCode
    message: str
    user: str | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    loaded_at: float
    """`time.monotonic()` when the store was asked."""
    outcome: Principal | _Refusal
    expires_at: float
    """Epoch seconds from which a Principal outcome is refused as expired."""


class _Lru:
    """A size-bounded map that forgets the least recently used entry first."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def get(self, key_hash: str) -> _Entry | None:
        entry = self._entries.get(key_hash)
        if entry is not None:
            self._entries.move_to_end(key_hash)
        return entry

    def put(self, key_hash: str, entry: _Entry) -> None:
        self._entries[key_hash] = entry
        self._entries.move_to_end(key_hash)
        if len(self._entries) > self._limit:
            self._entries.popitem(last=False)

    def discard(self, key_hash: str) -> None:
        self._entries.pop(key_hash, None)


class ApiKeyAuthenticator:
    """Turns a gateway API key into a `Principal`, or raises `AuthError`."""

    def __init__(
        self,
        store: Store,
        *,
        recheck_after: float = 1.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`clock` gives epoch seconds for expiry checks (tests move it instead of sleeping)."""
        self._store = store
        self._recheck_after = recheck_after
        self._clock = clock
        self._known = _Lru(max_entries)
        self._unknown = _Lru(max_entries)
        self._loading: dict[str, asyncio.Task[_Entry]] = {}

    async def authenticate(self, token: str) -> Principal:
        if not token:
            raise AuthError(
                "unauthenticated",
                "No credentials were sent; pass a GeoGate API key as "
                "`Authorization: Bearer gk_...`.",
            )
        if not looks_like_api_key(token):
            raise AuthError(
                "unauthenticated",
                "The token is not a GeoGate API key (those are `gk_` and 43 more characters); "
                f"check it was copied whole, or {_CREATE_HINT}.",
            )
        key_hash = hash_api_key(token)
        entry = self._known.get(key_hash) or self._unknown.get(key_hash)
        if entry is None or time.monotonic() - entry.loaded_at >= self._recheck_after:
            try:
                entry = await self._reload(key_hash)
            except Exception as exc:  # the store cannot say whether the key is still good
                log.warning("could not look up an API key: %s", exc)
                raise AuthError(
                    "identity_unavailable",
                    "The gateway cannot read its key store right now, so it cannot check your "
                    "key; retry in a moment, and tell the operator if it persists.",
                ) from None
        outcome = entry.outcome
        if isinstance(outcome, _Refusal):
            raise AuthError(outcome.code, outcome.message, outcome.user)
        if self._clock() >= entry.expires_at:
            expired = datetime.fromtimestamp(entry.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            raise AuthError(
                "unauthenticated",
                f"The API key {outcome.credential_id} expired on {expired}; {_CREATE_HINT}.",
            )
        return outcome

    async def _reload(self, key_hash: str) -> _Entry:
        """Read the key from the store, sharing one query among concurrent callers."""
        task = self._loading.get(key_hash)
        if task is None:
            task = asyncio.create_task(self._load(key_hash))
            self._loading[key_hash] = task
            task.add_done_callback(lambda done: self._loaded(key_hash, done))
        # Shielded: a caller that gives up (client gone) does not cancel the others' lookup.
        return await asyncio.shield(task)

    def _loaded(self, key_hash: str, task: asyncio.Task[_Entry]) -> None:
        if self._loading.get(key_hash) is task:
            del self._loading[key_hash]
        if not task.cancelled():
            task.exception()  # delivered to the waiters; not "never retrieved" if they left

    async def _load(self, key_hash: str) -> _Entry:
        loaded_at = time.monotonic()
        record = await self._store.find_key(key_hash)
        if record is None:
            entry = _Entry(
                loaded_at,
                _Refusal(
                    "unauthenticated",
                    "The API key is not known to this gateway; check it was copied whole, "
                    f"or {_CREATE_HINT}.",
                ),
                expires_at=0.0,
            )
            self._known.discard(key_hash)
            self._unknown.put(key_hash, entry)
            return entry
        entry = _Entry(loaded_at, _outcome(record), expires_at=record.expires_at.timestamp())
        self._unknown.discard(key_hash)
        self._known.put(key_hash, entry)
        if isinstance(entry.outcome, Principal):
            await self._touch(record)
        return entry

    async def _touch(self, record: KeyRecord) -> None:
        """Keep `last_used_at` roughly current; bookkeeping never fails a call."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        last = record.last_used_at
        if last is not None and (now - last).total_seconds() < _LAST_USED_RESOLUTION:
            return
        try:
            await self._store.touch_key(record.id, now)
        except Exception as exc:
            log.warning("could not record the use of API key %s: %s", record.id, exc)


def _outcome(record: KeyRecord) -> Principal | _Refusal:
    """What a key leads to, apart from expiry (which depends on when it is used)."""
    if record.revoked_at is not None:
        return _Refusal(
            "unauthenticated",
            f"The API key {record.id} was revoked on "
            f"{record.revoked_at.strftime('%Y-%m-%d %H:%M UTC')}; {_CREATE_HINT}.",
        )
    if not record.owner_active:
        who = f"The user {record.owner}"
        if record.service_account is not None:
            who += f", who owns the service account {record.service_account},"
        return _Refusal(
            "identity_disabled",
            f"{who} is deactivated; ask an administrator to run "
            f"`geogate users activate {record.owner}` if that is a mistake.",
            record.owner,
        )
    account = record.service_account
    return Principal(
        subject=record.owner if account is None else f"sa:{account}",
        user=record.owner,
        groups=record.groups,
        service_account=account,
        method="api_key",
        credential_id=record.id,
    )
