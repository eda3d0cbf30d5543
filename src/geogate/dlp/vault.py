"""Token vaults: placeholders the model sees, originals that never leave the gateway.

A placeholder is derived from the session and the value (HMAC with the deployment key), so
every worker that masks the same value in the same session writes the same placeholder, and
the model sees one consistent name across a conversation. The original is kept only here, in
memory, until the session has been idle for `ttl` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections import OrderedDict

PLACEHOLDER = re.compile(r"\[([A-Z][A-Z0-9_]*)_([0-9a-f]{10})\]")
PLACEHOLDER_LONGEST = 80
"""A stream holds back at most this much while a placeholder may be arriving."""


class Vault:
    """One session's placeholders and originals."""

    def __init__(self, key: bytes, session: str) -> None:
        self._key = hmac.new(key, session.encode(), hashlib.sha256).digest()
        self._originals: dict[str, str] = {}
        self.used = time.monotonic()

    def placeholder(self, entity: str, canonical: str, original: str) -> str:
        digest = hmac.new(self._key, f"{entity}:{canonical}".encode(), hashlib.sha256)
        placeholder = f"[{entity.upper()}_{digest.hexdigest()[:10]}]"
        self._originals.setdefault(placeholder, original)
        return placeholder

    def original(self, placeholder: str) -> str | None:
        return self._originals.get(placeholder)


class Vaults:
    """The vaults of live sessions, dropped after `ttl` seconds idle (and the oldest first
    when there are more than `limit`)."""

    def __init__(self, key: bytes, ttl: float = 3600.0, limit: int = 10_000) -> None:
        self._key = key
        self._ttl = ttl
        self._limit = limit
        self._vaults: OrderedDict[str, Vault] = OrderedDict()

    def session(self, session: str) -> Vault:
        now = time.monotonic()
        while self._vaults:
            oldest = next(iter(self._vaults.values()))
            if now - oldest.used <= self._ttl and len(self._vaults) < self._limit:
                break
            self._vaults.popitem(last=False)
        vault = self._vaults.pop(session, None) or Vault(self._key, session)
        vault.used = now
        self._vaults[session] = vault
        return vault
