"""The CLI against a remote gateway's admin API (`--gateway`), and `geogate login` / `logout`.

A real gateway runs in-process on a loopback port; `geogate login` signs in through a real
OpenID provider (tests/oidc_idp.py) with the device grant, approved as a person would.
"""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from typer.testing import CliRunner

from geogate.cli import app, login
from tests.gateways import Gateway, run_gateway
from tests.oidc_idp import OidcIdp, running_idp
from tests.servers import run_asgi

ROOT = "root@example.com"
BOB = "bob@example.com"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
POLICY = """
version: 1
gateway:
  region: onprem:test-eu
  state: sqlite:///state.db
regions:
  onprem:test-eu: {jurisdiction: eu, cidrs: [127.0.0.0/8]}
identity:
  api_keys: {max_lifetime: 7d}
"""
OIDC_POLICY = (
    POLICY
    + """  oidc:
    - {issuer: "ISSUER", audience: [geogate, geogate-cli]}
  login:
    oidc:
      issuer: "ISSUER"
      client_id: geogate-console
      cli_client_id: geogate-cli
      scopes: [openid, email, groups]
"""
)
CLI_CLIENT = {
    "client_id": "geogate-cli",
    "token_endpoint_auth_method": "none",
    "grant_types": [DEVICE_GRANT, "refresh_token"],
    "response_types": [],
    "redirect_uris": [],
}
IDP_ACCOUNTS = {
    "root": {"email": "root@corp.example.eu", "groups": ["geogate-admins"]},
    "ann": {"email": "ann@corp.example.eu", "groups": ["support"]},
}

runner = CliRunner()


@pytest.fixture(autouse=True)
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sign-ins go to a file of the test's own; no GEOGATE_* setting leaks in from outside."""
    for name in ("GEOGATE_URL", "GEOGATE_TOKEN", "GEOGATE_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "home" / "geogate" / "credentials.json"
    monkeypatch.setenv("GEOGATE_CREDENTIALS", str(path))
    return path


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[Gateway]:
    (tmp_path / "gateway").mkdir()
    with run_gateway(tmp_path / "gateway", POLICY) as gateway:
        yield gateway


@pytest.fixture
def admin_key(gw: Gateway) -> str:
    return gw.create_key(ROOT, groups=["geogate-admins"])


def geogate(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def remote(gw: Gateway, token: str, *args: str) -> tuple[int, str, str]:
    return geogate(*args, "--gateway", gw.base_url, "--token", token)


def remote_json(gw: Gateway, token: str, *args: str) -> Any:
    code, out, err = remote(gw, token, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def me(gw: Gateway, token: str) -> requests.Response:
    return requests.get(
        f"{gw.base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def me_status(gw: Gateway, token: str, expected: int) -> int:
    """The status of `/api/v1/me` for `token`, waiting for it to become `expected`: gateways
    pick up revocations and (de)activations within a second."""
    deadline = time.monotonic() + 3.0
    while (status := me(gw, token).status_code) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return status


def test_keys_users_and_service_accounts_over_the_admin_api(gw: Gateway, admin_key: str) -> None:
    created = remote_json(
        gw,
        admin_key,
        *("keys", "create", "--owner", BOB, "--service-account", "ci", "--groups", "a, b,"),
    )
    assert list(created)[:2] == ["id", "key"]
    assert (created["owner"], created["service_account"], created["groups"]) == (
        BOB,
        "ci",
        ["a", "b"],
    )
    assert me(gw, created["key"]).json()["subject"] == "sa:ci"

    listed = remote_json(gw, admin_key, "keys", "list")
    assert [key["id"] for key in listed if key["owner"] == BOB] == [created["id"]]
    assert all("key" not in key for key in listed)
    code, table, _ = remote(gw, admin_key, "keys", "list")
    assert code == 0
    assert created["id"] in table and "ci" in table and "a, b" in table
    assert created["key"] not in table

    users = remote_json(gw, admin_key, "users", "list")
    assert {user["name"] for user in users} == {ROOT, BOB}
    [account] = remote_json(gw, admin_key, "service-accounts", "list")
    assert {
        name: account[name] for name in ("name", "owner", "owner_active", "groups", "keys")
    } == {
        "name": "ci",
        "owner": BOB,
        "owner_active": True,
        "groups": ["a", "b"],
        "keys": 1,
    }

    code, out, err = remote(gw, admin_key, "users", "deactivate", BOB)
    assert code == 0, err
    assert f"Deactivated {BOB}" in out
    assert me_status(gw, created["key"], 401) == 401
    code, table, _ = remote(gw, admin_key, "service-accounts", "list")
    assert code == 0 and "ci" in table and BOB in table and "no" in table
    code, _, err = remote(gw, admin_key, "users", "activate", BOB)
    assert code == 0, err
    assert me_status(gw, created["key"], 200) == 200

    code, out, err = remote(gw, admin_key, "keys", "revoke", created["id"])
    assert code == 0 and f"Revoked {created['id']}" in out, err
    assert me_status(gw, created["key"], 401) == 401

    events = requests.get(
        f"{gw.base_url}/api/v1/events",
        params={"subject": BOB},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=10,
    ).json()
    assert {event["kind"] for event in events} >= {"key.created", "user.deactivated"}
    assert {event["actor"] for event in events} == {me(gw, admin_key).json()["subject"]}


def test_both_modes_print_the_same_json(gw: Gateway, admin_key: str, tmp_path: Path) -> None:
    remote_json(gw, admin_key, "keys", "create", "--owner", BOB, "--service-account", "ci")
    policy = str(tmp_path / "gateway" / "geogate.yaml")
    for command in (["keys", "list"], ["users", "list"], ["service-accounts", "list"]):
        code, out, err = geogate(*command, "--json", "--config", policy)
        assert code == 0, err
        local = json.loads(out)
        over_api = remote_json(gw, admin_key, *command)
        for rows in (local, over_api):
            for row in rows:
                row.pop("last_used_at", None)  # the remote call itself uses the admin's key
        assert local == over_api


def test_refusals_show_the_gateways_message(gw: Gateway, admin_key: str) -> None:
    code, out, err = remote(gw, admin_key, "keys", "create", "--owner", BOB, "--expires", "30d")
    assert code == 1 and "gk_" not in out
    assert "identity.api_keys.max_lifetime (7d)" in err
    code, _, err = remote(gw, admin_key, "users", "activate", "nobody@example.com")
    assert code == 1 and "No user 'nobody@example.com'" in err
    code, _, err = remote(gw, admin_key, "keys", "revoke", "key_nosuchkey00")
    assert code == 1 and "No API key 'key_nosuchkey00'" in err
    code, _, err = remote(gw, admin_key, "keys", "create", "--owner", "not a name")
    assert code == 1 and "not a user name" in err
    code, _, err = remote(gw, admin_key, "keys", "create", "--owner", BOB, "--expires", "soon")
    assert code == 1 and "--expires" in err


def test_a_non_admin_is_refused(gw: Gateway) -> None:
    key = gw.create_key(BOB, groups=["support"])
    code, out, err = remote(gw, key, "users", "list")
    assert code == 1 and out == ""
    assert f"{BOB} is not in an admin group (geogate-admins)" in err
    code, _, err = remote(gw, key, "keys", "create", "--owner", BOB)
    assert code == 1 and "not in an admin group" in err
    assert len(gw.key_ids(BOB)) == 1


def test_a_bad_token_points_to_geogate_login(gw: Gateway) -> None:
    code, _, err = remote(gw, "gk_not-a-real-key", "users", "list")
    assert code == 1
    assert f"geogate login --gateway {gw.base_url}" in err and "--token" in err


def test_without_any_token_it_says_how_to_sign_in(gw: Gateway) -> None:
    code, _, err = geogate("users", "list", "--gateway", gw.base_url + "/")
    assert code == 1
    assert f"Not signed in to {gw.base_url}: run `geogate login --gateway {gw.base_url}`" in err


def test_environment_variables_name_gateway_and_token(gw: Gateway, admin_key: str) -> None:
    env = {"GEOGATE_URL": gw.base_url, "GEOGATE_TOKEN": admin_key}
    code, out, err = geogate("users", "list", "--json", env=env)
    assert code == 0, err
    assert [user["name"] for user in json.loads(out)] == [ROOT]


def test_a_gateway_that_is_down(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, _, err = geogate("users", "list", "--gateway", f"http://127.0.0.1:{port}", "--token", "x")
    assert code == 1
    assert f"Cannot reach the gateway at http://127.0.0.1:{port}: the connection was refused" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "url", ["http://gateway.example.com", "http://10.0.0.1:8080", "ftp://127.0.0.1", "gateway"]
)
def test_tokens_never_travel_in_clear(url: str) -> None:
    code, _, err = geogate("users", "list", "--gateway", url, "--token", "gk_secret")
    assert code == 1
    assert "plain http" in err or "is not a URL" in err
    code, _, err = geogate("login", "--gateway", url, "--no-browser")
    assert code == 1
    assert "plain http" in err or "is not a URL" in err


def test_redirects_are_not_followed(admin_key: str) -> None:
    seen: list[str | None] = []

    async def elsewhere(request: Request) -> Response:
        seen.append(request.headers.get("authorization"))
        return JSONResponse([])

    with run_asgi(Starlette(routes=[Route("/{path:path}", elsewhere)])) as other:

        async def redirect(request: Request) -> Response:
            return RedirectResponse(f"{other}{request.url.path}", status_code=307)

        with run_asgi(Starlette(routes=[Route("/{path:path}", redirect)])) as base:
            code, _, err = geogate("users", "list", "--gateway", base, "--token", admin_key)
    assert code == 1
    assert f"redirected to {other}/api/v1/users" in err
    assert seen == []


def test_local_service_accounts_list(tmp_path: Path) -> None:
    policy = tmp_path / "geogate.yaml"
    policy.write_text(POLICY)
    code, _, err = geogate(
        "keys", "create", "--owner", BOB, "--service-account", "ci", "-c", str(policy)
    )
    assert code == 0, err
    code, out, err = geogate("service-accounts", "list", "--json", "-c", str(policy))
    assert code == 0, err
    [account] = json.loads(out)
    assert (account["name"], account["owner"], account["owner_active"], account["keys"]) == (
        "ci",
        BOB,
        True,
        1,
    )


def test_login_needs_a_cli_client(gw: Gateway) -> None:
    code, _, err = geogate("login", "--gateway", gw.base_url, "--no-browser")
    assert code == 1
    assert "identity.login.oidc.cli_client_id" in err


# --- geogate login against a real IdP --------------------------------------------------------


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[OidcIdp]:
    with running_idp(tmp_path / "idp", accounts=IDP_ACCOUNTS, clients=[CLI_CLIENT]) as idp:
        yield idp


@pytest.fixture
def oidc_gw(tmp_path: Path, idp: OidcIdp) -> Iterator[Gateway]:
    (tmp_path / "gateway").mkdir()
    with run_gateway(tmp_path / "gateway", OIDC_POLICY.replace("ISSUER", idp.issuer)) as gateway:
        yield gateway


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch, idp: OidcIdp) -> list[str]:
    """The person at the browser `geogate login` opens: signs in as `root` and confirms."""
    opened: list[str] = []

    def open_page(url: str) -> bool:
        opened.append(url)
        idp.device_login(url, "root")
        return True

    monkeypatch.setattr("webbrowser.open", open_page)
    monkeypatch.setattr(login, "DEFAULT_INTERVAL", 0.05)
    return opened


def saved(credentials: Path) -> dict[str, Any]:
    content: dict[str, Any] = json.loads(credentials.read_text())
    return content


def test_login_use_refresh_and_logout(
    oidc_gw: Gateway, idp: OidcIdp, browser: list[str], credentials: Path
) -> None:
    url = oidc_gw.base_url
    code, out, err = geogate("login", "--gateway", url)
    assert code == 0, err
    [page] = browser
    assert page.startswith(f"{idp.issuer}/") and "user_code=" in page
    assert page in out
    assert f"Signed in to {url} as root@corp.example.eu (admin: yes)." in out

    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert stat.S_IMODE(credentials.parent.stat().st_mode) == 0o700
    entry = saved(credentials)[url]
    assert entry["issuer"] == idp.issuer and entry["client_id"] == "geogate-cli"
    assert entry["token_endpoint"] == idp.token_endpoint and entry["refresh_token"]

    code, out, err = geogate("users", "list", "--gateway", url, "--json")
    assert code == 0, err
    assert isinstance(json.loads(out), list)

    # An expired ID token is refreshed with the refresh token first, and the new one saved.
    expired = idp.sign({"sub": "root", "aud": "geogate-cli", "exp": int(time.time()) - 60})
    stored = saved(credentials)
    stored[url]["id_token"] = expired
    credentials.write_text(json.dumps(stored))
    code, out, err = geogate("keys", "create", "--gateway", url, "--owner", BOB, "--json")
    assert code == 0, err
    refreshed = saved(credentials)[url]
    assert refreshed["id_token"] != expired

    # ... and when the refresh token is no good either, the way out is to sign in again.
    refreshed["id_token"], refreshed["refresh_token"] = expired, "not-a-refresh-token"
    credentials.write_text(json.dumps({url: refreshed}))
    code, _, err = geogate("users", "list", "--gateway", url)
    assert code == 1
    assert f"run `geogate login --gateway {url}` again" in err

    code, out, _ = geogate("logout", "--gateway", url + "/")
    assert code == 0 and f"Signed out of {url}" in out
    assert saved(credentials) == {}
    code, _, err = geogate("users", "list", "--gateway", url)
    assert code == 1 and "Not signed in" in err
    code, out, _ = geogate("logout", "--gateway", url)
    assert code == 0 and "nothing to forget" in out


def test_login_as_a_non_admin(
    oidc_gw: Gateway, idp: OidcIdp, monkeypatch: pytest.MonkeyPatch, credentials: Path
) -> None:
    def open_page(url: str) -> bool:
        idp.device_login(url, "ann")
        return True

    monkeypatch.setattr("webbrowser.open", open_page)
    monkeypatch.setattr(login, "DEFAULT_INTERVAL", 0.05)
    code, out, err = geogate("login", "--gateway", oidc_gw.base_url)
    assert code == 0, err
    assert "as ann@corp.example.eu (admin: no)." in out
    code, _, err = geogate("users", "list", "--gateway", oidc_gw.base_url)
    assert code == 1 and "ann@corp.example.eu is not in an admin group" in err


# --- the device grant's polling rules, against a scripted token endpoint -------------------------


def scripted_idp(answers: list[tuple[int, dict[str, Any]]], polls: list[float]) -> Starlette:
    """An IdP whose token endpoint gives `answers` in turn, recording when it was polled."""
    issuer: list[str] = []

    async def discovery(request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        issuer.append(base)
        return JSONResponse(
            {
                "issuer": base,
                "device_authorization_endpoint": f"{base}/device/auth",
                "token_endpoint": f"{base}/token",
                "scopes_supported": ["openid", "offline_access"],
            }
        )

    async def device(request: Request) -> Response:
        form = await request.form()
        assert form["client_id"] == "geogate-cli"
        assert form["scope"] == "openid email offline_access"
        return JSONResponse(
            {
                "device_code": "dc",
                "user_code": "ABCD-EFGH",
                "verification_uri": f"{issuer[0]}/device",
                "expires_in": 600,
                "interval": 0.05,
            }
        )

    async def token(request: Request) -> Response:
        form = await request.form()
        assert (form["grant_type"], form["device_code"]) == (DEVICE_GRANT, "dc")
        polls.append(time.monotonic())
        status, body = answers.pop(0)
        return JSONResponse(body, status_code=status)

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery),
            Route("/device/auth", device, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
        ]
    )


def login_info_gateway(issuer: str) -> Starlette:
    async def info(_: Request) -> Response:
        return JSONResponse({"issuer": issuer, "cli_client_id": "geogate-cli", "scopes": ["email"]})

    return Starlette(routes=[Route("/api/v1/login-info", info)])


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("access_denied", "The sign-in was denied"),
        ("expired_token", "The code expired"),
        ("invalid_grant", "refused the sign-in: invalid_grant (nope)"),
    ],
)
def test_device_grant_polling(
    monkeypatch: pytest.MonkeyPatch, credentials: Path, error: str, message: str
) -> None:
    monkeypatch.setattr(login, "SLOW_DOWN_STEP", 0.3)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", opened.append)
    polls: list[float] = []
    answers = [
        (400, {"error": "authorization_pending"}),
        (400, {"error": "slow_down"}),
        (400, {"error": error, "error_description": "nope"}),
    ]
    with (
        run_asgi(scripted_idp(answers, polls)) as idp_url,
        run_asgi(login_info_gateway(idp_url)) as gateway,
    ):
        code, out, err = geogate("login", "--gateway", gateway, "--no-browser")
    assert code == 1
    assert message in err
    assert "ABCD-EFGH" in out and f"{idp_url}/device" in out
    assert len(polls) == 3 and answers == []
    assert polls[2] - polls[1] >= 0.3 + 0.05  # slow_down added SLOW_DOWN_STEP to the interval
    assert not credentials.exists()
    assert opened == []  # --no-browser
