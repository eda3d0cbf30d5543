"""Who is calling: API keys (OIDC tokens, users and SCIM join later) turned into a `Principal`.

authenticator = ApiKeyAuthenticator(store)
try:
    principal = await authenticator.authenticate(token)
except AuthError as exc:
    ...  # 401 with exc.code and exc.message
"""

from geogate.identity.apikeys import ApiKeyAuthenticator
from geogate.identity.principal import AuthError, AuthErrorCode, Principal
from geogate.store import hash_api_key, looks_like_api_key, new_api_key

__all__ = [
    "ApiKeyAuthenticator",
    "AuthError",
    "AuthErrorCode",
    "Principal",
    "hash_api_key",
    "looks_like_api_key",
    "new_api_key",
]
