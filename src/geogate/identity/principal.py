"""Who a call comes from, and why an identity is refused: the outcome of every authenticator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AuthErrorCode = Literal["unauthenticated", "identity_disabled", "identity_unavailable"]


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    """Who acts: `alice@example.com`, or `sa:ci-bot` for a service account."""
    user: str
    """The accountable human (the owner, for a service account)."""
    groups: frozenset[str]
    service_account: str | None
    method: Literal["api_key", "oidc", "session"]
    """How the caller was proven: a gateway API key, an OIDC token, a console session."""
    credential_id: str | None
    """The API key id, for the audit trail; never the credential itself."""


class AuthError(Exception):
    """A refused identity: `code` is the SPEC §3 error code, `message` one actionable sentence."""

    def __init__(self, code: AuthErrorCode, message: str, user: str | None = None) -> None:
        super().__init__(message)
        self.code: AuthErrorCode = code
        self.message = message
        self.user = user
        """The accountable user when known (a deactivated one), for the audit trail."""
