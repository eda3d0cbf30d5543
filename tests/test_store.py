"""The state store: migrations, key and user round trips, sharing one SQLite file."""

from __future__ import annotations

import asyncio
import hashlib
import math
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

import geogate.store
from geogate.store import (
    Store,
    StoreError,
    driver_urls,
    hash_api_key,
    open_store,
)
from geogate.store.models import Base

ALICE = "alice@example.com"
DAY = 86400.0

HEAD = (
    max(
        p.name[:4]
        for p in (Path(geogate.store.__file__).parent / "migrations" / "versions").glob("0*.py")
    ),
)
"""The newest migration: what every database is migrated to."""


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "state.db"


@pytest.fixture
def state_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


def file_bytes(db_path: Path) -> bytes:
    """The database with its write-ahead log: everything SQLite has written."""
    return b"".join(
        path.read_bytes() for path in db_path.parent.glob(db_path.name + "*") if path.is_file()
    )


async def test_open_creates_the_folder_and_the_schema(store: Store, db_path: Path) -> None:
    assert db_path.is_file()
    with sqlite3.connect(db_path) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"users", "service_accounts", "api_keys", "alembic_version"} <= tables
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [HEAD]
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_ping_tells_whether_the_database_answers(state_url: str, db_path: Path) -> None:
    store = await open_store(state_url)
    assert await store.ping()
    await store.close()
    for path in db_path.parent.iterdir():
        path.unlink()
    db_path.parent.rmdir()
    assert not await store.ping()
    await store.close()


async def test_create_list_and_find_round_trip(store: Store) -> None:
    before = datetime.now(UTC)
    created = await store.create_key(ALICE, groups=["support", "eu", "eu"], expires_in=DAY)
    info = created.info
    assert created.key.startswith("gk_") and len(created.key) == 46
    assert info.id.startswith("key_") and len(info.id) == 16
    assert info.prefix == created.key[3:11]
    assert info.owner == ALICE and info.service_account is None
    assert info.groups == ("eu", "support")
    assert before <= info.created_at <= datetime.now(UTC)
    assert info.expires_at - info.created_at == timedelta(days=1)
    assert info.created_at.tzinfo is UTC
    assert created.key not in repr(created)

    assert await store.list_keys() == [info]
    record = await store.find_key(hash_api_key(created.key))
    assert record is not None
    assert (record.id, record.owner, record.owner_active) == (info.id, ALICE, True)
    assert record.groups == frozenset({"eu", "support"})
    assert record.expires_at == info.expires_at
    assert record.revoked_at is None and record.last_used_at is None
    assert [user.name for user in await store.list_users()] == [ALICE]


async def test_find_key_misses_return_none(store: Store) -> None:
    await store.create_key(ALICE, groups=[], expires_in=DAY)
    for probe in ["", "' OR 1=1 --", hashlib.sha256(b"gk_nope").hexdigest(), "%"]:
        assert await store.find_key(probe) is None


async def test_keys_are_never_stored_in_clear(store: Store, db_path: Path) -> None:
    created = await store.create_key(ALICE, groups=["g"], expires_in=DAY)
    data = file_bytes(db_path)
    assert hash_api_key(created.key).encode() in data
    assert created.key.encode() not in data
    assert created.key[11:].encode() not in data  # the secret part beyond the display prefix


async def test_migrations_are_idempotent(state_url: str) -> None:
    async with await open_store(state_url) as first:
        created = await first.create_key(ALICE, groups=[], expires_in=DAY)
    async with await open_store(state_url) as again:
        assert [info.id for info in await again.list_keys()] == [created.info.id]
    async with await open_store(state_url, migrate=False) as worker:
        assert [info.id for info in await worker.list_keys()] == [created.info.id]


def test_concurrent_processes_migrate_one_after_the_other(
    state_url: str, db_path: Path, tmp_path: Path
) -> None:
    # Each process imports everything, reports ready, then all open the new database together.
    script = (
        "import asyncio, pathlib, sys, time\n"
        "from geogate.store import open_store\n"
        "barrier = pathlib.Path(sys.argv[3])\n"
        "(barrier / sys.argv[2]).touch()\n"
        "while not (barrier / 'go').exists():\n"
        "    time.sleep(0.002)\n"
        "async def main():\n"
        "    store = await open_store(sys.argv[1])\n"
        "    await store.create_key(f'user{sys.argv[2]}@example.com', groups=[], expires_in=60)\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, state_url, str(n), str(barrier)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(barrier.iterdir())) < len(processes) and time.monotonic() < deadline:
        time.sleep(0.01)
    (barrier / "go").touch()
    for process in processes:
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM users").fetchone() == (4,)
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [HEAD]


async def test_migrations_match_the_models(store: Store, db_path: Path) -> None:
    engine = create_engine(f"sqlite:///{db_path}")
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    assert diff == []


async def test_two_stores_see_each_others_writes(state_url: str) -> None:
    async with await open_store(state_url) as one, await open_store(state_url) as two:
        created = await one.create_key(ALICE, groups=[], expires_in=DAY)
        key_hash = hash_api_key(created.key)
        assert (await two.find_key(key_hash)) is not None
        assert await two.set_user_active(ALICE, False)
        record = await one.find_key(key_hash)
        assert record is not None and not record.owner_active
        assert await one.revoke_key(created.info.id)
        record = await two.find_key(key_hash)
        assert record is not None and record.revoked_at is not None


async def test_concurrent_writers_in_one_process(store: Store) -> None:
    created = await asyncio.gather(
        *(store.create_key(f"u{n % 3}@example.com", groups=[], expires_in=DAY) for n in range(12))
    )
    assert len({c.info.id for c in created}) == 12
    assert [user.name for user in await store.list_users()] == [
        "u0@example.com",
        "u1@example.com",
        "u2@example.com",
    ]


async def test_revoke_keeps_the_first_time(store: Store) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    assert await store.revoke_key(created.info.id)
    [first] = await store.list_keys()
    assert first.revoked_at is not None
    assert await store.revoke_key(created.info.id)
    [again] = await store.list_keys()
    assert again.revoked_at == first.revoked_at
    assert not await store.revoke_key("key_doesnotexist")
    assert not await store.revoke_key("' OR 1=1 --")


async def test_users_deactivate_and_reactivate(store: Store) -> None:
    await store.create_key(ALICE, groups=[], expires_in=DAY)
    assert await store.set_user_active(ALICE, False)
    [user] = await store.list_users()
    assert not user.active and user.deactivated_at is not None
    assert await store.set_user_active(ALICE, False)
    [again] = await store.list_users()
    assert again.deactivated_at == user.deactivated_at
    assert await store.set_user_active(ALICE, True)
    [back] = await store.list_users()
    assert back.active and back.deactivated_at is None
    assert not await store.set_user_active("nobody@example.com", False)
    assert not await store.set_user_active("nobody@example.com", True, create=True)
    assert await store.set_user_active("leaver@example.com", False, create=True)
    assert [(u.name, u.active) for u in await store.list_users() if u.name != ALICE] == [
        ("leaver@example.com", False)
    ]


async def test_a_deactivated_user_gets_no_new_keys(store: Store) -> None:
    await store.create_key(ALICE, groups=[], expires_in=DAY)
    await store.set_user_active(ALICE, False)
    with pytest.raises(StoreError, match=r"users activate alice@example\.com"):
        await store.create_key(ALICE, groups=[], expires_in=DAY)


async def test_service_accounts_belong_to_one_owner(store: Store) -> None:
    first = await store.create_key(ALICE, groups=["ci"], expires_in=DAY, service_account="ci-bot")
    assert first.info.service_account == "ci-bot" and first.info.groups == ("ci",)
    second = await store.create_key(
        ALICE, groups=["deploy"], expires_in=DAY, service_account="ci-bot"
    )
    # The account keeps the groups it was created with; each key may add its own.
    assert second.info.groups == ("ci", "deploy")
    record = await store.find_key(hash_api_key(second.key))
    assert record is not None
    assert record.service_account == "ci-bot" and record.groups == {"ci", "deploy"}
    with pytest.raises(StoreError, match=r"belongs to alice@example\.com.*--owner"):
        await store.create_key(
            "mallory@example.com", groups=["admin"], expires_in=DAY, service_account="ci-bot"
        )
    assert {info.owner for info in await store.list_keys()} == {ALICE}


async def test_touch_key_never_moves_back(store: Store) -> None:
    created = await store.create_key(ALICE, groups=[], expires_in=DAY)
    later = datetime.now(UTC) + timedelta(minutes=5)
    await store.touch_key(created.info.id, later)
    await store.touch_key(created.info.id, later - timedelta(minutes=1))
    [info] = await store.list_keys()
    assert info.last_used_at == later


@pytest.mark.parametrize(
    "owner", ["", "alice smith", "alice\n@example.com", "a\x00b", "x" * 321, " alice"]
)
async def test_bad_owner_names_are_refused(store: Store, owner: str) -> None:
    with pytest.raises(StoreError, match="not a user name"):
        await store.create_key(owner, groups=[], expires_in=DAY)
    assert await store.list_users() == []


@pytest.mark.parametrize("account", ["", "sa:ci", "../etc", "-bot", "ci bot", "x" * 65, "ci\n"])
async def test_bad_service_account_names_are_refused(store: Store, account: str) -> None:
    with pytest.raises(StoreError, match="not a service account name"):
        await store.create_key(ALICE, groups=[], expires_in=DAY, service_account=account)


@pytest.mark.parametrize("groups", [[""], [" admin"], ["a\nb"], ["x" * 257]])
async def test_bad_groups_are_refused(store: Store, groups: list[str]) -> None:
    with pytest.raises(StoreError, match="not a group name"):
        await store.create_key(ALICE, groups=groups, expires_in=DAY)


async def test_groups_must_be_a_list(store: Store) -> None:
    with pytest.raises(StoreError, match="list of group names"):
        await store.create_key(ALICE, groups="admin", expires_in=DAY)


@pytest.mark.parametrize("expires_in", [0.0, -1.0, math.nan, math.inf, 1e20])
async def test_bad_lifetimes_are_refused(store: Store, expires_in: float) -> None:
    with pytest.raises(StoreError, match="expir"):
        await store.create_key(ALICE, groups=[], expires_in=expires_in)
    assert await store.list_keys() == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://geogate:hunter2@db.internal/geogate", "SQLite only"),
        ("sqlite://", "a file"),
        ("sqlite:///:memory:", "a file"),
        ("not a url", "not a database URL"),
        ("postgresql://geogate:hunter2@db.internal:port/geogate", "not a database URL"),
    ],
)
def test_unusable_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as caught:
        driver_urls(url)
    assert "hunter2" not in str(caught.value)


def test_sqlite_urls_map_to_their_drivers(tmp_path: Path) -> None:
    sync_url, async_url = driver_urls(f"sqlite:///{tmp_path}/s.db?timeout=3")
    assert sync_url.drivername == "sqlite+pysqlite"
    assert async_url.drivername == "sqlite+aiosqlite"
    assert async_url.database == f"{tmp_path}/s.db" and async_url.query == {"timeout": "3"}


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"definitely not sqlite " * 100)
    with pytest.raises(StoreError, match="cannot open the database"):
        await open_store(f"sqlite:///{path}")


async def test_a_state_folder_that_cannot_be_made_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(StoreError, match=r"cannot open the database.*permissions"):
        await open_store(f"sqlite:///{blocker}/state.db")
