"""`geogate login` and `geogate logout`: sign in to a remote gateway as yourself.

    geogate login --gateway https://gw.example.eu
    geogate users list --gateway https://gw.example.eu     # as the signed-in person

The gateway names its IdP and public CLI client (`GET /api/v1/login-info`); sign-in is the OAuth
2.0 device authorization grant (RFC 8628): the person confirms a code in any browser, so it works
over SSH too. The ID token (and a refresh token) are saved per gateway in the credentials file
(see `geogate.cli.admin.credentials_path`), readable by the owner only.
"""

from __future__ import annotations

import time
import webbrowser
from typing import Annotated, Any

import typer

from geogate.cli.admin import (
    AdminError,
    Row,
    checked_url,
    gateway_message,
    gateway_url,
    http_json,
    load_credentials,
    save_credentials,
)
from geogate.cli.common import fail

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0
"""Seconds between polls when the IdP names none (RFC 8628 §3.2)."""
SLOW_DOWN_STEP = 5.0
"""Seconds added to the interval on each `slow_down` (RFC 8628 §3.5)."""

LoginGateway = Annotated[
    str,
    typer.Option(
        "--gateway",
        help="The gateway to sign in to, e.g. https://gw.example.eu.",
        envvar="GEOGATE_URL",
    ),
]


def login(
    gateway: LoginGateway,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Only print the sign-in page; do not open it.")
    ] = False,
) -> None:
    """Sign in through the gateway's identity provider and save the token for later commands."""
    try:
        url = gateway_url(gateway)
        info = _login_info(url)
        issuer, client_id = info["issuer"], info["cli_client_id"]
        metadata = _discover(issuer)
        scopes = _scopes(info.get("scopes"), metadata.get("scopes_supported"))
        token_endpoint = checked_url(metadata["token_endpoint"], "The IdP's token_endpoint")
        tokens = _device_grant(
            issuer,
            checked_url(
                metadata["device_authorization_endpoint"],
                "The IdP's device_authorization_endpoint",
            ),
            token_endpoint,
            client_id,
            scopes,
            open_browser=not no_browser,
        )
        me = _me(url, tokens["id_token"])
        saved = load_credentials()
        saved[url] = {
            "issuer": issuer,
            "client_id": client_id,
            "id_token": tokens["id_token"],
            "refresh_token": tokens.get("refresh_token"),
            "token_endpoint": token_endpoint,
        }
        save_credentials(saved)
    except AdminError as exc:
        fail(exc.message)
    admin = "yes" if me.get("admin") else "no"
    typer.echo(f"Signed in to {url} as {me.get('user')} (admin: {admin}).")


def logout(gateway: LoginGateway) -> None:
    """Forget the token `geogate login` saved for a gateway."""
    url = gateway.strip().rstrip("/")
    try:
        saved = load_credentials()
        if saved.pop(url, None) is None:
            typer.echo(f"Not signed in to {url}; nothing to forget.")
            return
        save_credentials(saved)
    except AdminError as exc:
        fail(exc.message)
    typer.echo(f"Signed out of {url}: its saved token is forgotten.")


def _login_info(url: str) -> Row:
    status, info = http_json("GET", f"{url}/api/v1/login-info", what=f"the gateway at {url}")
    if status != 200 or not isinstance(info, dict):
        raise AdminError(gateway_message(url, status, info))
    if not (isinstance(info.get("issuer"), str) and isinstance(info.get("cli_client_id"), str)):
        raise AdminError(
            f"{url} does not offer CLI sign-in: its policy file needs "
            "identity.login.oidc.cli_client_id (a public client allowed the device grant). "
            "Meanwhile pass an admin's API key with --token."
        )
    return info


def _discover(issuer: str) -> Row:
    """The IdP's OpenID discovery document, checked to be the issuer's own."""
    base = checked_url(issuer, "The gateway's OIDC issuer").rstrip("/")
    what = f"the identity provider at {issuer}"
    status, metadata = http_json("GET", f"{base}/.well-known/openid-configuration", what=what)
    if status != 200 or not isinstance(metadata, dict):
        raise AdminError(f"{what} has no OpenID discovery document (HTTP {status}).")
    if str(metadata.get("issuer", "")).rstrip("/") != issuer.rstrip("/"):
        raise AdminError(
            f"{what} names itself {metadata.get('issuer')!r} in its discovery document; "
            "identity.login.oidc.issuer must be exactly that."
        )
    if not isinstance(metadata.get("device_authorization_endpoint"), str):
        raise AdminError(
            f"{what} does not offer the device authorization grant that `geogate login` uses; "
            "enable it for the CLI client, or pass an admin's API key with --token."
        )
    if not isinstance(metadata.get("token_endpoint"), str):
        raise AdminError(f"{what} names no token_endpoint in its discovery document.")
    return metadata


def _scopes(wanted: Any, supported: Any) -> str:
    """The gateway's scopes, with `openid` (for the ID token) and, where offered, `offline_access`
    (for a refresh token)."""
    scopes = (
        [scope for scope in wanted if isinstance(scope, str)] if isinstance(wanted, list) else []
    )
    if "openid" not in scopes:
        scopes.insert(0, "openid")
    if (
        isinstance(supported, list)
        and "offline_access" in supported
        and "offline_access" not in scopes
    ):
        scopes.append("offline_access")
    return " ".join(scopes)


def _device_grant(
    issuer: str,
    device_endpoint: str,
    token_endpoint: str,
    client_id: str,
    scopes: str,
    *,
    open_browser: bool,
) -> Row:
    """RFC 8628: get a code, let the person confirm it, poll until the tokens come."""
    what = f"the identity provider at {issuer}"
    status, started = http_json(
        "POST", device_endpoint, what=what, form={"client_id": client_id, "scope": scopes}
    )
    if status != 200 or not isinstance(started, dict) or "device_code" not in started:
        raise AdminError(f"{what} refused to start the sign-in: {_oauth_error(started, status)}")
    page = started.get("verification_uri_complete") or started.get("verification_uri")
    code = started.get("user_code")
    if started.get("verification_uri_complete"):
        typer.echo(f"To sign in, open this page and check that it shows the code {code}:")
    else:
        typer.echo(f"To sign in, open this page and enter the code {code}:")
    typer.echo(f"\n    {page}\n")
    typer.echo("Waiting for you to sign in...")
    if open_browser and isinstance(page, str):
        webbrowser.open(page)
    interval = _positive(started.get("interval"), DEFAULT_INTERVAL)
    deadline = time.monotonic() + _positive(started.get("expires_in"), 600.0)
    expired = "The code expired before the sign-in was confirmed; run geogate login again."
    poll = {
        "grant_type": DEVICE_GRANT,
        "device_code": started["device_code"],
        "client_id": client_id,
    }
    while True:
        time.sleep(interval)
        if time.monotonic() > deadline:
            raise AdminError(expired)
        status, answer = http_json("POST", token_endpoint, what=what, form=poll)
        if status == 200 and isinstance(answer, dict):
            if not isinstance(answer.get("id_token"), str):
                raise AdminError(f"{what} issued no ID token; the scopes must include openid.")
            return answer
        error = answer.get("error") if isinstance(answer, dict) else None
        if error == "authorization_pending":
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
            continue
        if error == "expired_token":
            raise AdminError(expired)
        if error == "access_denied":
            raise AdminError("The sign-in was denied at the identity provider.")
        raise AdminError(f"{what} refused the sign-in: {_oauth_error(answer, status)}")


def _me(url: str, id_token: str) -> Row:
    status, me = http_json("GET", f"{url}/api/v1/me", what=f"the gateway at {url}", token=id_token)
    if status != 200 or not isinstance(me, dict):
        raise AdminError(
            f"{url} does not accept the new sign-in: {gateway_message(url, status, me)} "
            "(its identity.oidc must trust the issuer with the CLI client id in its audience)."
        )
    return me


def _oauth_error(answer: Any, status: int) -> str:
    """An OAuth error response (`error`, `error_description`) as one phrase."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        description = answer.get("error_description")
        return f"{answer['error']} ({description})" if description else str(answer["error"])
    return f"HTTP {status}"


def _positive(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return default
