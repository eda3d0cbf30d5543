"""Gateway API keys: their format, and authentication with its cache."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

import pytest

import geogate.store.state
from geogate.identity import (
    ApiKeyAuthenticator,
    AuthError,
    Principal,
    hash_api_key,
    looks_like_api_key,
    new_api_key,
)
from geogate.store import KeyRecord, Store, open_store

ALICE = "alice@example.com"
DAY = 86400.0


class Lookups:
    """Counts (and can slow down or break) the store lookups an authenticator makes."""

    def __init__(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        self.gate: asyncio.Event | None = None
        """When set, lookups wait until the test opens it."""
        self.error: Exception | None = None
        self._find = store.find_key
        monkeypatch.setattr(store, "find_key", self._counted)

    async def _counted(self, key_hash: str) -> KeyRecord | None:
        self.count += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        return await self._find(key_hash)


@pytest.fixture
def lookups(store: Store, monkeypatch: pytest.MonkeyPatch) -> Lookups:
    return Lookups(store, monkeypatch)


async def refused(authenticator: ApiKeyAuthenticator, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await authenticator.authenticate(token)
    return caught.value


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll `check` for up to five seconds (no timing is asserted, only the outcome)."""
    deadline = time.monotonic() + 5
    while not await check():
        assert time.monotonic() < deadline, "the change was never seen"
        await asyncio.sleep(0.02)


def test_new_keys_have_the_documented_shape() -> None:
    keys = {new_api_key() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("gk_") and len(key) == 46
        assert looks_like_api_key(key)
        assert hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()


@pytest.mark.parametrize(
    "token",
    [
        "",
        "gk_",
        "gk_" + "a" * 42,
        "gk_" + "a" * 44,
        "gk_" + "a" * 42 + "+",
        "gk_" + "a" * 42 + "/",
        "gk_" + "a" * 42 + "é",
        "gk_" + "a" * 43 + "\n",
        "Bearer gk_" + "a" * 43,
        "GK_" + "a" * 43,
        "sk-" + "a" * 43,
        "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln",
    ],
)
def test_other_tokens_do_not_look_like_keys(token: str) -> None:
    assert not looks_like_api_key(token)


async def test_a_valid_key_gives_its_owner(store: Store) -> None:
    created = await store.create_key(ALICE, groups=["support", "eu"], expires_in=DAY)
    principal = await ApiKeyAuthenticator(store).authenticate(created.key)
    assert principal == Principal(
        subject=ALICE,
        user=ALICE,
        groups=frozenset({"support", "eu"}),
        service_account=None,
        method="api_key",
        credential_id=created.info.id,
    )


async def test_a_service_account_key_acts_as_the_account(store: Store) -> None:
    await store.create_key(ALICE, groups=["ci"], expires_in=DAY, service_account="ci-bot")
    created = await store.create_key(
        ALICE, groups=["deploy"], expires_in=DAY, service_account="ci-bot"
    )
    principal = await ApiKeyAuthenticator(store).authenticate(created.key)
    assert principal.subject == "sa:ci-bot"
    assert principal.user == ALICE
    assert principal.service_account == "ci-bot"
    assert principal.groups == {"ci", "deploy"}


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "No credentials"),
        ("sk-proj-" + "x" * 40, "not a GeoGate API key"),
        ("gk_short", "not a GeoGate API key"),
        ("gk_" + "A" * 43 + "' OR 1=1 --", "not a GeoGate API key"),
        ("gk_" + "\x00" * 43, "not a GeoGate API key"),
        ("x" * 100_000, "not a GeoGate API key"),
    ],
)
async def test_malformed_tokens_are_refused_without_a_lookup(
    store: Store, lookups: Lookups, token: str, message: str
) -> None:
    error = await refused(ApiKeyAuthenticator(store), token)
    assert error.code == "unauthenticated"
    assert message in error.message
    assert lookups.count == 0


async def test_an_unknown_key_is_refused(store: Store) -> None:
    error = await refused(ApiKeyAuthenticator(store), new_api_key())
    assert error.code == "unauthenticated"
    assert "not known" in error.message and "geogate keys create" in error.message


async def test_a_revoked_key_is_refused(store: Store) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    await store.revoke_key(created.info.id)
    error = await refused(ApiKeyAuthenticator(store), created.key)
    assert error.code == "unauthenticated"
    assert f"{created.info.id} was revoked" in error.message


async def test_an_expired_key_is_refused_even_when_cached(store: Store) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=60)
    now = time.time()
    authenticator = ApiKeyAuthenticator(store, recheck_after=3600, clock=lambda: now)
    assert (await authenticator.authenticate(created.key)).user == ALICE
    now += 61
    error = await refused(authenticator, created.key)
    assert error.code == "unauthenticated"
    expired_on = created.info.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    assert f"expired on {expired_on}" in error.message


async def test_deactivation_disables_keys_until_reactivated(store: Store) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    authenticator = ApiKeyAuthenticator(store, recheck_after=0)
    await store.set_user_active(ALICE, False)
    error = await refused(authenticator, created.key)
    assert error.code == "identity_disabled"
    assert "alice@example.com is deactivated" in error.message
    await store.set_user_active(ALICE, True)
    assert (await authenticator.authenticate(created.key)).user == ALICE


async def test_a_deactivated_owner_disables_service_account_keys(store: Store) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY, service_account="ci-bot")
    await store.set_user_active(ALICE, False)
    error = await refused(ApiKeyAuthenticator(store), created.key)
    assert error.code == "identity_disabled"
    assert "alice@example.com, who owns the service account ci-bot" in error.message


async def test_another_process_deactivating_is_seen_soon(store: Store, state_url: str) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    authenticator = ApiKeyAuthenticator(store, recheck_after=0.05)
    await authenticator.authenticate(created.key)

    async def disabled() -> bool:
        try:
            await authenticator.authenticate(created.key)
        except AuthError as exc:
            return exc.code == "identity_disabled"
        return False

    async with await open_store(state_url) as other_process:
        await other_process.set_user_active(ALICE, False)
    await eventually(disabled)


async def test_another_process_revoking_is_seen_soon(store: Store, state_url: str) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    authenticator = ApiKeyAuthenticator(store, recheck_after=0.05)
    await authenticator.authenticate(created.key)

    async def revoked() -> bool:
        try:
            await authenticator.authenticate(created.key)
        except AuthError as exc:
            return "revoked" in exc.message
        return False

    async with await open_store(state_url) as other_process:
        await other_process.revoke_key(created.info.id)
    await eventually(revoked)


async def test_repeats_are_served_from_the_cache(store: Store, lookups: Lookups) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    authenticator = ApiKeyAuthenticator(store, recheck_after=3600)
    for _ in range(100):
        await authenticator.authenticate(created.key)
    assert lookups.count == 1


async def test_unknown_keys_are_cached_briefly(
    store: Store, lookups: Lookups, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = new_api_key()
    for _ in range(20):
        await refused(ApiKeyAuthenticator(store, recheck_after=3600), key)
    assert lookups.count == 20  # a fresh authenticator each time: nothing shared
    patient = ApiKeyAuthenticator(store, recheck_after=3600)
    for _ in range(20):
        await refused(patient, key)
    assert lookups.count == 21
    authenticator = ApiKeyAuthenticator(store, recheck_after=0.05)
    await refused(authenticator, key)
    # The same key comes into existence: the negative entry must not outlive recheck_after.
    monkeypatch.setattr(geogate.store.state, "new_api_key", lambda: key)
    await store.create_key(ALICE, groups=[], expires_in=DAY)

    async def accepted() -> bool:
        try:
            return (await authenticator.authenticate(key)).user == ALICE
        except AuthError:
            return False

    await eventually(accepted)


async def test_a_new_key_works_at_once(store: Store) -> None:
    authenticator = ApiKeyAuthenticator(store, recheck_after=3600)
    await refused(authenticator, new_api_key())
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    assert (await authenticator.authenticate(created.key)).user == ALICE


async def test_concurrent_first_lookups_share_one_query(store: Store, lookups: Lookups) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    lookups.gate = asyncio.Event()
    authenticator = ApiKeyAuthenticator(store)
    calls = [asyncio.create_task(authenticator.authenticate(created.key)) for _ in range(20)]
    await asyncio.sleep(0.01)
    lookups.gate.set()
    principals = await asyncio.gather(*calls)
    assert {p.credential_id for p in principals} == {created.info.id}
    assert lookups.count == 1


async def test_a_caller_giving_up_does_not_cancel_the_others(
    store: Store, lookups: Lookups
) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    lookups.gate = asyncio.Event()
    authenticator = ApiKeyAuthenticator(store)
    impatient = asyncio.create_task(authenticator.authenticate(created.key))
    patient = asyncio.create_task(authenticator.authenticate(created.key))
    await asyncio.sleep(0.01)
    impatient.cancel()
    await asyncio.sleep(0.01)
    lookups.gate.set()
    assert (await patient).user == ALICE
    assert impatient.cancelled()
    assert lookups.count == 1


async def test_the_cache_is_bounded(store: Store, lookups: Lookups) -> None:
    keys = [(await store.create_key(ALICE, groups=[], expires_in=DAY)).key for _ in range(3)]
    authenticator = ApiKeyAuthenticator(store, recheck_after=3600, max_entries=2)
    for key in keys:
        await authenticator.authenticate(key)
    await authenticator.authenticate(keys[0])  # pushed out by the third
    assert lookups.count == 4
    await authenticator.authenticate(keys[2])
    assert lookups.count == 4


async def test_a_flood_of_unknown_keys_does_not_evict_real_ones(
    store: Store, lookups: Lookups
) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    authenticator = ApiKeyAuthenticator(store, recheck_after=3600, max_entries=2)
    await authenticator.authenticate(created.key)
    for _ in range(10):
        await refused(authenticator, new_api_key())
    await authenticator.authenticate(created.key)
    assert lookups.count == 11


async def test_a_store_failure_fails_closed_and_is_not_cached(
    store: Store, lookups: Lookups
) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    authenticator = ApiKeyAuthenticator(store)
    lookups.error = OSError("disk on fire")
    with pytest.raises(AuthError) as caught:
        await authenticator.authenticate(created.key)
    assert caught.value.code == "identity_unavailable"
    assert "disk on fire" not in caught.value.message  # internals stay in the log
    lookups.error = None
    assert (await authenticator.authenticate(created.key)).user == ALICE


async def test_last_use_is_recorded_at_most_once_a_minute(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    touches: list[str] = []
    touch = store.touch_key

    async def counted_touch(key_id: str, used_at: datetime) -> None:
        touches.append(key_id)
        await touch(key_id, used_at)

    monkeypatch.setattr(store, "touch_key", counted_touch)
    now = time.time()
    authenticator = ApiKeyAuthenticator(store, recheck_after=0, clock=lambda: now)
    await authenticator.authenticate(created.key)
    [info] = await store.list_keys()
    assert info.last_used_at is not None
    for _ in range(5):
        await authenticator.authenticate(created.key)
    assert touches == [created.info.id]
    now += 120
    await authenticator.authenticate(created.key)
    assert touches == [created.info.id] * 2


async def test_failing_to_record_last_use_does_not_fail_the_call(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)

    async def broken(key_id: str, used_at: datetime) -> None:
        raise OSError("database is locked")

    monkeypatch.setattr(store, "touch_key", broken)
    with caplog.at_level(logging.WARNING):
        assert (await ApiKeyAuthenticator(store).authenticate(created.key)).user == ALICE
    assert created.info.id in caplog.text
    assert created.key not in caplog.text
