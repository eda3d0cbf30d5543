"""The per-worker directory: the change marker, the fallback poll, and failing closed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from geogate.identity import AuthError, DirectoryWatch
from geogate.store import DirectorySnapshot, Store, journal, open_store
from geogate.store.models import User

ALICE = "alice@example.eu"


@pytest.fixture(autouse=True)
async def alice(store: Store) -> None:
    await store.create_key(ALICE, groups=[], expires_in=3600)


@pytest.fixture
async def directory(store: Store) -> AsyncIterator[DirectoryWatch]:
    """A worker's directory that only the marker moves (its poll waits an hour)."""
    directory = DirectoryWatch(store, poll_every=3600)
    await directory.start()
    yield directory
    await directory.close()


async def deactivate(state_url: str, user: str) -> None:
    """Deactivate `user` from another process, as `geogate users deactivate` does."""
    async with await open_store(state_url) as cli:
        await cli.set_user_active(user, False)


async def test_directory_changes_move_the_marker_and_nothing_else_does(
    store: Store, state_url: str
) -> None:
    marker = store.directory_marker()
    await store.create_key("bob@example.eu", groups=[], expires_in=3600)
    await store.ensure_users(["carol@example.eu"], actor="oidc")
    assert store.directory_marker() == marker
    async with await open_store(state_url) as other_process:
        await other_process.set_user_active(ALICE, False)
    assert store.directory_marker() != marker
    marker = store.directory_marker()
    await store.set_user_active(ALICE, False)  # no change of state: no announcement
    assert store.directory_marker() == marker
    user = await store.scim.create_user("dave@example.eu")
    group = await store.scim.create_group("finance", members=[user.id])
    assert group.display_name == "finance"
    assert store.directory_marker() != marker


async def test_the_very_next_check_sees_another_processes_deactivation(
    directory: DirectoryWatch, state_url: str
) -> None:
    await directory.check(ALICE)
    await deactivate(state_url, ALICE)  # the marker alone must do it
    with pytest.raises(AuthError) as caught:
        await directory.check(ALICE.upper())
    assert (caught.value.code, caught.value.user) == ("identity_disabled", ALICE.upper())


async def test_a_load_begun_before_a_deactivation_is_not_trusted_after_it(
    directory: DirectoryWatch, store: Store, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that sees the marker move must not share a load that read the store before the
    change: the deactivated user would pass on an old copy."""
    await store.create_key("bob@example.eu", groups=[], expires_in=3600)
    real_load = store.load_directory
    read, release = asyncio.Event(), asyncio.Event()

    async def slow_first_load() -> DirectorySnapshot:
        snapshot = await real_load()
        if not read.is_set():  # the first load has read the store; it returns only later
            read.set()
            await release.wait()
        return snapshot

    monkeypatch.setattr(store, "load_directory", slow_first_load)
    try:
        async with await open_store(state_url) as cli:
            await cli.set_user_active("bob@example.eu", False)  # moves the marker
            earlier = asyncio.create_task(directory.check(ALICE))  # begins the slow load
            await read.wait()
            await cli.set_user_active(ALICE, False)
        later = asyncio.create_task(directory.check(ALICE))
        await asyncio.sleep(0.05)
        release.set()
        # it began before the deactivation: the old copy or the new one may answer it
        await asyncio.gather(earlier, return_exceptions=True)
        with pytest.raises(AuthError) as caught:
            await later
        assert caught.value.code == "identity_disabled"
    finally:
        release.set()


async def test_a_call_during_the_load_that_follows_a_deactivation_waits_for_it(
    directory: DirectoryWatch, store: Store, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second call of the deactivated user, while the first one's load is still running,
    must not pass on the old copy."""
    real_load = store.load_directory
    started, release = asyncio.Event(), asyncio.Event()

    async def held_load() -> DirectorySnapshot:
        started.set()
        await release.wait()
        return await real_load()

    monkeypatch.setattr(store, "load_directory", held_load)
    await deactivate(state_url, ALICE)
    try:
        first = asyncio.create_task(directory.check(ALICE))
        await started.wait()
        second = asyncio.create_task(directory.check(ALICE))
        await asyncio.sleep(0.05)
        assert not second.done()  # it waits for the load instead of answering from the old copy
        release.set()
        for call in (first, second):
            with pytest.raises(AuthError) as caught:
                await call
            assert caught.value.code == "identity_disabled"
    finally:
        release.set()


async def test_a_failed_load_is_tried_again_by_the_next_call(
    directory: DirectoryWatch, store: Store, state_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a deactivation, a load that fails refuses its call, and the next call loads
    again instead of trusting the copy from before the change."""
    real_load = store.load_directory
    failures = [OSError("database is locked")]

    async def flaky_load() -> DirectorySnapshot:
        if failures:
            raise failures.pop()
        return await real_load()

    monkeypatch.setattr(store, "load_directory", flaky_load)
    await deactivate(state_url, ALICE)
    with pytest.raises(AuthError) as unavailable:
        await directory.check(ALICE)
    assert unavailable.value.code == "identity_unavailable"
    with pytest.raises(AuthError) as disabled:
        await directory.check(ALICE)
    assert disabled.value.code == "identity_disabled"


async def test_a_writer_that_died_before_announcing_is_caught_by_the_poll(store: Store) -> None:
    directory = DirectoryWatch(store, poll_every=0.05)
    await directory.start()
    try:
        async with store._writer.begin() as conn:  # a commit whose marker write never came
            await conn.execute(update(User).where(User.name == ALICE).values(active=False))
            await journal.bump(conn)
        deadline = time.monotonic() + 15
        while True:
            try:
                await directory.check(ALICE)
            except AuthError as exc:
                assert exc.code == "identity_disabled"
                break
            assert time.monotonic() < deadline, "the poll never saw the change"
            await asyncio.sleep(0.02)
    finally:
        await directory.close()


async def test_an_unreadable_directory_fails_closed(
    directory: DirectoryWatch, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> bytes:
        raise OSError("state folder gone")

    monkeypatch.setattr(store, "directory_marker", broken)
    with pytest.raises(AuthError) as caught:
        await directory.check(ALICE)
    assert caught.value.code == "identity_unavailable"
