"""Where `keys`, `users` and `service-accounts` act: the local state store or a remote gateway.

    admin = admin_for(lambda: open_config(path), gateway=None, token=None)  # operator on the host
    admin = admin_for(load, gateway="https://gw.example.eu", token=None)     # `geogate login` token
    rows = admin.list_keys()  # shaped like `GET /api/v1/keys`, whichever mode

Both modes answer with the admin API's JSON shapes, so the commands print them one way. A remote
call sends the token as `Authorization: Bearer`, follows no redirects (a redirect could carry the
token elsewhere) and only goes over https, or plain http to a loopback address. The token saved by
`geogate login` lives in the credentials file, per gateway; an expired one is refreshed here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from pydantic import BaseModel

from geogate.cli.common import fail
from geogate.config import Config, is_loopback, parse_duration
from geogate.files import replace_atomically
from geogate.identity.accounts import AccountError, Accounts
from geogate.identity.schemas import Key, ServiceAccount, User
from geogate.store import StoreError, open_store

T = TypeVar("T")
Row = dict[str, Any]

HTTP_TIMEOUT = 30.0
EXPIRY_MARGIN = 30.0
"""Refresh a saved token this many seconds before it expires, so it does not expire in flight."""
CREDENTIALS_ENV = "GEOGATE_CREDENTIALS"


class AdminError(Exception):
    """A refused or failed admin action; the message says what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Admin(Protocol):
    """The account actions of both modes: rows are the admin API's JSON, refusals `AdminError`."""

    def list_users(self) -> list[Row]: ...

    def set_active(self, user: str, active: bool) -> None: ...

    def list_keys(self) -> list[Row]: ...

    def create_key(
        self, owner: str, service_account: str | None, groups: list[str], expires: str | None
    ) -> Row:
        """The new key's row with `key`, the clear key, which is shown this once."""
        ...

    def revoke_key(self, key_id: str) -> None: ...

    def list_service_accounts(self) -> list[Row]: ...


def admin_for(load_config: Callable[[], Config], gateway: str | None, token: str | None) -> Admin:
    """The remote gateway when `gateway` is given, else the local store of the policy file.

    The policy file is only read for the local store: a remote admin needs none on their machine.
    Without `token`, the one `geogate login` saved for `gateway` is used.
    """
    if not gateway:
        return LocalAdmin(load_config())
    url = gateway_url(gateway)
    return RemoteAdmin(url, token if token else saved_token(url))


def act(
    load_config: Callable[[], Config],
    gateway: str | None,
    token: str | None,
    action: Callable[[Admin], T],
) -> T:
    """`action` on `admin_for(...)`; a refusal is printed and exits 1."""
    try:
        return action(admin_for(load_config, gateway, token))
    except AdminError as exc:
        fail(exc.message)


class LocalAdmin:
    """`Accounts` on the policy file's state store, as the operator `cli`."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def list_users(self) -> list[Row]:
        return [_row(User, user) for user in self._run(lambda accounts: accounts.list_users())]

    def set_active(self, user: str, active: bool) -> None:
        self._run(lambda accounts: accounts.set_active(user, active, actor="cli"))

    def list_keys(self) -> list[Row]:
        return [_row(Key, key) for key in self._run(lambda accounts: accounts.list_keys())]

    def create_key(
        self, owner: str, service_account: str | None, groups: list[str], expires: str | None
    ) -> Row:
        try:
            lifetime = None if expires is None else parse_duration(expires)
        except ValueError as exc:
            raise AdminError(f"expires: {exc}") from None
        created = self._run(
            lambda accounts: accounts.create_key(
                owner,
                lifetime=lifetime,
                actor="cli",
                groups=groups,
                service_account=service_account,
            )
        )
        return {**_row(Key, created.info), "key": created.key}

    def revoke_key(self, key_id: str) -> None:
        self._run(lambda accounts: accounts.revoke_key(key_id, actor="cli"))

    def list_service_accounts(self) -> list[Row]:
        accounts = self._run(lambda accounts: accounts.list_service_accounts())
        return [_row(ServiceAccount, account) for account in accounts]

    def _run(self, action: Callable[[Accounts], Awaitable[T]]) -> T:
        async def run() -> T:
            async with await open_store(self._config.gateway.state) as store:
                return await action(Accounts(store, self._config.identity))

        try:
            return asyncio.run(run())
        except (AccountError, StoreError) as exc:
            raise AdminError(str(exc)) from None


class RemoteAdmin:
    """A gateway's admin API (`/api/v1/`), as the identity of `token`."""

    def __init__(self, url: str, token: str) -> None:
        self._url = url
        self._token = token

    def list_users(self) -> list[Row]:
        return self._rows(self._call("GET", "/api/v1/users"))

    def set_active(self, user: str, active: bool) -> None:
        action = "activate" if active else "deactivate"
        self._call("POST", f"/api/v1/users/{quote(user, safe='')}/{action}")

    def list_keys(self) -> list[Row]:
        return self._rows(self._call("GET", "/api/v1/keys"))

    def create_key(
        self, owner: str, service_account: str | None, groups: list[str], expires: str | None
    ) -> Row:
        body = {
            "owner": owner,
            "service_account": service_account,
            "groups": groups,
            "expires": expires,
        }
        created = self._call("POST", "/api/v1/keys", body)
        if not isinstance(created, dict) or "key" not in created:
            raise AdminError(f"{self._url} answered a new key without the key; is it GeoGate?")
        return created

    def revoke_key(self, key_id: str) -> None:
        self._call("DELETE", f"/api/v1/keys/{quote(key_id, safe='')}")

    def list_service_accounts(self) -> list[Row]:
        return self._rows(self._call("GET", "/api/v1/service-accounts"))

    def _call(self, method: str, path: str, body: Row | None = None) -> Any:
        status, answer = http_json(
            method,
            self._url + path,
            what=f"the gateway at {self._url}",
            token=self._token,
            body=body,
        )
        if status < 400:
            return answer
        message = gateway_message(self._url, status, answer)
        if status == 401:
            message += (
                f" Run `geogate login --gateway {self._url}` to sign in again, "
                "or pass an admin's token with --token (or GEOGATE_TOKEN)."
            )
        raise AdminError(message)

    def _rows(self, answer: Any) -> list[Row]:
        if not isinstance(answer, list) or not all(isinstance(row, dict) for row in answer):
            raise AdminError(
                f"{self._url} answered with something other than a list; is it GeoGate?"
            )
        return answer


def gateway_message(url: str, status: int, answer: Any) -> str:
    """The `{"error": {"message"}}` of a GeoGate answer, or a sentence about the status."""
    error = answer.get("error") if isinstance(answer, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    return f"{url} answered HTTP {status} without a GeoGate error; is the URL a GeoGate gateway?"


def gateway_url(url: str) -> str:
    """A `--gateway` URL as sign-ins are saved under: checked, without a trailing slash."""
    checked = checked_url(url, "--gateway")
    parts = urlsplit(checked)
    if parts.query or parts.fragment:
        raise AdminError(f"--gateway {url} has a query or fragment; give the gateway's base URL.")
    return checked.rstrip("/")


def checked_url(url: str, name: str) -> str:
    """`url` if tokens may travel to it: https, or plain http to a loopback address."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        host = None
    if host is None or parts.scheme not in ("https", "http"):
        raise AdminError(f"{name} {url!r} is not a URL such as https://gateway.example.com.")
    if parts.scheme == "http" and not is_loopback(host):
        raise AdminError(
            f"{name} {url} uses plain http, which would send tokens in clear; use https "
            "(plain http is only allowed to 127.0.0.1, ::1 or localhost)."
        )
    return url.strip()


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could send the token to another host: answer it as it is instead."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects())


def http_json(
    method: str,
    url: str,
    *,
    what: str,
    token: str | None = None,
    body: Row | None = None,
    form: dict[str, str] | None = None,
) -> tuple[int, Any]:
    """(status, parsed JSON or None for an empty body); unreachable or non-JSON -> `AdminError`.

    `what` names the server in messages ("the gateway at URL"). Error statuses are returned, not
    raised, because the gateway and OAuth servers shape their errors differently.
    """
    headers = {"Accept": "application/json", "User-Agent": "geogate-cli"}
    data: bytes | None = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    elif form is not None:
        data = urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    # Every caller passes `url` through `checked_url` first: https, or http to loopback only.
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with _opener.open(request, timeout=HTTP_TIMEOUT) as response:
            status, raw, location = response.status, response.read(), None
    except urllib.error.HTTPError as exc:
        status, raw, location = exc.code, exc.read(), exc.headers.get("Location")
    except urllib.error.URLError as exc:
        raise AdminError(_unreachable(what, exc.reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise AdminError(_unreachable(what, exc)) from None
    if 300 <= status < 400:
        raise AdminError(
            f"{what} redirected to {location}; redirects are not followed so that tokens go "
            "nowhere else: use the final URL."
        )
    if not raw:
        return status, None
    try:
        return status, json.loads(raw)
    except ValueError:
        raise AdminError(
            f"{what} answered HTTP {status} with something other than JSON; is the URL right?"
        ) from None


def _unreachable(what: str, reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return (
            f"Cannot reach {what}: the connection was refused; is it running, and is the URL right?"
        )
    if isinstance(reason, TimeoutError):
        return f"Cannot reach {what}: no answer within {HTTP_TIMEOUT:g} s."
    if isinstance(reason, socket.gaierror):
        return f"Cannot reach {what}: its host name does not resolve; is the URL right?"
    return f"Cannot reach {what}: {reason}."


def credentials_path() -> Path:
    """`$GEOGATE_CREDENTIALS`, else `$XDG_CONFIG_HOME/geogate/credentials.json` (~/.config)."""
    explicit = os.environ.get(CREDENTIALS_ENV)
    if explicit:
        return Path(explicit)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "geogate" / "credentials.json"


def load_credentials() -> dict[str, Row]:
    """Saved sign-ins by gateway URL; none when the file does not exist."""
    path = credentials_path()
    try:
        saved = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AdminError(
            f"Cannot read the saved sign-ins in {path} ({exc}); delete it and run geogate login."
        ) from None
    if not isinstance(saved, dict):
        raise AdminError(f"{path} is not a GeoGate credentials file; delete it and sign in again.")
    return {url: entry for url, entry in saved.items() if isinstance(entry, dict)}


def save_credentials(saved: dict[str, Row]) -> Path:
    """Replace the credentials file in one step, readable by its owner only."""
    path = credentials_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    replace_atomically(path, json.dumps(saved, indent=2).encode(), 0o600)
    return path


def saved_token(gateway: str) -> str:
    """The ID token `geogate login` saved for `gateway`, refreshed first if it has expired."""
    saved = load_credentials()
    entry = saved.get(gateway)
    if entry is None or not isinstance(entry.get("id_token"), str):
        raise AdminError(
            f"Not signed in to {gateway}: run `geogate login --gateway {gateway}`, "
            "or pass an admin's token with --token (or GEOGATE_TOKEN)."
        )
    token: str = entry["id_token"]
    expires = token_expiry(token)
    if expires is None or expires > time.time() + EXPIRY_MARGIN:
        return token
    again = f"Your sign-in to {gateway} has expired; run `geogate login --gateway {gateway}` again."
    refresh_token, token_endpoint, client_id = (
        entry.get("refresh_token"),
        entry.get("token_endpoint"),
        entry.get("client_id"),
    )
    if not (
        isinstance(refresh_token, str)
        and isinstance(token_endpoint, str)
        and isinstance(client_id, str)
    ):
        raise AdminError(again)
    try:
        status, answer = http_json(
            "POST",
            checked_url(token_endpoint, "The token endpoint"),
            what=f"the identity provider at {entry.get('issuer')}",
            form={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": client_id,
            },
        )
    except AdminError as exc:
        raise AdminError(f"{exc.message} {again}") from None
    if status != 200 or not isinstance(answer, dict) or not isinstance(answer.get("id_token"), str):
        raise AdminError(again)
    entry["id_token"] = answer["id_token"]
    if isinstance(answer.get("refresh_token"), str):
        entry["refresh_token"] = answer["refresh_token"]
    save_credentials(saved)
    return str(answer["id_token"])


def token_expiry(token: str) -> float | None:
    """The `exp` of a JWT, read without verifying it (the gateway verifies); None if unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def parse_time(value: object) -> datetime | None:
    """A time from a row, for tables; None when absent."""
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def _row(view: type[BaseModel], record: object) -> Row:
    """A store record as the admin API would send it."""
    return view.model_validate(record).model_dump(mode="json")
