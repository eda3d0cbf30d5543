"""Console sign-in through the gateway: OIDC (code + PKCE, real IdP) and SAML (pysaml2 IdP).

A browser is played by a `requests.Session` following the same redirects and cookies.
Covered: the session cookie's flags, admin rights by group, CSRF refusal for cookie-driven
changes, deactivation ending open sessions and stopping new sign-ins, replayed and unsigned SAML
assertions, and a callback that was not started by this browser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.gateways import Gateway, run_gateway
from tests.oidc_idp import OidcIdp, running_idp
from tests.saml_idp import SamlIdp
from tests.servers import free_port

ACCOUNTS = {
    "ann": {"email": "ann@example.eu", "groups": ["geogate-admins"]},
    "bob": {"email": "bob@example.eu", "groups": ["support-eu"]},
}

POLICY = """
version: 1
gateway: {{state: "sqlite:///state.db", public_url: "{base}"}}
identity:
  oidc:
    - {{issuer: "{issuer}", audience: geogate}}
  login:
    oidc: {{issuer: "{issuer}", client_id: "{client_id}", client_secret: "{client_secret}",
            scopes: [openid, email, groups]}}
    saml: {{idp_metadata: "{saml_metadata}", user_attribute: uid}}
"""


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcIdp]:
    with running_idp(tmp_path_factory.mktemp("idp"), accounts=ACCOUNTS) as provider:
        yield provider


@pytest.fixture(scope="module")
def saml_idp(tmp_path_factory: pytest.TempPathFactory) -> SamlIdp:
    return SamlIdp.create(tmp_path_factory.mktemp("saml"))


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, idp: OidcIdp, saml_idp: SamlIdp
) -> Iterator[Gateway]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    client = idp.register_client(
        redirect_uris=[base + "/auth/callback"],
        grant_types=["authorization_code"],
        response_types=["code"],
        token_endpoint_auth_method="client_secret_basic",
    )
    policy = POLICY.format(
        base=base,
        issuer=idp.issuer,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        saml_metadata=saml_idp.metadata_path,
    )
    with run_gateway(tmp_path_factory.mktemp("gw"), policy, port) as gateway:
        saml_idp.trust(requests.get(base + "/saml/metadata", timeout=10).content)
        yield gateway


def oidc_sign_in(
    gw: Gateway, idp: OidcIdp, username: str
) -> tuple[requests.Session, requests.Response]:
    browser = requests.Session()
    back = idp.browser_login(gw.base_url + "/login/oidc", username, session=browser)
    landed = browser.get(back.headers["location"], allow_redirects=False, timeout=10)
    return browser, landed


def test_oidc_sign_in_gives_an_admin_a_session(gw: Gateway, idp: OidcIdp) -> None:
    browser, landed = oidc_sign_in(gw, idp, "ann")
    assert landed.status_code == 303 and landed.headers["location"] == "/"
    set_cookie = landed.headers["set-cookie"].lower()
    assert "geogate_session=" in set_cookie
    assert "httponly" in set_cookie and "samesite=lax" in set_cookie and "path=/" in set_cookie
    me = browser.get(gw.base_url + "/api/v1/me", timeout=10).json()
    assert me == {
        "subject": "ann@example.eu",
        "user": "ann@example.eu",
        "groups": ["geogate-admins"],
        "method": "session",
        "admin": True,
    }
    assert browser.get(gw.base_url + "/api/v1/users", timeout=10).status_code == 200
    assert "ann@example.eu" in browser.get(gw.base_url + "/", timeout=10).text


def test_the_authorize_request_uses_pkce_state_and_nonce(gw: Gateway) -> None:
    started = requests.get(gw.base_url + "/login/oidc", allow_redirects=False, timeout=10)
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43
    assert query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == [gw.base_url + "/auth/callback"]
    flow_cookie = started.headers["set-cookie"].lower()
    assert "httponly" in flow_cookie and "max-age=600" in flow_cookie


def test_a_non_admin_session_cannot_use_the_admin_api(gw: Gateway, idp: OidcIdp) -> None:
    browser, _ = oidc_sign_in(gw, idp, "bob")
    assert browser.get(gw.base_url + "/api/v1/me", timeout=10).json()["admin"] is False
    refused = browser.get(gw.base_url + "/api/v1/users", timeout=10)
    assert refused.status_code == 403
    assert "not in an admin group" in refused.json()["error"]["message"]


def test_a_cookie_driven_change_from_another_site_is_refused(gw: Gateway, idp: OidcIdp) -> None:
    browser, _ = oidc_sign_in(gw, idp, "ann")
    gw.create_key("victim@example.eu")
    url = gw.base_url + "/api/v1/users/victim@example.eu/deactivate"
    for origin in (None, "https://evil.example", "http://127.0.0.1:1"):
        headers = {} if origin is None else {"Origin": origin}
        refused = browser.post(url, headers=headers, timeout=10)
        assert refused.status_code == 401, origin
        assert "cross-site" in refused.json()["error"]["message"]
    allowed = browser.post(url, headers={"Origin": gw.base_url}, timeout=10)
    assert allowed.status_code == 200 and allowed.json()["active"] is False


def test_a_callback_not_started_by_this_browser_is_refused(gw: Gateway, idp: OidcIdp) -> None:
    attacker = requests.Session()
    back = idp.browser_login(gw.base_url + "/login/oidc", "bob", session=attacker)
    victim = requests.Session()  # has no flow cookie: login CSRF must fail
    landed = victim.get(back.headers["location"], allow_redirects=False, timeout=10)
    assert landed.status_code == 400
    assert "not started from this browser" in landed.text
    assert "geogate_session" not in landed.headers.get("set-cookie", "")


def test_an_idp_error_is_shown_not_a_traceback(gw: Gateway) -> None:
    page = requests.get(
        gw.base_url + "/auth/callback?error=access_denied&error_description=nope", timeout=10
    )
    assert page.status_code == 401
    assert "access_denied" in page.text and "Traceback" not in page.text


def test_deactivation_ends_sessions_and_stops_sign_in(gw: Gateway, idp: OidcIdp) -> None:
    accounts = {"cat": {"email": "cat@example.eu", "groups": ["geogate-admins"]}}
    idp.accounts.update(accounts)
    idp.restart()
    browser, _ = oidc_sign_in(gw, idp, "cat")
    assert browser.get(gw.base_url + "/api/v1/me", timeout=10).status_code == 200
    gw.set_active("cat@example.eu", False)
    ended = browser.get(gw.base_url + "/api/v1/me", timeout=10)
    assert (ended.status_code, ended.json()["error"]["code"]) == (401, "identity_disabled")
    _, again = oidc_sign_in(gw, idp, "cat")
    assert again.status_code == 403 and "deactivated" in again.text
    gw.set_active("cat@example.eu", True)


def test_sign_out_ends_the_session(gw: Gateway, idp: OidcIdp) -> None:
    browser, _ = oidc_sign_in(gw, idp, "ann")
    out = browser.post(gw.base_url + "/logout", allow_redirects=False, timeout=10)
    assert out.status_code == 303
    assert browser.get(gw.base_url + "/api/v1/me", timeout=10).status_code == 401


def test_an_unauthenticated_console_visit_goes_to_the_sign_in_page(gw: Gateway) -> None:
    visit = requests.get(gw.base_url + "/", allow_redirects=False, timeout=10)
    assert (visit.status_code, visit.headers["location"]) == (303, "/login")
    page = requests.get(gw.base_url + "/login", timeout=10).text
    assert "/login/oidc" in page and "/saml/login" in page


# --- SAML -------------------------------------------------------------------------------------


def saml_start(gw: Gateway) -> tuple[requests.Session, str]:
    browser = requests.Session()
    started = browser.get(gw.base_url + "/saml/login", allow_redirects=False, timeout=10)
    assert started.status_code == 303
    return browser, started.headers["location"]


def saml_post(gw: Gateway, browser: requests.Session, saml_response: str) -> requests.Response:
    return browser.post(
        gw.base_url + "/saml/acs",
        data={"SAMLResponse": saml_response, "RelayState": "/"},
        allow_redirects=False,
        timeout=10,
    )


def test_saml_metadata_is_served(gw: Gateway) -> None:
    metadata = requests.get(gw.base_url + "/saml/metadata", timeout=10)
    assert metadata.headers["content-type"].startswith("application/samlmetadata+xml")
    assert gw.base_url + "/saml/acs" in metadata.text
    assert 'WantAssertionsSigned="true"' in metadata.text


def test_a_signed_saml_assertion_signs_in(gw: Gateway, saml_idp: SamlIdp) -> None:
    browser, redirect = saml_start(gw)
    answer = saml_idp.respond(redirect, user="sam@example.eu", groups=["geogate-admins", "ops"])
    flow = browser.cookies.get("geogate_saml_flow")
    landed = saml_post(gw, browser, answer)
    assert landed.status_code == 303, landed.text
    assert "geogate_saml_flow" not in browser.cookies  # the flow is over
    me = browser.get(gw.base_url + "/api/v1/me", timeout=10).json()
    assert (me["user"], me["groups"], me["admin"]) == (
        "sam@example.eu",
        ["geogate-admins", "ops"],
        True,
    )
    browser.cookies.set("geogate_saml_flow", flow, path="/saml")  # a replay with the old flow
    replayed = saml_post(gw, browser, answer)
    assert replayed.status_code == 401 and "already used" in replayed.text


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"sign_assertion": False}, "signed"),
        ({"sign_assertion": False, "sign_response": True}, "signed"),
        ({"lifetime": __import__("datetime").timedelta(seconds=-120)}, ""),
    ],
)
def test_unsigned_or_expired_saml_assertions_are_refused(
    gw: Gateway, saml_idp: SamlIdp, options: dict[str, object], fragment: str
) -> None:
    browser, redirect = saml_start(gw)
    answer = saml_idp.respond(redirect, user="mallory@example.eu", **options)  # type: ignore[arg-type]
    refused = saml_post(gw, browser, answer)
    assert refused.status_code == 401
    assert fragment in refused.text and "Traceback" not in refused.text
    assert "geogate_session" not in refused.headers.get("set-cookie", "")


def test_a_saml_response_without_the_flow_cookie_is_refused(gw: Gateway, saml_idp: SamlIdp) -> None:
    _, redirect = saml_start(gw)
    answer = saml_idp.respond(redirect, user="sam@example.eu")
    refused = saml_post(gw, requests.Session(), answer)
    assert refused.status_code == 400 and "not started from this browser" in refused.text


def test_sign_in_is_not_offered_when_not_configured(tmp_path: Path) -> None:
    with run_gateway(tmp_path, "version: 1\ngateway: {state: 'sqlite:///state.db'}\n") as gateway:
        assert "not configured" in requests.get(gateway.base_url + "/login", timeout=10).text
        assert requests.get(gateway.base_url + "/login/oidc", timeout=10).status_code == 404
        assert requests.get(gateway.base_url + "/saml/metadata", timeout=10).status_code == 404


def test_cookies_are_secure_when_browsers_use_https(
    tmp_path: Path, idp: OidcIdp, saml_idp: SamlIdp
) -> None:
    """Behind a TLS-terminating proxy (`public_url: https://...`) every cookie is `Secure`."""
    public = "https://gw.example.test"
    client = idp.register_client(
        redirect_uris=[public + "/auth/callback"],
        grant_types=["authorization_code"],
        response_types=["code"],
        token_endpoint_auth_method="client_secret_basic",
    )
    policy = POLICY.format(
        base=public,
        issuer=idp.issuer,
        client_id=client["client_id"],
        client_secret=client["client_secret"],
        saml_metadata=saml_idp.metadata_path,
    )
    with run_gateway(tmp_path, policy) as gateway:
        browser = requests.Session()
        back = idp.browser_login(gateway.base_url + "/login/oidc", "ann", session=browser)
        callback = urlsplit(back.headers["location"])
        assert f"{callback.scheme}://{callback.netloc}" == public
        flow = browser.cookies.get("geogate_oidc_flow")
        assert flow  # kept by the cookie jar, which will not send a Secure cookie over http
        landed = requests.get(
            f"{gateway.base_url}{callback.path}?{callback.query}",
            headers={"Cookie": f"geogate_oidc_flow={flow}"},
            allow_redirects=False,
            timeout=10,
        )
        assert landed.status_code == 303, landed.text
        session_cookie = landed.headers["set-cookie"].lower()
        assert "geogate_session=" in session_cookie
        assert "secure" in session_cookie and "httponly" in session_cookie
        saml_start = requests.get(
            gateway.base_url + "/saml/login", allow_redirects=False, timeout=10
        )
        saml_cookie = saml_start.headers["set-cookie"].lower()
        assert "secure" in saml_cookie and "samesite=none" in saml_cookie


@pytest.mark.parametrize(
    ("asked", "landed"),
    [
        ("/reviews/rev_0123456789abcdef0123", "/reviews/rev_0123456789abcdef0123"),
        ("//evil.example/phish", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("/reviews/x?y=<script>", "/"),
    ],
)
def test_oidc_sign_in_returns_to_the_page_that_asked_for_it_on_this_site_only(
    gw: Gateway, idp: OidcIdp, asked: str, landed: str
) -> None:
    page = requests.get(gw.base_url + "/login", params={"next": asked}, timeout=10).text
    if landed != "/":
        assert 'href="/login/oidc?next=%2Freviews%2Frev_0123456789abcdef0123"' in page
    else:
        assert "next=" not in page and "evil" not in page
    browser = requests.Session()
    start = gw.base_url + "/login/oidc?" + urlencode({"next": asked})
    back = idp.browser_login(start, "ann", session=browser)
    arrived = browser.get(back.headers["location"], allow_redirects=False, timeout=10)
    assert (arrived.status_code, arrived.headers["location"]) == (303, landed)


def test_saml_sign_in_returns_to_the_page_that_asked_for_it(gw: Gateway, saml_idp: SamlIdp) -> None:
    browser = requests.Session()
    started = browser.get(
        gw.base_url + "/saml/login",
        params={"next": "/reviews/rev_0123456789abcdef0123"},
        allow_redirects=False,
        timeout=10,
    )
    answer = saml_idp.respond(started.headers["location"], user="sam@example.eu", groups=["ops"])
    landed = saml_post(gw, browser, answer)
    assert (landed.status_code, landed.headers["location"]) == (
        303,
        "/reviews/rev_0123456789abcdef0123",
    )
