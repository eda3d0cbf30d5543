"""OIDC bearer tokens at the gateway, against a real OpenID provider (panva's oidc-provider).

Real signed tokens are accepted with their groups; rotation at the IdP and an IdP outage do not
stop callers; tokens for another audience or issuer, expired or not yet valid, and a corpus of
forged tokens are refused with 401 — and never with a traceback in the log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from geogate.identity import oidc as oidc_module
from tests.gateways import Gateway, run_gateway
from tests.oidc_idp import OidcIdp, running_idp
from tests.servers import run_asgi

ACCOUNTS = {"ann": {"email": "ann@example.eu", "groups": ["support-eu"]}}

POLICY = """
version: 1
gateway: {{state: "sqlite:///state.db"}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
identity:
  oidc:
    - {{issuer: "{issuer}", audience: geogate}}
  scim: {{token: "{scim}"}}
connections:
  oai: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo-upstream-key}}}}
  ledger: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: demo-upstream-key}}}}
  claude:
    type: anthropic
    url: "{demo}"
    region: onprem:test-eu
    credentials: {{header: {{x-api-key: demo-upstream-key}}}}
policies:
  - name: support
    subjects: {{groups: [support-eu]}}
    connections: [oai, claude]
  - name: finance
    subjects: {{groups: [finance]}}
    connections: [ledger]
"""
SCIM = {"Authorization": "Bearer " + "scim-token-" * 4, "Content-Type": "application/scim+json"}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    with running_idp(tmp_path_factory.mktemp("idp"), accounts=ACCOUNTS) as provider:
        yield provider


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, idp: OidcIdp, demo_url: str) -> Iterator[Gateway]:
    policy = POLICY.format(issuer=idp.issuer, demo=demo_url, scim="scim-token-" * 4)
    with run_gateway(tmp_path_factory.mktemp("gw"), policy) as gateway:
        yield gateway


def chat(gw: Gateway, token: str, connection: str = "oai") -> str:
    client = openai.OpenAI(base_url=gw.url(connection), api_key=token, max_retries=0)
    reply = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "hi"}]
    )
    return reply.choices[0].message.content or ""


def refused(gw: Gateway, token: str, connection: str = "oai") -> tuple[int, dict[str, Any]]:
    response = httpx2.post(
        gw.url(connection) + "/chat/completions",
        headers={"Authorization": f"Bearer {token}".encode()},
        json={"model": "demo", "messages": []},
    )
    return response.status_code, response.json()["error"]


def assert_unauthenticated(gw: Gateway, token: str, fragment: str = "") -> None:
    status, error = refused(gw, token)
    assert (status, error["code"]) == (401, "unauthenticated"), error
    assert fragment in error["message"]


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
def test_a_real_token_with_groups_is_allowed(gw: Gateway, idp: OidcIdp, alg: str) -> None:
    assert chat(gw, idp.machine_token("bot@example.eu", ["support-eu"], alg=alg))


def test_the_anthropic_sdk_sends_a_token_as_its_api_key(gw: Gateway, idp: OidcIdp) -> None:
    """The SDK puts the token in `x-api-key`; streaming works as with a gateway key."""
    client = anthropic.Anthropic(
        base_url=gw.url("claude"),
        api_key=idp.machine_token("bot@example.eu", ["support-eu"]),
        max_retries=0,
    )
    messages: Any = [{"role": "user", "content": "hi"}]
    with client.messages.stream(model="demo", max_tokens=32, messages=messages) as stream:
        assert "".join(stream.text_stream)
    expired = anthropic.Anthropic(
        base_url=gw.url("claude"),
        api_key=idp.sign(claims(idp, exp=int(time.time()) - 3600)),
        max_retries=0,
    )
    with pytest.raises(anthropic.AuthenticationError) as caught:
        expired.messages.create(model="demo", max_tokens=32, messages=messages)
    assert "expired" in caught.value.message


def test_a_token_without_the_group_is_not_granted(gw: Gateway, idp: OidcIdp) -> None:
    status, error = refused(gw, idp.machine_token("outsider@example.eu", ["marketing"]))
    assert (status, error["code"]) == (403, "connection_not_allowed")


def test_a_users_own_access_token_from_a_browser_sign_in_works(gw: Gateway, idp: OidcIdp) -> None:
    """The authorization-code flow's access token carries the account's email and groups."""
    client = idp.register_client(
        redirect_uris=["http://127.0.0.1:1/cb"],
        grant_types=["authorization_code"],
        response_types=["code"],
        token_endpoint_auth_method="none",
    )
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    start = (
        f"{idp.issuer}/auth?client_id={client['client_id']}&response_type=code&scope=openid"
        f"&redirect_uri=http://127.0.0.1:1/cb&code_challenge={challenge.decode()}"
        "&code_challenge_method=S256&resource=urn:geogate:RS256"
    )
    back = idp.browser_login(start, "ann")
    code = back.headers["location"].split("code=")[1].split("&")[0]
    tokens = httpx2.post(
        idp.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:1/cb",
            "code_verifier": verifier,
            "client_id": client["client_id"],
        },
    ).json()
    assert chat(gw, tokens["access_token"])


def test_key_rotation_at_the_idp(
    gw: Gateway, idp: OidcIdp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(oidc_module, "REFETCH_INTERVAL", 0.0)
    before = idp.machine_token("bot@example.eu", ["support-eu"])
    assert chat(gw, before)
    idp.rotate_keys()
    after = idp.machine_token("bot@example.eu", ["support-eu"])
    assert (
        jwt.decode(after, idp.key_for("RS256")).header["kid"]
        != json.loads(base64.urlsafe_b64decode(before.split(".")[0] + "=="))["kid"]
    )
    assert chat(gw, after)  # unknown kid -> the JWKS is fetched again
    assert chat(gw, before)  # verified before: cached until it expires


def test_an_idp_outage_keeps_known_keys_working(gw: Gateway, idp: OidcIdp) -> None:
    token = idp.machine_token("bot@example.eu", ["support-eu"])  # new, not cached yet
    idp.stop()
    try:
        assert chat(gw, token)
        stranger = RSAKey.generate_key(2048, {"kid": "unknown-kid"}, private=True)
        forged = jwt.encode({"alg": "RS256", "kid": "unknown-kid"}, claims(idp), stranger)
        assert_unauthenticated(gw, forged, "does not publish")
    finally:
        idp.restart()


def claims(idp: OidcIdp, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    body = {"iss": idp.issuer, "aud": "geogate", "iat": now, "exp": now + 300}
    body.update(email="ann@example.eu", groups=["support-eu"], sub="ann")
    body.update(changes)
    return body  # a None value is left out by `idp.sign`


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"aud": "someone-else"}, "audience"),
        ({"aud": ["someone-else", "other"]}, "audience"),
        ({"iss": "http://127.0.0.1:1"}, "does not trust"),
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iat": int(time.time()) + 3600}, "future"),
        ({"exp": None}, "exp"),
        ({"exp": "tomorrow"}, ""),
        ({"email": None}, "'email' claim"),
    ],
)
def test_wrong_claims_are_unauthenticated(
    gw: Gateway, idp: OidcIdp, changes: dict[str, Any], fragment: str
) -> None:
    assert_unauthenticated(gw, idp.sign(claims(idp, **changes)), fragment)


def _b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _segment(value: dict[str, Any]) -> str:
    return _b64(json.dumps(value))


class KeyBait:
    """An attacker's key server: a gateway that fetched from it would show up in `hits`."""

    def __init__(self) -> None:
        self.hits: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.hits.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def _hs256(header: dict[str, Any], body: dict[str, Any], secret: bytes) -> str:
    """Signed by hand: JOSE libraries rightly refuse to use a public key as an HMAC secret."""
    signing_input = f"{_segment(header)}.{_segment(body)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def forged_tokens(idp: OidcIdp, bait_url: str) -> dict[str, str]:
    good = idp.machine_token("bot@example.eu", ["support-eu"])
    header, payload, signature = good.split(".")
    real_kid = json.loads(base64.urlsafe_b64decode(header + "=="))["kid"]
    attacker = RSAKey.generate_key(2048, {"kid": real_kid}, private=True)
    body = claims(idp, groups=["support-eu", "geogate-admins"])
    public_pem = idp.key_for("RS256").as_pem(private=False)
    tampered = _segment(
        {**json.loads(base64.urlsafe_b64decode(payload + "==")), "email": "ceo@example.eu"}
    )
    return {
        "alg none": f"{_segment({'alg': 'none'})}.{_segment(body)}.",
        "alg none with a signature": f"{_segment({'alg': 'none'})}.{_segment(body)}.AAAA",
        "alg None spelled oddly": f"{_segment({'alg': 'nOnE', 'kid': real_kid})}.{_segment(body)}.AAAA",
        "HS256 keyed with the IdP's public key": _hs256(
            {"alg": "HS256", "kid": real_kid}, body, public_pem
        ),
        "tampered payload": f"{header}.{tampered}.{signature}",
        "signature from another key under the real kid": jwt.encode(
            {"alg": "RS256", "kid": real_kid}, body, attacker
        ),
        "kid path traversal": jwt.encode(
            {"alg": "RS256", "kid": "../../../../etc/passwd"}, body, attacker
        ),
        "kid SQL": jwt.encode({"alg": "RS256", "kid": "' OR '1'='1' --"}, body, attacker),
        "kid not a string": f"{_segment({'alg': 'RS256', 'kid': {'$ne': 1}})}.{payload}.{signature}",
        "jku to the attacker": jwt.encode(
            {"alg": "RS256", "kid": "bait", "jku": bait_url + "/jwks"}, body, attacker
        ),
        "x5u to the attacker": jwt.encode(
            {"alg": "RS256", "kid": "bait", "x5u": bait_url + "/cert.pem"}, body, attacker
        ),
        "embedded jwk": jwt.encode(
            {"alg": "RS256", "jwk": attacker.as_dict(private=False)}, body, attacker
        ),
        "crit extension": f"{_segment({'alg': 'RS256', 'kid': real_kid, 'crit': ['exp']})}.{payload}.{signature}",
        "oversized": f"{header}.{_b64('x' * 40_000)}.{signature}",
        "non-JSON segments": "abc.def.ghi",
        "JSON that is not an object": f"{_b64('[1,2]')}.{_b64('3')}.{signature}",
        "four segments": f"{header}.{payload}.{signature}.extra",
        "empty signature": f"{header}.{payload}.",
        "non-ASCII": f"{header}.{payload}é.{signature}",
        "deep JSON": f"{_b64('[' * 100_000)}.{payload}.{signature}",
        "swapped segments": f"{payload}.{header}.{signature}",
    }


def test_forged_tokens_are_refused_without_a_traceback(
    gw: Gateway, idp: OidcIdp, caplog: pytest.LogCaptureFixture
) -> None:
    bait = KeyBait()
    with run_asgi(bait) as bait_url, caplog.at_level(logging.WARNING):
        for name, token in forged_tokens(idp, bait_url).items():
            status, error = refused(gw, token)
            assert (status, error["code"]) == (401, "unauthenticated"), name
            assert "Traceback" not in error["message"], name
    assert bait.hits == []
    assert not [record for record in caplog.records if record.exc_info], caplog.text
    assert "Traceback" not in caplog.text


def test_deactivation_stops_a_valid_token_at_once(gw: Gateway, idp: OidcIdp) -> None:
    token = idp.machine_token("contractor@example.eu", ["support-eu"])
    assert chat(gw, token)
    _eventually(lambda: "contractor@example.eu" in [u.name for u in gw.users()])
    gw.set_active("contractor@example.eu", False)
    status, error = refused(gw, token)  # the very next call
    assert (status, error["code"]) == (401, "identity_disabled")
    assert "geogate users activate contractor@example.eu" in error["message"]
    gw.set_active("contractor@example.eu", True)
    assert chat(gw, token)


def test_deactivation_ignores_the_case_of_the_name(gw: Gateway, idp: OidcIdp) -> None:
    gw.create_key("mixed@example.eu")
    gw.set_active("mixed@example.eu", False)
    token = idp.machine_token("Mixed@Example.EU", ["support-eu"])
    status, error = refused(gw, token)
    assert (status, error["code"]) == (401, "identity_disabled")


def test_a_deactivated_users_refused_calls_are_theirs_in_the_audit_trail(
    gw: Gateway, idp: OidcIdp
) -> None:
    token = idp.machine_token("gone@example.eu", ["support-eu"])
    assert chat(gw, token)
    _eventually(lambda: "gone@example.eu" in [u.name for u in gw.users()])
    gw.set_active("gone@example.eu", False)
    assert refused(gw, token)[1]["code"] == "identity_disabled"
    _eventually(
        lambda: (
            [
                event.detail["code"]
                for event in gw.on_store(
                    lambda store: store.list_events(kind="call.refused", subject="gone@example.eu")
                )
            ]
            == ["identity_disabled"]
        )
    )


def test_refused_calls_are_audit_events(gw: Gateway, idp: OidcIdp) -> None:
    token = idp.sign(claims(idp, email="late@example.eu", exp=int(time.time()) - 3600))
    refused(gw, token)
    _eventually(
        lambda: any(
            event.detail.get("code") == "unauthenticated"
            for event in gw.on_store(lambda store: store.list_events(kind="call.refused"))
        )
    )


def _eventually(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_scim_groups_add_to_the_groups_a_token_carries(gw: Gateway, idp: OidcIdp) -> None:
    token = idp.machine_token("fin@example.eu", [])
    assert refused(gw, token, "ledger")[1]["code"] == "connection_not_allowed"
    user = httpx2.post(
        gw.base_url + "/scim/v2/Users",
        headers=SCIM,
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "fin@example.eu",
        },
    ).json()
    group = httpx2.post(
        gw.base_url + "/scim/v2/Groups",
        headers=SCIM,
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "finance",
            "members": [{"value": user["id"]}],
        },
    ).json()
    assert chat(gw, token, "ledger")  # at once, with the token it already had
    removed = httpx2.patch(
        gw.base_url + f"/scim/v2/Groups/{group['id']}",
        headers=SCIM,
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "remove", "path": f'members[value eq "{user["id"]}"]'}],
        },
    )
    assert removed.status_code in (200, 204), removed.text
    assert refused(gw, token, "ledger")[1]["code"] == "connection_not_allowed"


def test_an_admin_group_in_the_token_opens_the_admin_api(gw: Gateway, idp: OidcIdp) -> None:
    admin = idp.machine_token("ops@example.eu", ["geogate-admins"])
    member = idp.machine_token("dev@example.eu", ["support-eu"])
    users = httpx2.get(gw.base_url + "/api/v1/users", headers={"Authorization": f"Bearer {admin}"})
    assert users.status_code == 200
    forbidden = httpx2.get(
        gw.base_url + "/api/v1/users", headers={"Authorization": f"Bearer {member}"}
    )
    assert forbidden.status_code == 403


def test_tokens_are_not_accepted_from_an_issuer_not_configured(
    tmp_path: Path, demo_url: str
) -> None:
    """Without identity.oidc, a JWT is just an unknown credential."""
    policy = POLICY.replace('    - {{issuer: "{issuer}", audience: geogate}}\n', "").replace(
        "  oidc:\n", "  oidc: []\n"
    )
    with run_gateway(tmp_path, policy.format(demo=demo_url, issuer="", scim="s" * 32)) as gateway:
        status, error = refused(gateway, "eyJhbGciOiJSUzI1NiJ9.e30.c2ln")
    assert (status, error["code"]) == (401, "unauthenticated")
