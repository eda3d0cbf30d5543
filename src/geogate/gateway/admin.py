"""The admin API under `/api/v1/`, with its OpenAPI document at `/api/openapi.json`.

    curl -H "Authorization: Bearer $ADMIN_TOKEN" http://127.0.0.1:8080/api/v1/users
    curl -X POST -H "Authorization: Bearer $ADMIN_TOKEN" \
        http://127.0.0.1:8080/api/v1/users/alice@example.com/deactivate

Every route but `/api/v1/login-info` needs an admin (see `access.py`); every change is made
through `Accounts`, the same rules the CLI follows, and is an audit event naming the admin.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from geogate.config import parse_duration
from geogate.gateway.access import Access, Admin, Caller, Denied, Refused, error_response
from geogate.gateway.admin_audit import add_audit_routes
from geogate.gateway.admin_reviews import add_review_routes
from geogate.gateway.admin_sessions import add_session_routes
from geogate.gateway.runtime import Runtime
from geogate.identity.accounts import AccountError, Accounts
from geogate.identity.schemas import (
    CreatedKey,
    Event,
    Key,
    LoginInfo,
    Me,
    NewKey,
    ServiceAccount,
    User,
)


def admin_api(runtime: Runtime) -> FastAPI:
    access = Access(runtime)
    accounts = Accounts(runtime.store, runtime.config.identity)
    login = runtime.config.identity.login.oidc
    api = FastAPI(
        title="GeoGate admin API",
        version="1",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
    )

    api.state.access = access

    @api.exception_handler(Denied)
    async def _denied(_request: Request, exc: Denied) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return error_response(exc.status, exc.code, exc.message, headers)

    @api.exception_handler(Refused)
    async def _api_refused(_request: Request, exc: Refused) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message)

    @api.exception_handler(AccountError)
    async def _refused(_request: Request, exc: AccountError) -> JSONResponse:
        return error_response(
            404 if exc.not_found else 400,
            "not_found" if exc.not_found else "bad_request",
            exc.message,
        )

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'][1:]) or 'body'}: {error['msg']}"
            for error in exc.errors()
        )
        return error_response(400, "bad_request", f"The request is not valid: {problems}.")

    @api.get("/api/v1/login-info", tags=["sign-in"])
    async def login_info() -> LoginInfo:
        """Public: the OIDC issuer and client `geogate login` signs in with."""
        return LoginInfo(
            issuer=None if login is None else login.issuer,
            cli_client_id=None if login is None else login.cli_client_id,
            scopes=[] if login is None else login.scopes,
        )

    @api.get("/api/v1/me", tags=["sign-in"])
    async def me(principal: Caller) -> Me:
        """Who the credential or session belongs to, and whether it has admin rights."""
        return Me(
            subject=principal.subject,
            user=principal.user,
            groups=sorted(principal.groups),
            method=principal.method,
            admin=bool(principal.groups & set(runtime.config.identity.admin_groups)),
        )

    @api.get("/api/v1/users", tags=["users"])
    async def list_users(_: Admin) -> list[User]:
        return [User.model_validate(user) for user in await accounts.list_users()]

    @api.post("/api/v1/users/{name}/deactivate", tags=["users"])
    async def deactivate(name: str, principal: Admin) -> User:
        """Every credential of the user, and of service accounts they own, stops at once."""
        await accounts.set_active(name, False, actor=principal.subject)
        return await _user(name)

    @api.post("/api/v1/users/{name}/activate", tags=["users"])
    async def activate(name: str, principal: Admin) -> User:
        await accounts.set_active(name, True, actor=principal.subject)
        return await _user(name)

    @api.get("/api/v1/users/{name}", tags=["users"])
    async def get_user(name: str, _: Admin) -> User:
        return await _user(name)

    async def _user(name: str) -> User:
        info = await runtime.store.find_user(name)
        if info is None:
            raise AccountError(f"No user {name!r}.", not_found=True)
        return User.model_validate(info)

    @api.get("/api/v1/keys", tags=["keys"])
    async def list_keys(_: Admin) -> list[Key]:
        return [Key.model_validate(key) for key in await accounts.list_keys()]

    @api.post("/api/v1/keys", status_code=201, tags=["keys"])
    async def create_key(new: NewKey, principal: Admin) -> CreatedKey:
        try:
            lifetime = None if new.expires is None else parse_duration(new.expires)
        except ValueError as exc:
            raise AccountError(f"expires: {exc}") from None
        created = await accounts.create_key(
            new.owner,
            lifetime=lifetime,
            actor=principal.subject,
            groups=new.groups,
            service_account=new.service_account,
        )
        return CreatedKey(key=created.key, **Key.model_validate(created.info).model_dump())

    @api.delete("/api/v1/keys/{key_id}", status_code=204, tags=["keys"])
    async def revoke_key(key_id: str, principal: Admin) -> None:
        """Revoke for good; gateways refuse the key within a second."""
        await accounts.revoke_key(key_id, actor=principal.subject)

    @api.get("/api/v1/service-accounts", tags=["keys"])
    async def list_service_accounts(_: Admin) -> list[ServiceAccount]:
        return [
            ServiceAccount.model_validate(info) for info in await accounts.list_service_accounts()
        ]

    @api.get("/api/v1/events", tags=["audit"])
    async def list_events(
        _: Admin,
        kind: Annotated[
            str | None, Query(description="`user.deactivated`, or a family: `user.`")
        ] = None,
        subject: str | None = None,
        since: datetime | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> list[Event]:
        """Identity audit events: (de)activations, SCIM changes, keys, sign-ins, refusals."""
        events = await runtime.store.list_events(
            kind=kind, subject=subject, since=since, limit=limit
        )
        return [Event.model_validate(event) for event in events]

    add_audit_routes(api, runtime)
    add_session_routes(api, runtime)
    add_review_routes(api, runtime)
    return api
