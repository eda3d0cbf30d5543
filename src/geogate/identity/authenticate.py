"""One entry point for every caller credential: `gk_` API keys and OIDC JWTs.

    authenticator = Authenticator(api_keys, tokens, directory)
    principal = await authenticator.authenticate(token)   # or AuthError

Whatever proved the caller, the directory has the last word: a deactivated user (or the owner
of the key's service account) is refused with `identity_disabled`, however valid the credential.
"""

from __future__ import annotations

from geogate.identity.apikeys import ApiKeyAuthenticator
from geogate.identity.directory import DirectoryWatch
from geogate.identity.oidc import TokenVerifier
from geogate.identity.principal import Principal
from geogate.store import looks_like_api_key


class Authenticator:
    def __init__(
        self, api_keys: ApiKeyAuthenticator, tokens: TokenVerifier, directory: DirectoryWatch
    ) -> None:
        self._api_keys = api_keys
        self._tokens = tokens
        self._directory = directory

    async def authenticate(self, token: str) -> Principal:
        if self._tokens.enabled and not looks_like_api_key(token) and token.count(".") == 2:
            verified = await self._tokens.verify(token)
            await self._directory.check(verified.user)
            self._directory.saw(verified.user)
            return Principal(
                subject=verified.user,
                user=verified.user,
                groups=verified.groups | self._directory.groups_of(verified.user),
                service_account=None,
                method="oidc",
                credential_id=verified.token_id,
            )
        principal = await self._api_keys.authenticate(token)
        await self._directory.check(principal.user)
        if principal.service_account is not None:
            return principal
        return _with_groups(principal, self._directory.groups_of(principal.user))


def _with_groups(principal: Principal, extra: frozenset[str]) -> Principal:
    if not extra or extra <= principal.groups:
        return principal
    return Principal(
        subject=principal.subject,
        user=principal.user,
        groups=principal.groups | extra,
        service_account=principal.service_account,
        method=principal.method,
        credential_id=principal.credential_id,
    )
