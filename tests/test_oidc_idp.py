"""The OIDC test IdP (tests/oidc_idp.py) issues real, verifiable tokens through every flow."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError
from joserfc.jwk import KeySet
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route

from tests import oidc_idp
from tests.oidc_idp import OidcIdp, running_idp
from tests.servers import run_asgi

ACCOUNTS = {"ann": {"email": "ann@corp.example.eu", "groups": ["support-eu", "finance"]}}
CALLBACK = "http://127.0.0.1:1/cb"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ALGS = ["RS256", "ES256", "EdDSA", "PS256"]

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    with running_idp(tmp_path_factory.mktemp("idp"), accounts=ACCOUNTS) as idp:
        yield idp


@pytest.fixture
def own_idp(tmp_path: Path) -> Iterator[OidcIdp]:
    """An IdP of the test's own, for tests that stop it or change its keys."""
    with running_idp(tmp_path) as idp:
        yield idp


def published_keys(idp: OidcIdp) -> KeySet:
    response = requests.get(idp.jwks_uri, timeout=5)
    response.raise_for_status()
    return KeySet.import_key_set(response.json())


def verify(idp: OidcIdp, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify `token` against the IdP's published JWKS; return (header, claims)."""
    decoded = jwt.decode(token, published_keys(idp), algorithms=ALGS)
    return decoded.header, decoded.claims


def test_discovery_document_is_served(idp: OidcIdp) -> None:
    doc = requests.get(idp.discovery_url, timeout=5).json()
    assert doc["issuer"] == idp.issuer
    assert doc["jwks_uri"] == idp.jwks_uri
    assert doc["token_endpoint"] == idp.token_endpoint
    assert {"client_credentials", "authorization_code", DEVICE_GRANT} <= set(
        doc["grant_types_supported"]
    )
    assert doc["code_challenge_methods_supported"] == ["S256"]


def test_jwks_has_public_keys_only(idp: OidcIdp) -> None:
    jwks = requests.get(idp.jwks_uri, timeout=5).json()
    assert {key["kid"] for key in jwks["keys"]} == {key.kid for key in idp.keys}
    assert {key["alg"] for key in jwks["keys"]} == set(ALGS)
    for key in jwks["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), key["kid"]


@pytest.mark.parametrize("alg", ALGS)
def test_machine_token_verifies_against_published_jwks(idp: OidcIdp, alg: str) -> None:
    token = idp.machine_token("bot@corp.example.eu", ["support-eu"], alg=alg)
    header, claims = verify(idp, token)
    assert header["alg"] == alg
    assert header["kid"] == idp.key_for(alg).kid
    assert claims["iss"] == idp.issuer
    assert claims["aud"] == "geogate"
    assert claims["exp"] > claims["iat"]
    assert claims["email"] == "bot@corp.example.eu"
    assert claims["groups"] == ["support-eu"]
    assert "realm_access" not in claims


def test_machine_token_nested_and_string_groups(idp: OidcIdp) -> None:
    token = idp.machine_token("bot@x.eu", "a b", nested_groups=["finance"], ttl=30)
    _, claims = verify(idp, token)
    assert claims["groups"] == "a b"
    assert claims["realm_access"] == {"roles": ["finance"]}
    assert claims["exp"] - claims["iat"] == 30


def test_unknown_resource_is_refused(idp: OidcIdp) -> None:
    with pytest.raises(RuntimeError, match="invalid_target"):
        idp.machine_token("bot@x.eu", alg="HS256")


def test_sign_uses_the_idp_key_and_fills_defaults(idp: OidcIdp) -> None:
    token = idp.sign({"sub": "crafted", "exp": 1, "iat": None}, alg="ES256")
    header, claims = verify(idp, token)
    assert header["kid"] == idp.key_for("ES256").kid
    assert claims == {"iss": idp.issuer, "aud": "geogate", "sub": "crafted", "exp": 1}


def test_rotate_keys_changes_kids(own_idp: OidcIdp) -> None:
    old_token = own_idp.machine_token("bot@x.eu")
    old_kids = {key["kid"] for key in requests.get(own_idp.jwks_uri, timeout=5).json()["keys"]}
    own_idp.rotate_keys()
    new_kids = {key["kid"] for key in requests.get(own_idp.jwks_uri, timeout=5).json()["keys"]}
    assert len(new_kids) == len(old_kids) == 4
    assert not old_kids & new_kids
    header, _ = verify(own_idp, own_idp.machine_token("bot@x.eu"))
    assert header["kid"] in new_kids
    with pytest.raises(InvalidKeyIdError):  # the old kid is no longer published
        verify(own_idp, old_token)


def test_stop_refuses_connections_and_restart_brings_it_back(own_idp: OidcIdp) -> None:
    client = own_idp.register_client(
        grant_types=["client_credentials"], response_types=[], redirect_uris=[]
    )
    kids = {key.kid for key in own_idp.keys}
    own_idp.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(own_idp.discovery_url, timeout=5)
    own_idp.restart()
    assert requests.get(own_idp.discovery_url, timeout=5).json()["issuer"] == own_idp.issuer
    assert {key.kid for key in own_idp.keys} == kids
    token = requests.post(
        own_idp.token_endpoint,
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
        timeout=5,
    )
    assert token.status_code == 200, token.text  # registered clients survive a restart


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_authorization_code_flow_with_pkce(idp: OidcIdp) -> None:
    client = idp.register_client(
        redirect_uris=[CALLBACK],
        grant_types=["authorization_code", "refresh_token"],
        response_types=["code"],
    )
    verifier, challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(8), secrets.token_urlsafe(8)
    query = {
        "client_id": client["client_id"],
        "response_type": "code",
        "redirect_uri": CALLBACK,
        "scope": "openid email groups",
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    relying_party = Starlette(
        routes=[
            Route("/login", lambda _: RedirectResponse(f"{idp.issuer}/auth?{urlencode(query)}"))
        ]
    )
    with run_asgi(relying_party) as rp_url:
        redirect = idp.browser_login(f"{rp_url}/login", "ann")
    location = redirect.headers["location"]
    assert location.startswith(f"{CALLBACK}?")
    params = parse_qs(urlsplit(location).query)
    assert params["state"] == [state]

    response = requests.post(
        idp.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": CALLBACK,
            "code_verifier": verifier,
        },
        auth=(client["client_id"], client["client_secret"]),
        timeout=5,
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    _, id_claims = verify(idp, tokens["id_token"])
    assert id_claims["sub"] == "ann"
    assert id_claims["aud"] == client["client_id"]
    assert id_claims["nonce"] == nonce
    assert id_claims["email"] == "ann@corp.example.eu"
    assert id_claims["groups"] == ["support-eu", "finance"]
    _, access = verify(idp, tokens["access_token"])
    assert (access["aud"], access["email"], access["groups"]) == (
        "geogate",
        "ann@corp.example.eu",
        ["support-eu", "finance"],
    )


def test_authorization_code_without_pkce_is_refused(idp: OidcIdp) -> None:
    client = idp.register_client(redirect_uris=[CALLBACK], grant_types=["authorization_code"])
    query = {"client_id": client["client_id"], "response_type": "code", "scope": "openid"}
    redirect = idp.browser_login(f"{idp.issuer}/auth?{urlencode(query)}", "ann")
    assert parse_qs(urlsplit(redirect.headers["location"]).query)["error"] == ["invalid_request"]


def test_device_flow_with_public_client(idp: OidcIdp) -> None:
    client = idp.register_client(
        token_endpoint_auth_method="none",
        grant_types=[DEVICE_GRANT, "refresh_token"],
        response_types=[],
        redirect_uris=[],
    )
    started = requests.post(
        f"{idp.issuer}/device/auth",
        data={"client_id": client["client_id"], "scope": "openid email groups"},
        timeout=5,
    )
    assert started.status_code == 200, started.text
    device = started.json()
    poll = {
        "grant_type": DEVICE_GRANT,
        "device_code": device["device_code"],
        "client_id": client["client_id"],
    }
    pending = requests.post(idp.token_endpoint, data=poll, timeout=5)
    assert pending.json()["error"] == "authorization_pending"

    idp.device_login(device["verification_uri_complete"], "ann")

    response = requests.post(idp.token_endpoint, data=poll, timeout=5)
    assert response.status_code == 200, response.text
    tokens = response.json()
    _, id_claims = verify(idp, tokens["id_token"])
    assert (id_claims["sub"], id_claims["email"]) == ("ann", "ann@corp.example.eu")
    assert id_claims["groups"] == ["support-eu", "finance"]
    refreshed = requests.post(
        idp.token_endpoint,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client["client_id"],
        },
        timeout=5,
    )
    assert refreshed.status_code == 200, refreshed.text
    assert json.loads(refreshed.text)["access_token"]


def test_failed_start_reports_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oidc_idp, "SERVER", tmp_path / "missing.mjs")
    with pytest.raises(RuntimeError, match=r"did not start(.|\n)*missing\.mjs"):
        OidcIdp.start(tmp_path)
