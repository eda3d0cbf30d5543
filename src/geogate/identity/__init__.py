"""Who is calling: gateway API keys and OIDC tokens turned into a `Principal`.

authenticator = Authenticator(ApiKeyAuthenticator(store), TokenVerifier(issuers), directory)
try:
    principal = await authenticator.authenticate(token)
except AuthError as exc:
    ...  # 401 (503 for identity_unavailable) with exc.code and exc.message
"""

from geogate.identity.apikeys import ApiKeyAuthenticator
from geogate.identity.authenticate import Authenticator
from geogate.identity.directory import DirectoryWatch
from geogate.identity.oidc import TokenVerifier, VerifiedToken
from geogate.identity.principal import AuthError, AuthErrorCode, Principal
from geogate.store import hash_api_key, looks_like_api_key, new_api_key

__all__ = [
    "ApiKeyAuthenticator",
    "AuthError",
    "AuthErrorCode",
    "Authenticator",
    "DirectoryWatch",
    "Principal",
    "TokenVerifier",
    "VerifiedToken",
    "hash_api_key",
    "looks_like_api_key",
    "new_api_key",
]
