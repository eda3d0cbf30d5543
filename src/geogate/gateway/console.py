"""Console sign-in: OIDC authorization code with PKCE, SAML 2.0, and the session cookie.

    GET  /login               the sign-in page (one button per configured method)
    GET  /login/oidc          -> the IdP's authorize endpoint (PKCE S256, state, nonce)
    GET  /auth/callback       code -> tokens -> verified ID token -> session
    GET  /saml/metadata       this service provider's metadata, for the IdP administrator
    GET  /saml/login          -> the IdP with a signed-assertion AuthnRequest
    POST /saml/acs            signed assertion -> session
    POST /logout              ends the session
    GET  /                    who is signed in (the full console comes later)
    GET  /reviews/{id}        a review, as Slack messages and `approval_required` errors link it
    POST /reviews/{id}        an approver's decision (`decision=approve|deny&reason=...`)

A session is a random key in an HttpOnly cookie; the store keeps only its hash, the user and
their groups. A deactivated user cannot sign in, and their open sessions stop at once (every
request checks the directory). The flow's own secrets (PKCE verifier, state, nonce, SAML
request id) live in short-lived HttpOnly cookies bound to the browser that started the flow.

Every page is inert: a Content-Security-Policy lets nothing load or run, forms post only here,
and no other site may frame a page (an approve button under someone else's page is the
clickjacking attack). A decision posted with the session cookie must carry the gateway's own
`Origin` (see access.py); everything a review shows came from a caller and is escaped.
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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import aiohttp
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route, Router
from starlette.types import Receive, Scope, Send

from geogate.config import OidcLogin
from geogate.gateway.access import SESSION_COOKIE, Access, Denied, base_url, cookie
from geogate.gateway.runtime import Runtime
from geogate.identity import AuthError, Principal
from geogate.reviews import NotAllowed, may_see, refusal_to_decide
from geogate.store import ReviewConflict, ReviewRow
from geogate.store.reviews import PENDING

if TYPE_CHECKING:
    from geogate.identity.saml import ServiceProvider

log = logging.getLogger(__name__)

_OIDC_FLOW_COOKIE = "geogate_oidc_flow"
_WAITING_SHOWN = 50
_SAML_FLOW_COOKIE = "geogate_saml_flow"
_FLOW_LIFETIME = 600
_TOKEN_TIMEOUT = 10.0
_DECISION_FORM_LIMIT = 16 * 1024
"""The largest review decision read: a reason of `_REASON_CHARS` fits, percent-encoded."""
_REASON_CHARS = 1000
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class PageError(Exception):
    """A request the console refuses; shown as a short page that says why, never a traceback.

    `back` is a path of this site to link to (the review the person came from).
    """

    def __init__(self, title: str, message: str, status: int, back: str | None = None) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.status = status
        self.back = back


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
        self._admin_groups = frozenset(runtime.config.identity.admin_groups)
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
            Route("/reviews/{review_id}", self._review_page, methods=["GET"]),
            Route("/reviews/{review_id}", self._review_decide, methods=["POST"]),
        ]
        self.app = Router(
            routes=[Route(r.path, _guarded(r.endpoint), methods=r.methods) for r in routes],
            default=_not_found,
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
            f"{await self._waiting_for(principal)}"
            '<p>The admin API is at <a href="/api/docs">/api/docs</a>.</p>'
            '<form method="post" action="/logout"><button>Sign out</button></form>'
        )
        return _page("GeoGate", body)

    async def _waiting_for(self, principal: Principal) -> str:
        """The pending reviews this person may decide: where a sign-in from a review link
        lands, so the approver is one click from the call that asked."""
        await self._runtime.reviews.sweep()
        rows = await self._runtime.store.reviews.find(status=PENDING, limit=_WAITING_SHOWN)
        waiting = [row for row in rows if refusal_to_decide(row, principal) is None]
        if not waiting:
            return "<p>No review is waiting for you.</p>"
        items = "".join(
            f'<li><a href="{_review_path(row.id)}">{html.escape(row.id)}</a>: '
            f"{html.escape(row.subject)} on {html.escape(row.connection)} "
            f"(policy {html.escape(row.policy)})</li>"
            for row in waiting
        )
        return f"<h2>Reviews waiting for you</h2><ul>{items}</ul>"

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
        return _page("Sign in to GeoGate", "".join(buttons))

    async def _logout(self, request: Request) -> Response:
        key = cookie(request.scope["headers"], SESSION_COOKIE)
        if key:
            await self._runtime.store.end_session(key)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    # --- reviews -----------------------------------------------------------------------------

    async def _review_page(self, request: Request) -> Response:
        """A review as its caller, its approvers and admins see it; approvers decide here."""
        try:
            principal = await self._access.principal(
                request.scope["headers"], "GET", request.url.scheme
            )
        except Denied as denied:
            if denied.status == 401:
                back = _review_path(request.path_params["review_id"])
                return RedirectResponse(f"/login?{urlencode({'next': back})}", status_code=303)
            raise PageError("Review unavailable", denied.message, denied.status) from None
        row = await self._visible_review(request.path_params["review_id"], principal)
        return _page(f"Review {row.id}", _review_body(row, principal, datetime.now(UTC)))

    async def _review_decide(self, request: Request) -> Response:
        """Approve or deny as the signed-in person, then back to the review (post/redirect/get).

        Authenticated as a change (`POST`): a session cookie counts only with this site's
        `Origin`, so another site cannot make an approver's browser decide.
        """
        review_id = request.path_params["review_id"]
        back = _review_path(review_id)
        try:
            principal = await self._access.principal(
                request.scope["headers"], "POST", request.url.scheme
            )
        except Denied as denied:
            raise PageError("Not decided", denied.message, denied.status, back) from None
        await self._visible_review(review_id, principal)
        approve, reason = _decision(await _small_form(request, back), back)
        try:
            row = await self._runtime.reviews.vote(
                review_id, principal, approve=approve, reason=reason
            )
        except KeyError:
            raise PageError("Not decided", f"No review {review_id!r}.", 404) from None
        except NotAllowed as exc:
            raise PageError("Not decided", str(exc), 403, back) from None
        except ReviewConflict as exc:
            raise PageError("Not decided", exc.message, 409, back) from None
        return RedirectResponse(_review_path(row.id), status_code=303)

    async def _visible_review(self, review_id: str, principal: Principal) -> ReviewRow:
        """The review, if `principal` may see it; the same 404 whether unknown or hidden."""
        row = await self._runtime.store.reviews.get(review_id)
        if row is None or not may_see(row, principal, self._admin_groups):
            raise PageError("Review not found", f"No review {review_id!r} that you may see.", 404)
        return row

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


def _why_not_decide(row: ReviewRow, principal: Principal, now: datetime) -> str | None:
    """Why the viewer has no approve and deny buttons, in their own terms; None if they do."""
    if row.status != PENDING:
        return f"This review is {row.status}: there is nothing left to decide."
    if now >= row.deadline:
        return "Its deadline has passed: it expires undecided."
    if principal.user == row.user or principal.subject == row.subject:
        return "You asked for this call; someone else must approve it."
    if any(vote.get("by") == principal.user for vote in row.votes):
        return "You have voted on this review; it waits for the other approvals it needs."
    return refusal_to_decide(row, principal)


def _review_body(row: ReviewRow, principal: Principal, now: datetime) -> str:
    """The review as a page; every value came from a caller or a voter and is escaped."""
    summary = row.summary
    approvers = "; ".join(
        f"{label} {', '.join(str(name) for name in row.approvers.get(key, []))}"
        for label, key in (("groups", "groups"), ("users", "users"))
        if row.approvers.get(key)
    )
    found = summary.get("found")
    facts: list[tuple[str, object]] = [
        ("Status", row.status),
        ("Caller", row.subject if row.user == row.subject else f"{row.subject} ({row.user})"),
        ("Connection", row.connection),
        ("Policy", f"{row.policy} (version {row.policy_version})"),
        ("Call", f"{summary.get('method', '')} {summary.get('target', '')}"),
        ("Model", summary.get("model")),
        ("Why reviewed", summary.get("reason")),
        ("Justification", summary.get("justification") or "none given"),
        (
            "Found",
            ", ".join(f"{name}: {count}" for name, count in sorted(found.items()))
            if isinstance(found, dict)
            else None,
        ),
        ("Approvers", approvers),
        ("Approvals needed", row.min_approvals),
        ("Requested", _when(row.requested_at)),
        ("Deadline", _when(row.deadline)),
        (
            "Grant",
            f"the caller may use {row.connection} for {row.grant:g} s after approval"
            if row.grant > 0
            else "this one call, once",
        ),
        ("Grant until", _when(row.grant_until)),
        ("Decided", _when(row.decided_at)),
        ("Used", _when(row.used_at)),
    ]
    table = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>"
        for label, value in facts
        if value not in (None, "")
    )
    preview = summary.get("preview")
    text = (
        f"<pre>{html.escape(str(preview))}</pre>"
        if preview
        else "<p>No text could be read from this call.</p>"
    )
    votes = "".join(
        f"<li>{html.escape(str(vote.get('by')))}: {html.escape(str(vote.get('decision')))} "
        f"at {html.escape(str(vote.get('at')))}"
        + (f": {html.escape(str(vote['reason']))}" if vote.get("reason") else "")
        + "</li>"
        for vote in row.votes
    )
    why_not = _why_not_decide(row, principal, now)
    if why_not is None:
        decide = (
            f'<form method="post" action="{html.escape(_review_path(row.id))}">'
            "<p><label>Reason (recorded; a denial's reason is shown to the caller)<br>"
            f'<textarea name="reason" rows="3" cols="60" maxlength="{_REASON_CHARS}">'
            "</textarea></label></p>"
            '<p><button name="decision" value="approve">Approve</button> '
            '<button name="decision" value="deny">Deny</button></p></form>'
        )
    else:
        decide = f"<p>{html.escape(why_not)}</p>"
    return (
        f"<table>{table}</table>"
        f"<h2>Text of the call (masked)</h2>{text}"
        f"<h2>Votes</h2>{f'<ul>{votes}</ul>' if votes else '<p>No votes yet.</p>'}"
        f"<h2>Decision</h2>{decide}"
    )


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


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


def _review_path(review_id: str) -> str:
    return f"/reviews/{quote(review_id, safe='')}"


async def _small_form(request: Request, back: str) -> list[tuple[str, str]]:
    """A urlencoded form's fields; a body over `_DECISION_FORM_LIMIT` is refused, not read."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise PageError(
            "Not decided",
            "Send the decision as a form (application/x-www-form-urlencoded).",
            415,
            back,
        )
    too_large = PageError(
        "Not decided", f"A decision is limited to {_DECISION_FORM_LIMIT // 1024} KiB.", 413, back
    )
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > _DECISION_FORM_LIMIT):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _DECISION_FORM_LIMIT:
            raise too_large
    try:
        return parse_qsl(
            body.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=10
        )
    except (UnicodeDecodeError, ValueError):
        raise PageError("Not decided", "The decision form could not be read.", 400, back) from None


def _decision(fields: list[tuple[str, str]], back: str) -> tuple[bool, str | None]:
    """(approve?, reason) from the form: exactly one decision, at most one short reason."""
    decisions = [value for name, value in fields if name == "decision"]
    reasons = [value.strip() for name, value in fields if name == "reason"]
    if decisions not in (["approve"], ["deny"]):
        raise PageError("Not decided", "Choose Approve or Deny.", 400, back)
    if len(reasons) > 1 or (reasons and len(reasons[0]) > _REASON_CHARS):
        raise PageError(
            "Not decided", f"Give one reason of at most {_REASON_CHARS} characters.", 400, back
        )
    return decisions[0] == "approve", (reasons[0] if reasons else "") or None


def _guarded(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Turn refusals (a failed sign-in, a decision not taken) into a page that says why."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except PageError as exc:
            back = (
                f'<p><a href="{html.escape(exc.back)}">Back to the review</a></p>'
                if exc.back is not None
                else ""
            )
            return _page(exc.title, f"<p>{html.escape(exc.message)}</p>{back}", exc.status)

    return run


async def _not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """A console path nothing serves (`/reviews/a/b`): the same inert page as the others."""
    page = _page("Not found", "<p>Nothing is served at this address.</p>", 404)
    await page(scope, receive, send)


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers=_PAGE_HEADERS,
    )
