"""`geogate keys` and `geogate users` against a real state file."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from geogate.cli import keys, users
from geogate.config import Config
from geogate.config.model import ApiKeys, Gateway, Identity
from geogate.identity import ApiKeyAuthenticator, AuthError, Principal
from geogate.store import open_store

ALICE = "alice@example.com"
runner = CliRunner()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def config(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """A policy with a 7-day key limit, handed to every command instead of a file."""
    loaded = Config(
        version=1,
        gateway=Gateway(state=f"sqlite:///{db_path}"),
        identity=Identity(api_keys=ApiKeys(max_lifetime=7 * 86400.0)),
    )
    monkeypatch.setattr(keys, "open_config", lambda _path: loaded)
    monkeypatch.setattr(users, "open_config", lambda _path: loaded)
    return loaded


def invoke(app: typer.Typer, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def create(*args: str) -> dict[str, object]:
    code, out, err = invoke(keys.app, "create", "--json", *args)
    assert code == 0, err
    created = json.loads(out)
    assert isinstance(created, dict)
    return created


def authenticate(config: Config, key: str) -> Principal:
    async def run() -> Principal:
        async with await open_store(config.gateway.state) as store:
            return await ApiKeyAuthenticator(store).authenticate(key)

    return asyncio.run(run())


def test_create_prints_the_key_once(config: Config, db_path: Path) -> None:
    code, out, err = invoke(keys.app, "create", "--owner", ALICE, "--groups", "support, eu,")
    assert code == 0, err
    [key] = [word for word in out.split() if word.startswith("gk_")]
    assert out.count(key) == 1
    assert "cannot be recovered" in out
    assert key.encode() not in b"".join(p.read_bytes() for p in db_path.parent.glob("state.db*"))
    principal = authenticate(config, key)
    assert principal.user == ALICE and principal.groups == {"support", "eu"}


def test_the_policy_file_names_the_state(tmp_path: Path) -> None:
    policy = tmp_path / "policy" / "geogate.yaml"
    policy.parent.mkdir()
    policy.write_text(
        "version: 1\ngateway:\n  state: sqlite:///.geogate/state.db\n"
        "identity:\n  api_keys: {max_lifetime: 1d}\n"
    )
    code, _, err = invoke(keys.app, "create", "--owner", ALICE, "--config", str(policy))
    assert code == 0, err
    assert (policy.parent / ".geogate" / "state.db").is_file()
    code, _, err = invoke(
        keys.app, "create", "--owner", ALICE, "--expires", "2d", "-c", str(policy)
    )
    assert code == 1 and "(1d)" in err


def test_create_json_and_default_lifetime(config: Config) -> None:
    created = create("--owner", ALICE)
    assert list(created)[:2] == ["id", "key"]
    assert str(created["key"]).startswith("gk_") and str(created["id"]).startswith("key_")
    assert created["owner"] == ALICE and created["groups"] == []
    lifetime = datetime.fromisoformat(str(created["expires_at"])) - datetime.fromisoformat(
        str(created["created_at"])
    )
    assert lifetime == timedelta(days=7)


def test_create_a_service_account_key(config: Config) -> None:
    created = create("--owner", ALICE, "--service-account", "ci-bot", "--groups", "ci")
    assert created["service_account"] == "ci-bot"
    principal = authenticate(config, str(created["key"]))
    assert principal.subject == "sa:ci-bot" and principal.user == ALICE
    code, _, err = invoke(
        keys.app, "create", "--owner", "mallory@example.com", "--service-account", "ci-bot"
    )
    assert code == 1
    assert "belongs to alice@example.com" in err


def test_a_shorter_lifetime_is_kept(config: Config) -> None:
    created = create("--owner", ALICE, "--expires", "12h")
    lifetime = datetime.fromisoformat(str(created["expires_at"])) - datetime.fromisoformat(
        str(created["created_at"])
    )
    assert lifetime == timedelta(hours=12)


def test_a_lifetime_over_the_maximum_is_refused(config: Config) -> None:
    code, out, err = invoke(keys.app, "create", "--owner", ALICE, "--expires", "30d")
    assert code == 1
    assert "identity.api_keys.max_lifetime (7d)" in err
    assert "gk_" not in out
    code, out, _ = invoke(keys.app, "list", "--json")
    assert json.loads(out) == []


@pytest.mark.parametrize("expires", ["soon", "0s", "-1d", "1y", ""])
def test_bad_lifetimes_are_refused(config: Config, expires: str) -> None:
    code, out, err = invoke(keys.app, "create", "--owner", ALICE, "--expires", expires)
    assert code == 1
    assert "--expires" in err and "gk_" not in out


@pytest.mark.parametrize("owner", ["", "alice smith", "alice\x00@example.com"])
def test_bad_owners_are_refused(config: Config, owner: str) -> None:
    code, _, err = invoke(keys.app, "create", "--owner", owner)
    assert code == 1
    assert "not a user name" in err


def test_list_never_shows_keys_or_hashes(config: Config) -> None:
    first = create("--owner", ALICE, "--groups", "a,b")
    second = create("--owner", "bob@example.com", "--service-account", "ci-bot")
    code, out, _ = invoke(keys.app, "list", "--json")
    assert code == 0
    listed = json.loads(out)
    assert [row["id"] for row in listed] == [first["id"], second["id"]]
    assert listed[0]["prefix"] == str(first["key"])[3:11]
    assert set(listed[0]) == {
        "id",
        "prefix",
        "owner",
        "service_account",
        "groups",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    }
    code, table, _ = invoke(keys.app, "list")
    assert code == 0
    for created in (first, second):
        assert str(created["id"]) in table
        assert "gk_" + str(created["key"])[3:11] in table
        assert str(created["key"]) not in out + table
    assert "ci-bot" in table and "a, b" in table


def test_revoke(config: Config) -> None:
    created = create("--owner", ALICE)
    code, out, _ = invoke(keys.app, "revoke", str(created["id"]))
    assert code == 0 and f"Revoked {created['id']}" in out
    with pytest.raises(AuthError, match="was revoked"):
        authenticate(config, str(created["key"]))
    [row] = json.loads(invoke(keys.app, "list", "--json")[1])
    assert row["revoked_at"] is not None
    code, _, err = invoke(keys.app, "revoke", "key_nosuchkey00")
    assert code == 1 and "No API key 'key_nosuchkey00'" in err


def test_users_list_deactivate_activate(config: Config) -> None:
    created = create("--owner", ALICE)
    code, out, _ = invoke(users.app, "list", "--json")
    assert code == 0
    [user] = json.loads(out)
    assert user["name"] == ALICE and user["active"] and user["deactivated_at"] is None

    code, out, _ = invoke(users.app, "deactivate", ALICE)
    assert code == 0 and "Deactivated alice@example.com" in out
    with pytest.raises(AuthError) as caught:
        authenticate(config, str(created["key"]))
    assert caught.value.code == "identity_disabled"
    [user] = json.loads(invoke(users.app, "list", "--json")[1])
    assert not user["active"] and user["deactivated_at"] is not None
    code, table, _ = invoke(users.app, "list")
    assert ALICE in table and "no" in table

    code, _, err = invoke(keys.app, "create", "--owner", ALICE)
    assert code == 1 and "users activate alice@example.com" in err

    code, out, _ = invoke(users.app, "activate", ALICE)
    assert code == 0
    assert authenticate(config, str(created["key"])).user == ALICE


def test_unknown_users_are_reported(config: Config) -> None:
    code, _, err = invoke(users.app, "activate", "nobody@example.com")
    assert code == 1
    assert "No user 'nobody@example.com'" in err


def test_a_user_not_seen_yet_can_be_blocked_in_advance(config: Config) -> None:
    code, _, _ = invoke(users.app, "deactivate", "leaver@example.com")
    assert code == 0
    code, out, _ = invoke(users.app, "list", "--json")
    assert {"name": "leaver@example.com", "active": False}.items() <= json.loads(out)[0].items()
    code, _, err = invoke(users.app, "deactivate", "not a name")
    assert code == 1 and "not a user name" in err


def test_an_unusable_state_url_is_reported(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = config.model_copy(update={"gateway": Gateway(state="postgresql://u:pw@h/db")})
    monkeypatch.setattr(keys, "open_config", lambda _path: broken)
    code, _, err = invoke(keys.app, "list")
    assert code == 1
    assert "SQLite only" in err and "pw" not in err


def test_format_duration() -> None:
    assert keys.format_duration(90 * 86400) == "90d"
    assert keys.format_duration(36 * 3600) == "36h"
    assert keys.format_duration(90) == "90s"
    assert keys.format_duration(120) == "2m"
    assert keys.format_duration(1.5) == "1.5s"
