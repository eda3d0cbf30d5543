"""OIDC bearer tokens (JWTs) from the issuers in `identity.oidc`, verified on the hot path.

    verifier = TokenVerifier(config.identity.oidc)
    await verifier.start()                 # discovery + JWKS of every issuer, in the background
    token = await verifier.verify(jwt)     # VerifiedToken, or AuthError("unauthenticated", ...)

Keys come only from each issuer's discovery document and its `jwks_uri`: a token's own `jku`,
`x5u`, `jwk` or `x5c` headers are never looked at, and its `kid` is only ever compared with the
ids of keys already fetched. Symmetric keys are dropped from a JWKS, and `none`/HMAC algorithms
are refused before any key is chosen, so no key-confusion path exists.

A JWKS is refetched when a token names a `kid` it lacks (key rotation), at most once per
`REFETCH_INTERVAL` per issuer; a failed fetch keeps the keys already held, so an IdP outage does
not stop callers whose tokens are signed with known keys. A verified token is cached until it
expires: a repeat call costs a dictionary lookup and a clock read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from geogate.config import OidcIssuer, is_loopback
from geogate.identity.principal import AuthError

log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 16 * 1024
"""Real ID and access tokens are a few KB; anything larger is refused before it is parsed."""
REFETCH_INTERVAL = 10.0
"""Seconds between JWKS fetches of one issuer triggered by unknown key ids."""
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 1024 * 1024
_ALGORITHM_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}

# RFC 9864 prefers `Ed25519` to `EdDSA`, but IdPs still sign with `EdDSA`: accepting it is the
# operator's choice (identity.oidc algorithms), so joserfc's per-use warning is noise.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

Fetch = Callable[[str], Awaitable[Mapping[str, Any]]]
"""Fetch a JSON document from a URL (replaced in tests to count or fail fetches)."""


@dataclass(frozen=True, slots=True)
class VerifiedToken:
    user: str
    groups: frozenset[str]
    issuer: str
    subject: str
    expires_at: float
    """Epoch seconds: `exp` plus the issuer's leeway."""
    token_id: str | None
    """`jti`, kept for the audit trail when the IdP sets one."""


def _refused(message: str) -> AuthError:
    return AuthError("unauthenticated", message)


class _IssuerKeys:
    """One issuer's signing keys: fetched through discovery, kept across outages."""

    def __init__(self, settings: OidcIssuer, fetch: Fetch, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.issuer = settings.issuer
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, RSAKey | ECKey | OKPKey] = {}
        self._unnamed: list[RSAKey | ECKey | OKPKey] = []
        self._jwks_uri: str | None = None
        self.discovery: Mapping[str, Any] = {}
        self._last_fetch = -REFETCH_INTERVAL
        self._refreshing: asyncio.Task[None] | None = None
        self._audiences = (
            [settings.audience] if isinstance(settings.audience, str) else settings.audience
        )
        self.registry_options: dict[str, ClaimsOption] = {
            "iss": {"essential": True, "values": _issuer_spellings(settings.issuer)},
            "aud": {"essential": True, "values": self._audiences},
            "exp": {"essential": True},
        }

    async def key_for(self, kid: str | None, alg: str) -> list[RSAKey | ECKey | OKPKey]:
        """The keys a token with this header may be checked against (refetching once if new)."""
        found = self._lookup(kid, alg)
        if not found and self._clock() - self._last_fetch >= REFETCH_INTERVAL:
            await self.refresh()
            found = self._lookup(kid, alg)
        return found

    def _lookup(self, kid: str | None, alg: str) -> list[RSAKey | ECKey | OKPKey]:
        wanted = _ALGORITHM_KEY_TYPES.get(alg[:2])
        if kid is not None:
            key = self._keys.get(kid)
            return [key] if key is not None and key.key_type == wanted else []
        return [key for key in [*self._keys.values(), *self._unnamed] if key.key_type == wanted]

    async def refresh(self) -> None:
        """Fetch discovery (once) and the JWKS; concurrent callers share one fetch."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.create_task(self._refresh())
        await asyncio.shield(self._refreshing)

    async def _refresh(self) -> None:
        self._last_fetch = self._clock()
        try:
            if self._jwks_uri is None:
                self._jwks_uri = await self._discover()
            document = await self._fetch(self._jwks_uri)
            keys, unnamed = _public_keys(document)
        except (OSError, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            held = len(self._keys) + len(self._unnamed)
            log.warning(
                "OIDC issuer %s: could not fetch its signing keys (%s); keeping the %d held",
                self.issuer,
                exc,
                held,
            )
            return
        self._keys, self._unnamed = keys, unnamed
        log.info("OIDC issuer %s: %d signing keys loaded", self.issuer, len(keys) + len(unnamed))

    async def _discover(self) -> str:
        url = self.issuer.rstrip("/") + "/.well-known/openid-configuration"
        document = await self._fetch(url)
        if document.get("issuer") not in _issuer_spellings(self.issuer):
            raise ValueError(
                f"the discovery document names issuer {document.get('issuer')!r}, "
                f"not {self.issuer!r}"
            )
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not _acceptable_url(jwks_uri):
            raise ValueError(f"jwks_uri {jwks_uri!r} is not an https:// URL")
        self.discovery = document
        return jwks_uri


class TokenVerifier:
    """Verifies JWTs against the configured issuers; see the module docstring."""

    def __init__(
        self,
        issuers: Sequence[OidcIssuer],
        *,
        fetch: Fetch | None = None,
        clock: Callable[[], float] = time.time,
        cache_size: int = 50_000,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._clock = clock
        fetcher = fetch or self._fetch_json
        self._issuers = {
            settings.issuer.rstrip("/"): _IssuerKeys(settings, fetcher, clock)
            for settings in issuers
        }
        self._cache: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._cache_size = cache_size

    @property
    def enabled(self) -> bool:
        return bool(self._issuers)

    async def start(self) -> None:
        """Load every issuer's keys now, so the first call does not wait; never fails."""
        await asyncio.gather(*(keys.refresh() for keys in self._issuers.values()))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def verify(self, token: str) -> VerifiedToken:
        cached = self._cache.get(token)
        if cached is not None:
            if self._clock() < cached.expires_at:
                return cached
            del self._cache[token]
            raise _refused("The token has expired; sign in again to get a new one.")
        verified = await self._verify_token(token)
        self._cache[token] = verified
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return verified

    async def endpoint(self, issuer: str, name: str) -> str:
        """An endpoint from the issuer's discovery document, e.g. `token_endpoint`.

        Raises `ValueError` when the issuer is not configured, could not be reached, or does
        not offer that endpoint over https (plain http only on loopback).
        """
        keys = self._issuers.get(issuer.rstrip("/"))
        if keys is None:
            raise ValueError(f"{issuer} is not one of the issuers under identity.oidc")
        if not keys.discovery:
            await keys.refresh()
        url = keys.discovery.get(name)
        if not isinstance(url, str) or not _acceptable_url(url):
            raise ValueError(f"{issuer} does not offer a usable {name}")
        return url

    async def verify_login(self, token: str, *, client_id: str, nonce: str) -> VerifiedToken:
        """An ID token from a sign-in: meant for `client_id`, carrying this flow's `nonce`."""
        verified, claims = await self._verify(token, audience=client_id)
        if claims.get("nonce") != nonce:
            raise _refused("The sign-in answer does not belong to this sign-in (nonce); retry.")
        return verified

    async def _verify_token(self, token: str) -> VerifiedToken:
        verified, _ = await self._verify(token)
        return verified

    async def _verify(
        self, token: str, audience: str | None = None
    ) -> tuple[VerifiedToken, dict[str, Any]]:
        if len(token) > MAX_TOKEN_BYTES:
            raise _refused(
                f"The token is larger than {MAX_TOKEN_BYTES // 1024} KiB; no IdP "
                "issues such tokens, so it is refused unread."
            )
        header, claims = _unverified_parts(token)
        issuer = claims.get("iss")
        keys = self._issuers.get(issuer.rstrip("/")) if isinstance(issuer, str) else None
        if keys is None:
            raise _refused(
                f"The token was issued by {issuer!r}, which this gateway does not trust; "
                "use a token from one of the issuers under identity.oidc."
            )
        settings = keys.settings
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in settings.algorithms:
            raise _refused(
                f"The token is signed with {alg!r}, which is not accepted for {keys.issuer} "
                f"(accepted: {', '.join(settings.algorithms)})."
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise _refused("The token's key id (kid) is not a string.")
        candidates = await keys.key_for(kid, alg)
        if not candidates:
            raise _refused(
                f"The token is signed with a key {keys.issuer} does not publish (kid {kid!r}); "
                "get a new token, or check the token comes from that issuer."
            )
        for key in candidates:
            try:
                jws.deserialize_compact(token, key, algorithms=[alg])
            except JoseError:
                continue
            break
        else:
            raise _refused(
                "The token's signature does not verify against the issuer's keys; it was "
                "altered or signed by someone else."
            )
        now = self._clock()
        leeway = int(settings.leeway)
        options = keys.registry_options
        if audience is not None:
            options = {**options, "aud": {"essential": True, "values": [audience]}}
        registry = JWTClaimsRegistry(now=int(now), leeway=leeway, **options)
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise _refused(_claims_problem(exc, keys.issuer)) from None
        user = _claim(claims, settings.user_claim)
        if not isinstance(user, str) or not user or len(user) > 320:
            raise _refused(
                f"The token has no usable {settings.user_claim!r} claim to name the user; "
                "ask the IdP administrator to include it."
            )
        verified = VerifiedToken(
            user=user,
            groups=_groups(_claim(claims, settings.groups_claim)),
            issuer=keys.issuer,
            subject=str(claims.get("sub", user)),
            expires_at=float(claims["exp"]) + leeway,
            token_id=claims.get("jti") if isinstance(claims.get("jti"), str) else None,
        )
        return verified, claims

    async def _fetch_json(self, url: str) -> Mapping[str, Any]:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT), trust_env=False
            )
        async with self._session.get(url, allow_redirects=False) as response:
            if response.status != 200:
                raise ValueError(f"{url} answered HTTP {response.status}")
            body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
        if len(body) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes")
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ValueError(f"{url} did not send a JSON object")
        return document


def _unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, decoded but not yet trusted: they only pick the issuer and key."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise _refused("The token is not a JWT (three base64url parts separated by dots).")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except (ValueError, binascii.Error, RecursionError):
        raise _refused(
            "The token is not a JWT: its header or claims are not base64url JSON."
        ) from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _refused("The token is not a JWT: its header and claims must be JSON objects.")
    if header.get("crit"):
        raise _refused("The token requires header extensions (crit) this gateway does not know.")
    return header, claims


def _b64decode(segment: str) -> bytes:
    if not segment.isascii():
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _public_keys(
    document: Mapping[str, Any],
) -> tuple[dict[str, RSAKey | ECKey | OKPKey], list[RSAKey | ECKey | OKPKey]]:
    """Signature keys from a JWKS by kid (keys without one apart); symmetric keys are dropped."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("the JWKS has no `keys` list")
    named: dict[str, RSAKey | ECKey | OKPKey] = {}
    unnamed: list[RSAKey | ECKey | OKPKey] = []
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue  # `oct` (HMAC) keys would allow key confusion; nothing else signs
        public = {
            name: value
            for name, value in entry.items()
            if name not in ("d", "p", "q", "dp", "dq", "qi", "oth")
        }
        try:
            key = KeySet.import_key_set({"keys": [public]}).keys[0]
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("ignoring an unusable key in a JWKS: %s", exc)
            continue
        if not isinstance(key, RSAKey | ECKey | OKPKey):
            continue
        kid = entry.get("kid")
        if isinstance(kid, str):
            named[kid] = key
        else:
            unnamed.append(key)
    return named, unnamed


def _claim(claims: Mapping[str, Any], path: str) -> Any:
    """`realm_access.roles` -> claims["realm_access"]["roles"]; a literal dotted name first."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _groups(value: Any) -> frozenset[str]:
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str) and item)
    return frozenset()


def _issuer_spellings(issuer: str) -> list[str]:
    """An issuer is matched with or without its trailing slash (IdPs differ, configs too)."""
    bare = issuer.rstrip("/")
    return [bare, bare + "/"]


def _acceptable_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and is_loopback(parts.hostname or "")


def _claims_problem(exc: JoseError, issuer: str) -> str:
    claim = getattr(exc, "claim", None) or ""
    name = type(exc).__name__
    if name == "ExpiredTokenError":
        return "The token has expired; sign in again to get a new one."
    if claim == "aud":
        return (
            "The token is meant for another audience; request a token for this gateway's "
            "audience (identity.oidc audience)."
        )
    if claim == "iss":
        return f"The token's issuer does not match {issuer}."
    if claim == "nbf":
        return "The token is not valid yet (nbf is in the future); check the IdP's clock."
    if claim == "iat":
        return "The token claims to be issued in the future; check the IdP's clock."
    if name == "MissingClaimError":
        return f"The token lacks a required claim ({exc}); it cannot be checked."
    return f"The token's claims are not acceptable ({exc})."
