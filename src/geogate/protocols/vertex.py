"""Google Vertex AI: Google-style errors, and access tokens minted from a service account.

The gateway holds the service account's key; callers hold only their GeoGate credential. An
access token is obtained with the OAuth 2.0 JWT bearer grant (RFC 7523) at the key's
`token_uri`, cached until shortly before it expires, and sent as `Authorization: Bearer`.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from joserfc import jwt
from joserfc.jwk import RSAKey

from geogate.config import GoogleCredentials, is_loopback
from geogate.protocols.base import ProtocolAdapter
from geogate.protocols.openai import openai_request_groups, openai_response_groups
from geogate.protocols.text import Groups, as_dict, content, dicts, json_field, strings

SCOPE = "https://www.googleapis.com/auth/cloud-platform"
_EARLY = 60.0
"""Seconds before expiry at which a token is replaced, so none expires in flight."""


class VertexAdapter(ProtocolAdapter):
    name = "vertex"

    def error_payload(
        self, code: str, message: str, request_id: str, details: dict[str, object]
    ) -> dict[str, object]:
        """Google's shape: `error.message` and `error.status`, which Google's SDKs show."""
        return {
            "error": {
                "code": code,
                "message": message,
                "status": code,
                "request_id": request_id,
                **details,
            }
        }

    def request_groups(self, document: Any) -> Groups:
        """generateContent; the OpenAI-compatible `/chat/completions`; else every string."""
        doc = as_dict(document)
        if "messages" in doc:
            return openai_request_groups(doc)
        if "contents" not in doc:
            return strings(document)
        groups: Groups = []
        for name in ("systemInstruction", "system_instruction"):  # Google's JSON takes both
            groups += _gemini_content(as_dict(doc.get(name)))
        for item in dicts(doc.get("contents")):
            groups += _gemini_content(item)
        return groups

    def response_groups(self, document: Any) -> Groups:
        """Candidates; streamGenerateContent without `alt=sse` answers a JSON array of them."""
        groups: Groups = []
        for doc in dicts(document) if isinstance(document, list) else [as_dict(document)]:
            if "choices" in doc:
                groups += openai_response_groups(doc)
            elif "candidates" in doc:
                for candidate in dicts(doc.get("candidates")):
                    groups += _gemini_content(as_dict(candidate.get("content")))
            else:
                groups += strings(doc)
        return groups


def _gemini_content(item: dict[str, Any]) -> Groups:
    """The text parts of one Content read as one; function call args and responses' values."""
    groups = [content(item, "parts", None)]
    for part in dicts(item.get("parts")):
        for name in ("functionCall", "function_call"):
            groups += json_field(as_dict(part.get(name)), "args")
        for name in ("functionResponse", "function_response"):
            groups += json_field(as_dict(part.get(name)), "response")
    return groups


class TokenError(Exception):
    """No access token could be had; the message says why (never the key)."""


class GoogleTokenSource:
    """Access tokens for one service account, minted on demand and cached."""

    def __init__(self, settings: GoogleCredentials) -> None:
        try:
            document = json.loads(Path(settings.service_account_file).read_text())
            self._email = str(document["client_email"])
            self._key = RSAKey.import_key(document["private_key"])
            self._token_uri = str(document["token_uri"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(
                f"{settings.service_account_file} is not a readable service account key file "
                f"({type(exc).__name__})"
            ) from None
        url = urlsplit(self._token_uri)
        if url.scheme != "https" and not (url.scheme == "http" and is_loopback(url.hostname or "")):
            raise ValueError(f"token_uri {self._token_uri!r} must be https")
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def token(self) -> str:
        if self._token is not None and time.time() < self._expires - _EARLY:
            return self._token
        async with self._lock:  # one refresh for all the calls waiting on it
            if self._token is None or time.time() >= self._expires - _EARLY:
                self._token, self._expires = await self._mint()
        return self._token

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _mint(self) -> tuple[str, float]:
        now = int(time.time())
        claims = {
            "iss": self._email,
            "scope": SCOPE,
            "aud": self._token_uri,
            "iat": now,
            "exp": now + 3600,
        }
        assertion = jwt.encode({"alg": "RS256", "typ": "JWT"}, claims, self._key)
        form = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=10), trust_env=False
            )
        try:
            async with self._session.post(self._token_uri, data=form) as reply:
                answer = await reply.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise TokenError(f"Google's token endpoint failed ({type(exc).__name__})") from None
        if reply.status != 200 or not isinstance(answer, dict) or "access_token" not in answer:
            detail = answer.get("error") if isinstance(answer, dict) else None
            raise TokenError(f"Google refused the service account ({detail or reply.status})")
        lifetime = float(answer.get("expires_in", 3600))
        return str(answer["access_token"]), time.time() + lifetime
