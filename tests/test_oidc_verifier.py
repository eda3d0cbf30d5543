"""TokenVerifier on its own: key caching, refetch limits, claims mapping, the verified-token cache.

The IdP here is a pair of JSON documents handed to the verifier's `fetch` hook, so the tests
can count fetches and make the IdP fail at will. Tests against a real OpenID provider are in
test_oidc_gateway.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from geogate.config import OidcIssuer
from geogate.identity import AuthError, TokenVerifier
from geogate.identity import oidc as oidc_module

ISSUER = "https://id.example.test"
JWKS_URI = ISSUER + "/jwks"


class FakeIdp:
    """Discovery and JWKS documents, with a fetch log and an outage switch."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, {"kid": "r1", "alg": "RS256"}, private=True)]
        self.fetches: list[str] = []
        self.down = False

    async def fetch(self, url: str) -> Mapping[str, Any]:
        self.fetches.append(url)
        if self.down:
            raise OSError("connection refused")
        if url == ISSUER + "/.well-known/openid-configuration":
            return {"issuer": ISSUER, "jwks_uri": JWKS_URI}
        assert url == JWKS_URI
        return KeySet(self.keys).as_dict(private=False)

    def token(self, key: RSAKey | ECKey | None = None, *, alg: str = "RS256", **claims: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        body = {"iss": ISSUER, "aud": "geogate", "iat": now, "exp": now + 300, "sub": "u1"}
        body.update(email="alice@example.com", groups=["support-eu"])
        body.update(claims)
        return jwt.encode({"alg": alg, "kid": key.kid}, body, key)


def verifier(idp: FakeIdp, **settings: Any) -> TokenVerifier:
    issuer = OidcIssuer(issuer=ISSUER, audience="geogate", **settings)
    return TokenVerifier([issuer], fetch=idp.fetch)


async def test_a_valid_token_names_the_user_and_groups() -> None:
    idp = FakeIdp()
    verified = await verifier(idp).verify(idp.token(jti="t-1"))
    assert verified.user == "alice@example.com"
    assert verified.groups == {"support-eu"}
    assert verified.issuer == ISSUER
    assert verified.token_id == "t-1"


async def test_keys_are_fetched_once_and_tokens_cached() -> None:
    idp = FakeIdp()
    tokens = verifier(idp)
    await tokens.start()
    assert idp.fetches == [ISSUER + "/.well-known/openid-configuration", JWKS_URI]
    token = idp.token()
    first = await tokens.verify(token)
    assert await tokens.verify(token) is first
    await tokens.verify(idp.token(sub="other"))
    assert len(idp.fetches) == 2


async def test_an_unknown_kid_refetches_at_most_once_per_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    idp = FakeIdp()
    tokens = TokenVerifier(
        [OidcIssuer(issuer=ISSUER, audience="geogate")], fetch=idp.fetch, clock=lambda: now[0]
    )
    await tokens.start()
    stranger = RSAKey.generate_key(2048, {"kid": "r9"}, private=True)
    for _ in range(5):
        with pytest.raises(AuthError, match="does not publish"):
            await tokens.verify(idp.token(stranger, exp=2_000_000_000, iat=1000))
    assert idp.fetches.count(JWKS_URI) == 1  # within the first 10 s: no refetch storm
    now[0] += oidc_module.REFETCH_INTERVAL
    idp.keys.append(stranger)  # the IdP rotates the key in
    verified = await tokens.verify(idp.token(stranger, exp=2_000_000_000, iat=1000))
    assert verified.user == "alice@example.com"
    assert idp.fetches.count(JWKS_URI) == 2


async def test_an_idp_outage_keeps_the_held_keys() -> None:
    idp = FakeIdp()
    tokens = verifier(idp)
    await tokens.start()
    idp.down = True
    await tokens._issuers[ISSUER].refresh()  # a failed refresh
    assert (await tokens.verify(idp.token())).user == "alice@example.com"


async def test_an_idp_down_at_start_does_not_stop_the_gateway() -> None:
    idp = FakeIdp()
    idp.down = True
    tokens = verifier(idp)
    await tokens.start()  # no exception
    with pytest.raises(AuthError, match="does not publish"):
        await tokens.verify(idp.token())


async def test_expiry_is_checked_on_cached_tokens() -> None:
    now = [time.time()]
    idp = FakeIdp()
    tokens = TokenVerifier(
        [OidcIssuer(issuer=ISSUER, audience="geogate", leeway=0)],
        fetch=idp.fetch,
        clock=lambda: now[0],
    )
    token = idp.token(iat=int(now[0]), exp=int(now[0]) + 60)
    await tokens.verify(token)
    now[0] += 61
    with pytest.raises(AuthError, match="expired"):
        await tokens.verify(token)


@pytest.mark.parametrize(
    ("claim", "value", "groups"),
    [
        ("groups", ["a", "b"], {"a", "b"}),
        ("groups", "a b  c", {"a", "b", "c"}),
        ("groups", None, set()),
        ("groups", 7, set()),
        ("groups", ["a", 3, None, ""], {"a"}),
    ],
)
async def test_groups_claim_shapes(claim: str, value: Any, groups: set[str]) -> None:
    idp = FakeIdp()
    verified = await verifier(idp).verify(idp.token(**{claim: value}))
    assert verified.groups == groups


async def test_dotted_groups_and_user_claims() -> None:
    idp = FakeIdp()
    tokens = verifier(idp, groups_claim="realm_access.roles", user_claim="preferred_username")
    verified = await tokens.verify(
        idp.token(realm_access={"roles": ["ops"]}, preferred_username="bob")
    )
    assert (verified.user, verified.groups) == ("bob", {"ops"})


async def test_a_token_without_the_user_claim_is_refused() -> None:
    idp = FakeIdp()
    with pytest.raises(AuthError, match="'email' claim"):
        await verifier(idp).verify(idp.token(email=None))


async def test_the_algorithm_allow_list_is_per_issuer() -> None:
    idp = FakeIdp()
    ec = ECKey.generate_key("P-256", {"kid": "e1"}, private=True)
    idp.keys.append(ec)
    assert (await verifier(idp).verify(idp.token(ec, alg="ES256"))).user
    with pytest.raises(AuthError, match="ES256"):
        await verifier(idp, algorithms=["RS256"]).verify(idp.token(ec, alg="ES256"))


async def test_a_key_of_another_type_under_a_known_kid_is_not_tried() -> None:
    """An RS256 header naming an EC key's kid finds no candidate key."""
    idp = FakeIdp()
    ec = ECKey.generate_key("P-256", {"kid": "e1"}, private=True)
    idp.keys.append(ec)
    token = idp.token(ec, alg="ES256")
    _, rest = token.split(".", 1)
    forged = jwt.encode({"alg": "RS256", "kid": "e1"}, {"x": 1}, idp.keys[0]).split(".")[0]
    with pytest.raises(AuthError):
        await verifier(idp).verify(forged + "." + rest)


def test_hmac_and_none_are_refused_in_the_policy_file() -> None:
    for algorithms in (["HS256"], ["none"], ["RS256", "hs512"], []):
        with pytest.raises(ValueError):
            OidcIssuer(issuer=ISSUER, audience="geogate", algorithms=algorithms)


async def test_symmetric_keys_in_a_jwks_are_ignored() -> None:
    named, unnamed = oidc_module._public_keys(
        {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}, {"kty": "RSA", "use": "enc"}]}
    )
    assert named == {} and unnamed == []
