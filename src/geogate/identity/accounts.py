"""Managing users, service accounts and API keys: the rules the CLI and the admin API share.

    accounts = Accounts(store, config.identity)
    created = await accounts.create_key("alice@example.com", lifetime=None, actor="cli")
    await accounts.set_active("alice@example.com", False, actor="scim")

Every change names its `actor` (`cli`, `scim`, or the admin's subject), which the audit events
keep. Refusals are `AccountError`s whose message says what to do instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from geogate.config import Identity
from geogate.store import (
    CreatedKey,
    KeyInfo,
    ServiceAccountInfo,
    Store,
    StoreError,
    UserInfo,
)


class AccountError(Exception):
    """A refused change; `not_found` tells the API to answer 404 rather than 400."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.not_found = not_found


class Accounts:
    def __init__(self, store: Store, identity: Identity) -> None:
        self._store = store
        self._max_lifetime = identity.api_keys.max_lifetime

    async def create_key(
        self,
        owner: str,
        *,
        lifetime: float | None,
        actor: str,
        groups: Sequence[str] = (),
        service_account: str | None = None,
    ) -> CreatedKey:
        """Mint a key; its lifetime defaults to, and may not exceed, `api_keys.max_lifetime`."""
        maximum = self._max_lifetime
        if lifetime is None:
            lifetime = maximum
        if lifetime > maximum:
            raise AccountError(
                f"A lifetime of {format_duration(lifetime)} is longer than "
                f"identity.api_keys.max_lifetime ({format_duration(maximum)}); choose a shorter "
                "one or raise the maximum in the policy file."
            )
        try:
            return await self._store.create_key(
                owner.strip(),
                groups=[group.strip() for group in groups if group.strip()],
                expires_in=lifetime,
                service_account=service_account,
                actor=actor,
            )
        except StoreError as exc:
            raise AccountError(str(exc)) from None

    async def revoke_key(self, key_id: str, *, actor: str) -> None:
        if not await self._store.revoke_key(key_id, actor=actor):
            raise AccountError(
                f"No API key {key_id!r}; `geogate keys list` shows the ids.", not_found=True
            )

    async def set_active(self, user: str, active: bool, *, actor: str) -> None:
        """Deactivating someone not seen yet blocks them in advance (offboarding before use)."""
        try:
            known = await self._store.set_user_active(user, active, actor=actor, create=True)
        except StoreError as exc:
            raise AccountError(str(exc)) from None
        if not known:
            raise AccountError(
                f"No user {user!r} to activate; `geogate users list` shows the users (a user "
                "appears once they get an API key, sign in, or are provisioned through SCIM).",
                not_found=True,
            )

    async def list_keys(self) -> list[KeyInfo]:
        return await self._store.list_keys()

    async def list_users(self) -> list[UserInfo]:
        return await self._store.list_users()

    async def list_service_accounts(self) -> list[ServiceAccountInfo]:
        return await self._store.list_service_accounts()


def format_duration(seconds: float) -> str:
    """The largest whole unit the policy file would accept: 90d, 36h, 90s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"
