"""Console sign-in: OIDC authorization code with PKCE, SAML 2.0, and the session cookie.

    GET  /login               the sign-in page (one button per configured method)
    GET  /login/oidc          -> the IdP's authorize endpoint (PKCE S256, state, nonce)
    GET  /auth/callback       code -> tokens -> verified ID token -> session
    GET  /saml/metadata       this service provider's metadata, for the IdP administrator
    GET  /saml/login          -> the IdP with a signed-assertion AuthnRequest
    POST /saml/acs            signed assertion -> session
    POST /logout              ends the session
    GET  /                    who is signed in, and the reviews waiting for them
    GET  /reviews/{id}        review_pages.py: a review, and an approver's decision (POST)

A session is a random key in an HttpOnly cookie; the store keeps only its hash, the user and
their groups. A deactivated user cannot sign in, and their open sessions stop at once (every
request checks the directory). The flow's own secrets (PKCE verifier, state, nonce, SAML
request id) live in short-lived HttpOnly cookies bound to the browser that started the flow,
with the page to return to after sign-in (`?next=`, a path on this site only). Every page is
inert (pages.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import logging
import re
import secrets
import shutil
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, Router

from geogate.config import OidcLogin
from geogate.gateway.access import SESSION_COOKIE, Access, Denied, base_url, cookie
from geogate.gateway.pages import PageError, guarded, not_found, page
from geogate.gateway.review_pages import ReviewPages
from geogate.gateway.runtime import Runtime
from geogate.identity import AuthError

if TYPE_CHECKING:
    from geogate.identity.saml import ServiceProvider

log = logging.getLogger(__name__)

_OIDC_FLOW_COOKIE = "geogate_oidc_flow"
_SAML_FLOW_COOKIE = "geogate_saml_flow"
_FLOW_LIFETIME = 600
_TOKEN_TIMEOUT = 10.0


class SignInError(PageError):
    """A sign-in that cannot complete; shown to the person as one sentence."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__("Sign-in failed", message, status)


class Console:
    """The console's routes; an ASGI app the gateway mounts at `/`."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._access = Access(runtime)
        self._login = runtime.config.identity.login
        self._reviews = ReviewPages(runtime, self._access)
        self._providers: dict[str, ServiceProvider] = {}
        self._http: aiohttp.ClientSession | None = None
        if self._login.saml is not None and shutil.which("xmlsec1") is None:
            log.error("SAML sign-in is configured but xmlsec1 is not installed; it will fail")
        routes = [
            Route("/", self._home),
            Route("/login", self._login_page),
            Route("/login/oidc", self._oidc_start),
            Route("/auth/callback", self._oidc_callback),
            Route("/saml/metadata", self._saml_metadata),
            Route("/saml/login", self._saml_start),
            Route("/saml/acs", self._saml_acs, methods=["POST"]),
            Route("/logout", self._logout, methods=["POST"]),
            Route("/reviews/{review_id}", self._reviews.show, methods=["GET"]),
            Route("/reviews/{review_id}", self._reviews.decide, methods=["POST"]),
        ]
        self.app = Router(
            routes=[Route(r.path, guarded(r.endpoint), methods=r.methods) for r in routes],
            default=not_found,
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()

    # --- pages -----------------------------------------------------------------------------

    async def _home(self, request: Request) -> Response:
        try:
            principal = await self._access.principal(
                request.scope["headers"], "GET", request.url.scheme
            )
        except Denied:
            return RedirectResponse("/login", status_code=303)
        groups = ", ".join(sorted(principal.groups)) or "none"
        body = (
            f"<p>Signed in as <b>{html.escape(principal.user)}</b> "
            f"(groups: {html.escape(groups)}).</p>"
            f"{await self._reviews.waiting_for(principal)}"
            '<p>The admin API is at <a href="/api/docs">/api/docs</a>.</p>'
            '<form method="post" action="/logout"><button>Sign out</button></form>'
        )
        return page("GeoGate", body)

    async def _login_page(self, request: Request) -> Response:
        back = _return_path(request.query_params.get("next"))
        query = html.escape("?" + urlencode({"next": back})) if back else ""
        buttons = []
        if self._login.oidc is not None:
            buttons.append(
                f'<p><a href="/login/oidc{query}">Sign in with your identity provider</a></p>'
            )
        if self._login.saml is not None:
            buttons.append(f'<p><a href="/saml/login{query}">Sign in with SAML</a></p>')
        if not buttons:
            buttons.append(
                "<p>Console sign-in is not configured: set identity.login.oidc or "
                "identity.login.saml in the policy file.</p>"
            )
        return page("Sign in to GeoGate", "".join(buttons))

    async def _logout(self, request: Request) -> Response:
        key = cookie(request.scope["headers"], SESSION_COOKIE)
        if key:
            await self._runtime.store.end_session(key)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- OIDC --------------------------------------------------------------------------------

    async def _oidc_start(self, request: Request) -> Response:
        settings = self._oidc_settings()
        authorize = await self._endpoint(settings.issuer, "authorization_endpoint")
        verifier, state, nonce = (secrets.token_urlsafe(48) for _ in range(3))
        query = urlencode(
            {
                "response_type": "code",
                "client_id": settings.client_id,
                "redirect_uri": self._base(request) + "/auth/callback",
                "scope": " ".join(settings.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": _s256(verifier),
                "code_challenge_method": "S256",
            }
        )
        response = RedirectResponse(f"{authorize}?{query}", status_code=303)
        back = _encoded_return(request.query_params.get("next"))
        self._flow_cookie(
            request, response, _OIDC_FLOW_COOKIE, f"{state}.{nonce}.{verifier}.{back}", "/auth"
        )
        return response

    async def _oidc_callback(self, request: Request) -> Response:
        settings = self._oidc_settings()
        params = request.query_params
        if "error" in params:
            raise SignInError(
                f"The identity provider refused the sign-in ({params['error']}: "
                f"{params.get('error_description', 'no details')}).",
                401,
            )
        flow = (cookie(request.scope["headers"], _OIDC_FLOW_COOKIE) or "").split(".")
        state = params.get("state", "")
        if len(flow) != 4 or not hmac.compare_digest(flow[0].encode(), state.encode()):
            raise SignInError(
                "This sign-in was not started from this browser, or took longer than 10 "
                "minutes; start again at /login."
            )
        _, nonce, verifier, back = flow
        form = {
            "grant_type": "authorization_code",
            "code": params.get("code", ""),
            "redirect_uri": self._base(request) + "/auth/callback",
            "code_verifier": verifier,
            "client_id": settings.client_id,
        }
        token_url = await self._endpoint(settings.issuer, "token_endpoint")
        tokens = await self._post_form(token_url, form, settings.client_id, settings.client_secret)
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise SignInError(
                "The identity provider sent no ID token; check the openid scope.", 502
            )
        try:
            verified = await self._runtime.tokens.verify_login(
                id_token, client_id=settings.client_id, nonce=nonce
            )
        except AuthError as exc:
            raise SignInError(exc.message, 401) from None
        response = await self._signed_in(
            request, verified.user, verified.groups, "oidc", _decoded_return(back)
        )
        response.delete_cookie(_OIDC_FLOW_COOKIE, path="/auth")
        return response

    def _oidc_settings(self) -> OidcLogin:
        if self._login.oidc is None:
            raise SignInError("OIDC sign-in is not configured (identity.login.oidc).", 404)
        return self._login.oidc

    async def _endpoint(self, issuer: str, name: str) -> str:
        try:
            return await self._runtime.tokens.endpoint(issuer, name)
        except ValueError as exc:
            raise SignInError(
                f"The identity provider cannot be used right now: {exc}.", 502
            ) from None

    async def _post_form(
        self, url: str, form: dict[str, str], client_id: str, secret: str | None
    ) -> dict[str, object]:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_TOKEN_TIMEOUT), trust_env=False
            )
        headers = {"Accept": "application/json"}
        if secret is not None:  # client_secret_basic: each part form-encoded (RFC 6749 §2.3.1)
            headers["Authorization"] = aiohttp.encode_basic_auth(
                quote(client_id, safe=""), quote(secret, safe="")
            )
        try:
            async with self._http.post(
                url, data=form, headers=headers, allow_redirects=False
            ) as reply:
                answer = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SignInError(
                f"The identity provider's token endpoint failed ({exc}).", 502
            ) from None
        if not isinstance(answer, dict) or reply.status != 200:
            detail = (
                answer.get("error_description") or answer.get("error")
                if isinstance(answer, dict)
                else None
            )
            raise SignInError(
                f"The identity provider refused the code ({detail or reply.status}).", 401
            )
        return answer

    # --- SAML --------------------------------------------------------------------------------

    async def _saml_metadata(self, request: Request) -> Response:
        metadata = self._provider(request).metadata()
        return Response(metadata, media_type="application/samlmetadata+xml")

    async def _saml_start(self, request: Request) -> Response:
        url, request_id = self._provider(request).login(relay_state="/")
        response = RedirectResponse(url, status_code=303)
        back = _encoded_return(request.query_params.get("next"))
        self._flow_cookie(
            request, response, _SAML_FLOW_COOKIE, f"{request_id}.{back}", "/saml", cross_site=True
        )
        return response

    async def _saml_acs(self, request: Request) -> Response:
        provider = self._provider(request)
        form = await request.form()
        saml_response = form.get("SAMLResponse")
        request_id, _, back = (cookie(request.scope["headers"], _SAML_FLOW_COOKIE) or "").partition(
            "."
        )
        if not isinstance(saml_response, str) or not request_id:
            raise SignInError(
                "This SAML sign-in was not started from this browser, or took longer than 10 "
                "minutes; start again at /login."
            )
        try:
            identity = await asyncio.to_thread(provider.accept, saml_response, request_id)
        except _saml().SamlError as exc:
            raise SignInError(str(exc), 401) from None
        if not await self._runtime.store.use_once(
            f"saml:{identity.assertion_id}", identity.expires_at
        ):
            raise SignInError("This SAML assertion was already used; sign in again.", 401)
        response = await self._signed_in(
            request, identity.user, identity.groups, "saml", _decoded_return(back)
        )
        response.delete_cookie(_SAML_FLOW_COOKIE, path="/saml")
        return response

    def _provider(self, request: Request) -> ServiceProvider:
        settings = self._login.saml
        if settings is None:
            raise SignInError("SAML sign-in is not configured (identity.login.saml).", 404)
        base = self._base(request)
        provider = self._providers.get(base)
        if provider is None:
            saml = _saml()
            try:
                provider = saml.ServiceProvider(settings, base)
            except saml.SamlError as exc:
                raise SignInError(str(exc), 500) from None
            self._providers[base] = provider
        return provider

    # --- shared ------------------------------------------------------------------------------

    async def _signed_in(
        self, request: Request, user: str, groups: frozenset[str], method: str, back: str = "/"
    ) -> Response:
        try:
            await self._runtime.directory.check(user)
        except AuthError as exc:
            raise SignInError(exc.message, 403) from None
        store = self._runtime.store
        await store.ensure_users([user], actor=method)
        key = await store.create_session(
            user, groups, method=method, lifetime=self._login.session_lifetime
        )
        response = RedirectResponse(back, status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            key,
            max_age=int(self._login.session_lifetime),
            path="/",
            httponly=True,
            secure=self._secure(request),
            samesite="lax",
        )
        return response

    def _base(self, request: Request) -> str:
        return base_url(self._runtime, request.scope["headers"], request.url.scheme)

    def _secure(self, request: Request) -> bool:
        """Cookies are `Secure` whenever browsers reach the gateway over https.

        Over plain http (a laptop, a test) a `Secure` cookie would be dropped by most clients.
        """
        return urlsplit(self._base(request)).scheme == "https"

    def _flow_cookie(
        self,
        request: Request,
        response: Response,
        name: str,
        value: str,
        path: str,
        *,
        cross_site: bool = False,
    ) -> None:
        """A sign-in flow's secrets; a SAML IdP posts back cross-site, which needs SameSite=None."""
        secure = self._secure(request)
        response.set_cookie(
            name,
            value,
            max_age=_FLOW_LIFETIME,
            path=path,
            httponly=True,
            secure=secure,
            samesite="none" if cross_site and secure else "lax",
        )


def _saml() -> ModuleType:
    """The SAML module, imported on first use: pysaml2 takes over half a second to import."""
    from geogate.identity import saml

    return saml


def _s256(verifier: str) -> str:
    """The PKCE S256 code challenge (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


_RETURN_PATH = re.compile(r"/(?!/)[A-Za-z0-9_\-/]{0,200}")
"""Where a sign-in may send the browser back to: a path on this gateway, nothing a browser
would read as another site (`//evil.example`, `/\\evil.example`, `https:`)."""


def _return_path(value: str | None) -> str | None:
    return value if value is not None and _RETURN_PATH.fullmatch(value) else None


def _encoded_return(value: str | None) -> str:
    """A safe return path for a flow cookie (no `.`, which separates its parts), or ``."""
    back = _return_path(value)
    return "" if back is None else base64.urlsafe_b64encode(back.encode()).decode().rstrip("=")


def _decoded_return(encoded: str) -> str:
    """The return path a flow cookie holds, checked again; `/` when none or not safe."""
    try:
        back = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return "/"
    return _return_path(back) or "/"
