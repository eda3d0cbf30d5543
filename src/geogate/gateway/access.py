"""Who may use the admin API, SCIM and the console, outside the data path.

The same credentials as the data path (API keys, OIDC tokens) are accepted as a bearer token,
and so is a console session cookie. Admin rights come from membership of one of
`identity.admin_groups`; SCIM additionally accepts its own bearer token (`identity.scim.token`),
which grants SCIM and nothing else.

A cookie is sent by the browser on its own, so a state-changing request authenticated by one
must come from the gateway's own pages: its `Origin` must be the gateway's (CSRF defence on top
of the cookie's `SameSite=Lax`).
"""

from __future__ import annotations

import hmac
from http.cookies import CookieError, SimpleCookie
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from geogate.gateway.headers import Headers, caller_token
from geogate.gateway.runtime import Runtime
from geogate.identity import AuthError, Principal

SESSION_COOKIE = "geogate_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class Denied(Exception):
    """Access refused: 401 (who are you?), 403 (not allowed) or 503 (cannot tell)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def header(headers: Headers, name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def cookie(headers: Headers, name: str) -> str | None:
    raw = header(headers, b"cookie")
    if raw is None:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:
        return None
    morsel = jar.get(name)
    return None if morsel is None else morsel.value


def base_url(runtime: Runtime, headers: Headers, scheme: str) -> str:
    """The URL browsers reach this gateway at: `gateway.public_url`, else the request's Host."""
    if runtime.config.gateway.public_url is not None:
        return runtime.config.gateway.public_url.rstrip("/")
    host = header(headers, b"host") or runtime.config.gateway.listen
    return f"{scheme}://{host}"


class Access:
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        scim = runtime.config.identity.scim
        self._scim_token = None if scim is None else scim.token.encode()
        self._admin_groups = frozenset(runtime.config.identity.admin_groups)

    async def principal(self, headers: Headers, method: str, scheme: str) -> Principal:
        """The caller, from a bearer credential or a console session; `Denied` if neither."""
        token = caller_token(headers)
        try:
            if token:
                return await self._runtime.authenticator.authenticate(token)
            session_key = cookie(headers, SESSION_COOKIE)
            if session_key:
                principal = await self._session(session_key)
                if method not in _SAFE_METHODS:
                    self._check_origin(headers, scheme)
                return principal
        except AuthError as exc:
            status = 503 if exc.code == "identity_unavailable" else 401
            raise Denied(status, exc.code, exc.message) from None
        raise Denied(
            401,
            "unauthenticated",
            "Sign in: send an admin's API key or OIDC token as `Authorization: Bearer ...`, "
            "or sign in to the console at /login.",
        )

    async def admin(self, headers: Headers, method: str, scheme: str) -> Principal:
        principal = await self.principal(headers, method, scheme)
        if not principal.groups & self._admin_groups:
            raise Denied(
                403,
                "forbidden",
                f"{principal.subject} is not in an admin group "
                f"({', '.join(sorted(self._admin_groups))}); ask an administrator.",
            )
        return principal

    async def scim(self, headers: Headers, method: str, scheme: str) -> str:
        """The actor for a SCIM request: `scim` for the IdP's token, else an admin's subject."""
        token = caller_token(headers)
        if (
            token
            and self._scim_token is not None
            and hmac.compare_digest(token.encode(), self._scim_token)
        ):
            return "scim"
        return (await self.admin(headers, method, scheme)).subject

    async def _session(self, key: str) -> Principal:
        record = await self._runtime.store.find_session(key)
        if record is None:
            raise AuthError(
                "unauthenticated", "Your console session has ended; sign in again at /login."
            )
        await self._runtime.directory.check(record.user)
        return Principal(
            subject=record.user,
            user=record.user,
            groups=record.groups | self._runtime.directory.groups_of(record.user),
            service_account=None,
            method="session",
            credential_id=None,
        )

    def _check_origin(self, headers: Headers, scheme: str) -> None:
        origin = header(headers, b"origin")
        expected = urlsplit(base_url(self._runtime, headers, scheme))
        seen = urlsplit(origin or "")
        if (seen.scheme, seen.netloc) != (expected.scheme, expected.netloc):
            raise AuthError(
                "unauthenticated",
                "A console session may only change things from the console's own pages "
                "(cross-site request refused); use an API token for scripts.",
            )


async def _caller(request: Request) -> Principal:
    access: Access = request.app.state.access
    return await access.principal(request.scope["headers"], request.method, request.url.scheme)


async def _admin(request: Request) -> Principal:
    access: Access = request.app.state.access
    return await access.admin(request.scope["headers"], request.method, request.url.scheme)


Caller = Annotated[Principal, Depends(_caller)]
"""Anyone signed in (a credential or a console session)."""
Admin = Annotated[Principal, Depends(_admin)]
"""A signed-in member of one of `identity.admin_groups`."""


class Refused(Exception):
    """An admin API refusal (404, 409, ...) that becomes `error_response`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An admin API error in GeoGate's error shape."""
    return JSONResponse(
        {"error": {"type": "geogate", "code": code, "message": message}},
        status_code=status,
        headers=headers,
    )
