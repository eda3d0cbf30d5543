"""The admin API and SCIM's door: who gets in, and what an admin can do through it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

from tests.gateways import Gateway, run_gateway

SCIM_TOKEN = "t" * 40

POLICY = f"""
version: 1
gateway: {{state: "sqlite:///state.db"}}
regions:
  onprem:lab: {{jurisdiction: eu}}
identity:
  api_keys: {{max_lifetime: 30d}}
  admin_groups: [platform-admins]
  scim: {{token: "{SCIM_TOKEN}"}}
connections:
  llm: {{type: openai, url: "http://127.0.0.1:9/v1", region: onprem:lab}}
policies:
  - {{name: support, subjects: {{groups: [support-eu]}}, connections: [llm]}}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with run_gateway(tmp_path_factory.mktemp("gw"), POLICY) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> dict[str, str]:
    return {
        "Authorization": "Bearer " + gw.create_key("root@example.eu", groups=["platform-admins"])
    }


def api(
    gw: Gateway, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> httpx2.Response:
    return httpx2.request(method, gw.base_url + path, headers=headers, **kwargs)


def test_the_openapi_document_is_public(gw: Gateway) -> None:
    document = httpx2.get(gw.base_url + "/api/openapi.json").json()
    assert document["info"]["title"] == "GeoGate admin API"
    assert {"/api/v1/users", "/api/v1/keys", "/api/v1/events"} <= document["paths"].keys()


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthenticated"),
        ({"Authorization": "Bearer nonsense"}, 401, "unauthenticated"),
        ({"Authorization": "Bearer " + "gk_" + "A" * 43}, 401, "unauthenticated"),
        ({"Authorization": f"Bearer {SCIM_TOKEN}"}, 401, "unauthenticated"),  # SCIM only
        ({"Cookie": "geogate_session=forged"}, 401, "unauthenticated"),
    ],
)
def test_strangers_are_kept_out(
    gw: Gateway, headers: dict[str, str], status: int, code: str
) -> None:
    refused = api(gw, "GET", "/api/v1/users", headers)
    assert (refused.status_code, refused.json()["error"]["code"]) == (status, code)
    if status == 401:
        assert refused.headers["www-authenticate"] == "Bearer"


def test_a_non_admin_is_forbidden(gw: Gateway) -> None:
    member = {"Authorization": "Bearer " + gw.create_key("sue@example.eu", groups=["support-eu"])}
    refused = api(gw, "GET", "/api/v1/users", member)
    assert refused.status_code == 403
    assert "platform-admins" in refused.json()["error"]["message"]
    me = api(gw, "GET", "/api/v1/me", member).json()
    assert (me["user"], me["admin"], me["method"]) == ("sue@example.eu", False, "api_key")


def test_an_admin_manages_keys_and_users(gw: Gateway, admin: dict[str, str]) -> None:
    made = api(
        gw,
        "POST",
        "/api/v1/keys",
        admin,
        json={
            "owner": "cara@example.eu",
            "service_account": "ci-cara",
            "groups": ["support-eu"],
            "expires": "7d",
        },
    )
    assert made.status_code == 201, made.text
    created = made.json()
    assert created["key"].startswith("gk_") and created["service_account"] == "ci-cara"

    keys = api(gw, "GET", "/api/v1/keys", admin).json()
    assert created["id"] in [key["id"] for key in keys]
    assert all("key" not in key for key in keys)  # never shown again
    accounts = api(gw, "GET", "/api/v1/service-accounts", admin).json()
    assert {"name": "ci-cara", "owner": "cara@example.eu", "keys": 1}.items() <= next(
        account for account in accounts if account["name"] == "ci-cara"
    ).items()

    off = api(gw, "POST", "/api/v1/users/cara@example.eu/deactivate", admin)
    assert off.status_code == 200 and off.json()["active"] is False
    data_path = httpx2.post(
        gw.url("llm") + "/chat/completions",
        headers={"Authorization": "Bearer " + created["key"]},
        json={},
    )
    assert data_path.json()["error"]["code"] == "identity_disabled"
    assert api(gw, "POST", "/api/v1/users/cara@example.eu/activate", admin).json()["active"]

    assert api(gw, "DELETE", f"/api/v1/keys/{created['id']}", admin).status_code == 204
    events = api(gw, "GET", "/api/v1/events?subject=cara@example.eu", admin).json()
    assert [(e["kind"], e["actor"]) for e in events if e["kind"] != "call.refused"] == [
        ("user.created", "root@example.eu"),
        ("key.created", "root@example.eu"),
        ("user.deactivated", "root@example.eu"),
        ("user.activated", "root@example.eu"),
    ]
    revoked = api(gw, "GET", f"/api/v1/events?kind=key.revoked&subject={created['id']}", admin)
    assert [e["actor"] for e in revoked.json()] == ["root@example.eu"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"owner": "x@example.eu", "expires": "90d"}, "max_lifetime"),
        ({"owner": "x@example.eu", "expires": "soon"}, "not a duration"),
        ({"owner": "has space"}, "not a user name"),
        ({"groups": ["a"]}, "owner"),
        ({"owner": "x@example.eu", "service_account": "../etc"}, "service account name"),
    ],
)
def test_bad_key_requests_say_why(
    gw: Gateway, admin: dict[str, str], body: dict[str, Any], fragment: str
) -> None:
    refused = api(gw, "POST", "/api/v1/keys", admin, json=body)
    assert refused.status_code == 400
    assert fragment in refused.json()["error"]["message"]


def test_unknown_things_are_404(gw: Gateway, admin: dict[str, str]) -> None:
    for method, path in [
        ("GET", "/api/v1/users/nobody@example.eu"),
        ("POST", "/api/v1/users/nobody@example.eu/activate"),
        ("DELETE", "/api/v1/keys/key_000000000000"),
    ]:
        refused = api(gw, method, path, admin)
        assert (refused.status_code, refused.json()["error"]["code"]) == (404, "not_found"), path


def test_deactivating_someone_not_seen_yet_blocks_them_in_advance(
    gw: Gateway, admin: dict[str, str]
) -> None:
    blocked = api(gw, "POST", "/api/v1/users/future-leaver@example.eu/deactivate", admin)
    assert blocked.status_code == 200 and blocked.json()["active"] is False
    bad = api(gw, "POST", "/api/v1/users/has%20space/deactivate", admin)
    assert bad.status_code == 400 and "not a user name" in bad.json()["error"]["message"]


def test_malformed_json_is_a_clear_400(gw: Gateway, admin: dict[str, str]) -> None:
    refused = api(
        gw, "POST", "/api/v1/keys", {**admin, "Content-Type": "application/json"}, content=b"{nope"
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "bad_request"


def test_scim_takes_its_token_or_an_admin(gw: Gateway, admin: dict[str, str]) -> None:
    scim_headers = {"Authorization": f"Bearer {SCIM_TOKEN}"}
    assert api(gw, "GET", "/scim/v2/Users", scim_headers).status_code == 200
    assert api(gw, "GET", "/scim/v2/Users", admin).status_code == 200
    member = {"Authorization": "Bearer " + gw.create_key("sam@example.eu", groups=["support-eu"])}
    for headers, status in [
        (member, 403),
        ({}, 401),
        ({"Authorization": "Bearer " + SCIM_TOKEN[:-1] + "u"}, 401),
    ]:
        refused = api(gw, "GET", "/scim/v2/Users", headers)
        assert refused.status_code == status
        assert refused.headers["content-type"].startswith("application/scim+json")
        body = refused.json()
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert body["status"] == str(status)


def test_scim_changes_made_by_an_admin_name_the_admin(gw: Gateway, admin: dict[str, str]) -> None:
    created = api(
        gw,
        "POST",
        "/scim/v2/Users",
        {**admin, "Content-Type": "application/scim+json"},
        json={
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "dee@example.eu",
        },
    )
    assert created.status_code == 201, created.text
    events = api(gw, "GET", "/api/v1/events?subject=dee@example.eu", admin).json()
    assert [(event["kind"], event["actor"]) for event in events] == [
        ("scim.user.created", "root@example.eu")
    ]


def test_admin_bodies_must_be_bounded(gw: Gateway, admin: dict[str, str]) -> None:
    huge = api(gw, "POST", "/api/v1/keys", admin, content=b"{" + b" " * (1024 * 1024 + 1) + b"}")
    assert huge.status_code == 413
    chunked = api(gw, "POST", "/api/v1/keys", admin, content=iter([b'{"owner": "x@example.eu"}']))
    assert chunked.status_code == 411
    assert "Content-Length" in chunked.json()["error"]["message"]
