"""SCIM 2.0 provisioning, called over HTTP the way Okta and Microsoft Entra ID call it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from starlette.types import Message, Receive, Scope, Send

from geogate.identity.scim import ScimApp
from geogate.store import Store, hash_api_key, open_store
from tests.servers import run_asgi

BASE = "https://gw.example.com/scim/v2"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
MAX_BODY = 1 << 20


class Worker:
    """ScimApp over its own store, opened in the server's event loop as a gateway worker does."""

    def __init__(self, state_url: str) -> None:
        self.state_url = state_url
        self.app: ScimApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            store: Store | None = None
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    store = await open_store(self.state_url, migrate=False)
                    self.app = ScimApp(store, BASE)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    if store is not None:
                        await store.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        assert self.app is not None
        await self.app(scope, receive, send)


@dataclass
class Answer:
    status: int
    body: Any
    headers: dict[str, str]

    def error(self, status: int, scim_type: str | None = None) -> str:
        """Check the RFC 7644 §3.12 error shape; the detail, for checks on its wording."""
        assert self.status == status, self.body
        assert self.body["schemas"] == [ERROR]
        assert self.body["status"] == str(status)
        assert self.body.get("scimType") == scim_type
        detail = self.body["detail"]
        assert isinstance(detail, str) and detail.endswith(".") and "Traceback" not in detail
        return detail


@dataclass
class Scim:
    session: aiohttp.ClientSession
    url: str
    """The server's root; SCIM answers under /scim/v2 there."""

    async def call(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Answer:
        if body is not None:
            data = json.dumps(body).encode()
        headers = {"content-type": "application/scim+json", "accept": "application/scim+json"}
        async with self.session.request(
            method, f"{self.url}/scim/v2{path}", data=data, params=params, headers=headers
        ) as response:
            raw = await response.read()
            assert response.headers["content-type"] == "application/scim+json"
            return Answer(response.status, json.loads(raw) if raw else None, dict(response.headers))

    async def create_user(self, name: str, **attributes: Any) -> dict[str, Any]:
        answer = await self.call(
            "POST", "/Users", {"schemas": [USER], "userName": name, **attributes}
        )
        assert answer.status == 201, answer.body
        body: dict[str, Any] = answer.body
        return body

    async def find(self, kind: str, query: str, **params: str) -> dict[str, Any]:
        answer = await self.call("GET", f"/{kind}", params={"filter": query, **params})
        assert answer.status == 200, answer.body
        body: dict[str, Any] = answer.body
        return body

    async def patch(self, kind: str, resource_id: str, *operations: dict[str, Any]) -> Answer:
        body = {"schemas": [PATCH], "Operations": list(operations)}
        return await self.call("PATCH", f"/{kind}/{resource_id}", body)


@pytest.fixture
async def scim(store: Store, state_url: str) -> AsyncIterator[Scim]:
    with run_asgi(Worker(state_url)) as url:
        async with aiohttp.ClientSession() as session:
            yield Scim(session, url)


async def test_discovery_documents_describe_what_is_served(scim: Scim) -> None:
    config = (await scim.call("GET", "/ServiceProviderConfig")).body
    assert config["patch"] == {"supported": True}
    assert config["filter"] == {"supported": True, "maxResults": 200}
    for feature in ("bulk", "sort", "etag", "changePassword"):
        assert config[feature]["supported"] is False
    assert [s["type"] for s in config["authenticationSchemes"]] == ["oauthbearertoken"]
    assert config["meta"]["location"] == f"{BASE}/ServiceProviderConfig"

    types = (await scim.call("GET", "/ResourceTypes")).body
    assert types["totalResults"] == 2
    assert {(t["name"], t["endpoint"], t["schema"]) for t in types["Resources"]} == {
        ("User", "/Users", USER),
        ("Group", "/Groups", GROUP),
    }
    assert (await scim.call("GET", "/ResourceTypes/Group")).body["schema"] == GROUP

    schemas = (await scim.call("GET", "/Schemas")).body
    assert {s["id"] for s in schemas["Resources"]} == {USER, GROUP}
    user_schema = (await scim.call("GET", f"/Schemas/{USER}")).body
    attributes = {a["name"]: a for a in user_schema["attributes"]}
    assert attributes["userName"]["required"] and attributes["userName"]["uniqueness"] == "server"
    assert attributes["groups"]["mutability"] == "readOnly"
    (await scim.call("GET", "/Schemas/urn:nope")).error(404)


async def test_okta_provisions_finds_and_deactivates_a_user(scim: Scim, store: Store) -> None:
    alice = "alice@example.com"
    assert (await scim.find("Users", f'userName eq "{alice}"'))["totalResults"] == 0

    answer = await scim.call(
        "POST",
        "/Users",
        {
            "schemas": [USER],
            "userName": alice,
            "externalId": "00u1okta",
            "name": {"givenName": "Alice", "familyName": "Smith"},
            "emails": [{"value": alice, "primary": True, "type": "work"}],
            "active": True,
            "password": "ignored",
        },
    )
    assert answer.status == 201
    user = answer.body
    assert answer.headers["Location"] == f"{BASE}/Users/{user['id']}"
    assert user["schemas"] == [USER]
    assert (user["userName"], user["externalId"], user["active"]) == (alice, "00u1okta", True)
    assert user["displayName"] == "Alice Smith" and user["name"] == {"formatted": "Alice Smith"}
    assert user["emails"] == [{"value": alice, "type": "work", "primary": True}]
    assert user["groups"] == []
    assert user["meta"]["resourceType"] == "User"
    assert user["meta"]["location"] == answer.headers["Location"]
    assert user["meta"]["created"].endswith("Z") and user["meta"]["lastModified"].endswith("Z")
    assert (await scim.call("GET", f"/Users/{user['id']}")).body == user

    for query in (
        f'userName eq "{alice}"',
        'userName EQ "ALICE@Example.COM"',
        'externalId eq "00u1okta"',
    ):
        found = await scim.find("Users", query)
        assert found["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:ListResponse"]
        assert (found["totalResults"], found["startIndex"], found["itemsPerPage"]) == (1, 1, 1)
        assert found["Resources"] == [user]
    assert (await scim.find("Users", 'externalId eq "00U1OKTA"'))["totalResults"] == 0
    assert (
        await scim.find(
            "Users", f'urn:ietf:params:scim:schemas:core:2.0:User:userName eq "{alice}"'
        )
    )["totalResults"] == 1

    revision = await store.directory_revision()
    answer = await scim.patch("Users", user["id"], {"op": "replace", "value": {"active": False}})
    assert answer.status == 200 and answer.body["active"] is False
    found = await store.find_user(alice)
    assert found is not None and found.active is False and found.deactivated_at is not None
    assert alice in (await store.load_directory()).inactive
    assert await store.directory_revision() > revision
    events = await store.list_events(kind="user.deactivated", subject=alice)
    assert [(e.actor, e.subject) for e in events] == [("scim", alice)]
    assert (await scim.find("Users", "active eq false"))["totalResults"] == 1
    assert (await scim.find("Users", "active eq true"))["totalResults"] == 0

    # Again: nothing changes, and the first deactivation time is kept.
    revision = await store.directory_revision()
    assert (
        await scim.patch("Users", user["id"], {"op": "replace", "path": "active", "value": False})
    ).status == 200
    again = await store.find_user(alice)
    assert again is not None and again.deactivated_at == found.deactivated_at
    assert await store.directory_revision() == revision
    assert len(await store.list_events(kind="user.deactivated")) == 1

    answer = await scim.patch(
        "Users", user["id"], {"op": "replace", "path": "active", "value": True}
    )
    assert answer.body["active"] is True
    back = await store.find_user(alice)
    assert back is not None and back.active and back.deactivated_at is None
    assert alice not in (await store.load_directory()).inactive
    assert [e.actor for e in await store.list_events(kind="user.activated")] == ["scim"]

    # Okta updates profiles with PUT; the userName the keys are bound to cannot change.
    put = {"schemas": [USER], "userName": alice, "displayName": "Alice S.", "active": True}
    answer = await scim.call("PUT", f"/Users/{user['id']}", put)
    assert answer.status == 200 and answer.body["displayName"] == "Alice S."
    assert "externalId" not in answer.body  # PUT replaces: left out means cleared
    renamed = await scim.call(
        "PUT", f"/Users/{user['id']}", {**put, "userName": "alice2@example.com"}
    )
    assert "userName cannot change" in renamed.error(400, "mutability")
    renamed = await scim.patch(
        "Users", user["id"], {"op": "replace", "path": "userName", "value": "x@y.z"}
    )
    renamed.error(400, "mutability")


async def test_entra_patches_with_capitalised_ops_and_string_booleans(
    scim: Scim, store: Store
) -> None:
    user = await scim.create_user("bob")
    assert "emails" not in user  # not an email address
    answer = await scim.patch(
        "Users",
        user["id"],
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "path": "externalId", "value": "entra-object-id"},
        {"op": "Replace", "path": "displayName", "value": "Bob B"},
        {"op": "Add", "path": "name.givenName", "value": "Bob"},
        {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "bob@example.com"},
        {"op": "Add", "path": f"{ENTERPRISE}:department", "value": "Sales"},
    )
    assert answer.status == 200, answer.body
    assert answer.body["active"] is False
    assert (answer.body["externalId"], answer.body["displayName"]) == ("entra-object-id", "Bob B")
    bob = await store.find_user("bob")
    assert bob is not None and not bob.active

    answer = await scim.patch(
        "Users",
        user["id"],
        {"op": "Replace", "path": "active", "value": "True"},
        {"op": "Replace", "path": "name.formatted", "value": "Robert"},
        {"op": "Remove", "path": "externalId"},
    )
    assert answer.body["active"] is True and answer.body["displayName"] == "Robert"
    assert "externalId" not in answer.body
    kinds = [e.kind for e in await store.list_events(subject="bob")]
    assert kinds == [
        "scim.user.created",
        "scim.user.updated",
        "user.deactivated",
        "scim.user.updated",
        "user.activated",
    ]

    bad = await scim.patch(
        "Users", user["id"], {"op": "Replace", "path": "active", "value": "maybe"}
    )
    bad.error(400, "invalidValue")
    (await scim.patch("Users", user["id"], {"op": "Move", "path": "active"})).error(
        400, "invalidSyntax"
    )
    (await scim.patch("Users", user["id"], {"op": "Remove"})).error(400, "noTarget")
    (await scim.patch("Users", user["id"], {"op": "add", "path": "groups", "value": []})).error(
        400, "mutability"
    )
    (await scim.patch("Users", user["id"], {"op": "add", "path": "shoeSize", "value": 9})).error(
        400, "invalidPath"
    )
    no_schema = await scim.call("PATCH", f"/Users/{user['id']}", {"Operations": []})
    no_schema.error(400, "invalidSyntax")


async def test_existing_users_are_linked_and_their_keys_follow(scim: Scim, store: Store) -> None:
    created = await store.create_key("carol@example.com", groups=["eng"], expires_in=3600)
    await store.create_key(
        "carol@example.com", groups=[], expires_in=3600, service_account="ci-bot"
    )
    user = await scim.create_user("carol@example.com", externalId="c-1")
    assert [u.name for u in await store.list_users()] == ["carol@example.com"]
    links = await store.list_events(kind="scim.user.created")
    assert links[0].detail == {"id": user["id"], "linked": True}

    duplicate = await scim.call(
        "POST", "/Users", {"schemas": [USER], "userName": "carol@example.com"}
    )
    assert "already provisioned" in duplicate.error(409, "uniqueness")
    shouted = await scim.call(
        "POST", "/Users", {"schemas": [USER], "userName": "CAROL@example.com"}
    )
    shouted.error(409, "uniqueness")

    await scim.patch("Users", user["id"], {"op": "replace", "value": {"active": False}})
    record = await store.find_key(hash_api_key(created.key))
    assert record is not None and record.owner_active is False
    accounts = await store.list_service_accounts()
    assert [(a.name, a.owner_active) for a in accounts] == [("ci-bot", False)]


async def test_groups_follow_member_changes(scim: Scim, store: Store) -> None:
    a, b, c = [await scim.create_user(f"{n}@example.com") for n in "abc"]
    answer = await scim.call(
        "POST",
        "/Groups",
        {
            "schemas": [GROUP],
            "displayName": "eng",
            "externalId": "g-1",
            "members": [{"value": a["id"]}],
        },
    )
    assert answer.status == 201
    group = answer.body
    gid = group["id"]
    assert answer.headers["Location"] == f"{BASE}/Groups/{gid}"
    assert group["members"] == [
        {
            "value": a["id"],
            "display": "a@example.com",
            "type": "User",
            "$ref": f"{BASE}/Users/{a['id']}",
        }
    ]

    async def members() -> dict[str, frozenset[str]]:
        return dict((await store.load_directory()).groups)

    assert await members() == {"a@example.com": frozenset({"eng"})}
    user = (await scim.call("GET", f"/Users/{a['id']}")).body
    assert user["groups"] == [{"value": gid, "display": "eng", "$ref": f"{BASE}/Groups/{gid}"}]

    revision = await store.directory_revision()
    answer = await scim.patch(
        "Groups", gid, {"op": "add", "path": "members", "value": [{"value": b["id"]}]}
    )
    assert {m["display"] for m in answer.body["members"]} == {"a@example.com", "b@example.com"}
    assert await store.directory_revision() > revision
    assert set(await members()) == {"a@example.com", "b@example.com"}

    await scim.patch("Groups", gid, {"op": "remove", "path": f'members[value eq "{a["id"]}"]'})
    assert set(await members()) == {"b@example.com"}
    await scim.patch(
        "Groups", gid, {"op": "replace", "path": "members", "value": [{"value": c["id"]}]}
    )
    assert set(await members()) == {"c@example.com"}
    # Entra: capitalised ops, removal by value list, several steps in one request, in order.
    await scim.patch(
        "Groups",
        gid,
        {"op": "Add", "path": "members", "value": [{"value": a["id"]}, {"value": b["id"]}]},
        {"op": "Remove", "path": "members", "value": [{"value": c["id"]}, {"value": b["id"]}]},
    )
    assert set(await members()) == {"a@example.com"}
    changes = await store.list_events(kind="scim.group.members")
    assert changes[-1].detail == {
        "id": gid,
        "added": ["a@example.com"],
        "removed": ["c@example.com"],
    }
    assert {e.actor for e in changes} == {"scim"}

    # Okta renames with a value object that repeats the id.
    answer = await scim.patch(
        "Groups", gid, {"op": "replace", "value": {"id": gid, "displayName": "engineering"}}
    )
    assert answer.body["displayName"] == "engineering"
    assert await members() == {"a@example.com": frozenset({"engineering"})}

    found = await scim.find("Groups", 'displayName eq "ENGINEERING"', excludedAttributes="members")
    assert found["totalResults"] == 1 and "members" not in found["Resources"][0]
    assert found["Resources"][0]["externalId"] == "g-1"
    single = await scim.call("GET", f"/Groups/{gid}", params={"excludedAttributes": "members"})
    assert "members" not in single.body and single.body["displayName"] == "engineering"
    assert (await scim.find("Groups", 'displayName eq "nope"'))["totalResults"] == 0

    # Unknown members are refused whole; removing a non-member is no error.
    unknown = await scim.patch(
        "Groups", gid, {"op": "add", "path": "members", "value": [{"value": "nobody"}]}
    )
    assert "nobody" in unknown.error(400, "invalidValue")
    assert set(await members()) == {"a@example.com"}
    assert (
        await scim.patch("Groups", gid, {"op": "remove", "path": 'members[value eq "nobody"]'})
    ).status == 200

    taken = await scim.call("POST", "/Groups", {"schemas": [GROUP], "displayName": "Engineering"})
    taken.error(409, "uniqueness")
    (await scim.call("POST", "/Groups", {"schemas": [GROUP]})).error(400, "invalidValue")
    long_name = {"schemas": [GROUP], "displayName": "x" * 257}
    (await scim.call("POST", "/Groups", long_name)).error(400, "invalidValue")
    (await scim.patch("Groups", gid, {"op": "remove", "path": "displayName"})).error(
        400, "mutability"
    )

    # PUT replaces the member list.
    put = {"schemas": [GROUP], "displayName": "engineering", "members": [{"value": b["id"]}]}
    assert (await scim.call("PUT", f"/Groups/{gid}", put)).status == 200
    assert set(await members()) == {"b@example.com"}
    await scim.patch("Groups", gid, {"op": "remove", "path": "members"})
    assert await members() == {}


async def test_delete_user_deprovisions_and_keeps_the_row(scim: Scim, store: Store) -> None:
    user = await scim.create_user("dave@example.com")
    group = (
        await scim.call(
            "POST",
            "/Groups",
            {"schemas": [GROUP], "displayName": "ops", "members": [{"value": user["id"]}]},
        )
    ).body
    revision = await store.directory_revision()

    answer = await scim.call("DELETE", f"/Users/{user['id']}")
    assert answer.status == 204 and answer.body is None
    (await scim.call("GET", f"/Users/{user['id']}")).error(404)
    (await scim.call("DELETE", f"/Users/{user['id']}")).error(404)
    dave = await store.find_user("dave@example.com")
    assert dave is not None and not dave.active
    directory = await store.load_directory()
    assert "dave@example.com" in directory.inactive and "dave@example.com" not in directory.groups
    assert directory.revision > revision
    assert (await scim.call("GET", f"/Groups/{group['id']}")).body["members"] == []
    deleted = await store.list_events(kind="scim.user.deleted")
    assert [(e.actor, e.detail["groups"]) for e in deleted] == [("scim", ["ops"])]

    # The IdP provisions the person again: the same row comes back, active, with a new id.
    again = await scim.create_user("dave@example.com")
    assert again["id"] != user["id"] and again["active"] is True
    assert [u.name for u in await store.list_users()] == ["dave@example.com"]


async def test_delete_group(scim: Scim, store: Store) -> None:
    user = await scim.create_user("erin@example.com")
    group = (
        await scim.call(
            "POST",
            "/Groups",
            {"schemas": [GROUP], "displayName": "sec", "members": [{"value": user["id"]}]},
        )
    ).body
    assert (await scim.call("DELETE", f"/Groups/{group['id']}")).status == 204
    (await scim.call("GET", f"/Groups/{group['id']}")).error(404)
    (await scim.call("DELETE", f"/Groups/{group['id']}")).error(404)
    assert (await store.load_directory()).groups == {}
    assert (await scim.call("GET", f"/Users/{user['id']}")).body["groups"] == []
    assert [e.subject for e in await store.list_events(kind="scim.group.deleted")] == ["sec"]


async def test_lists_page_from_a_one_based_start(scim: Scim) -> None:
    ids = [(await scim.create_user(f"user{i}@example.com"))["id"] for i in range(5)]

    async def page(**params: str) -> dict[str, Any]:
        answer = await scim.call("GET", "/Users", params=params)
        assert answer.status == 200, answer.body
        body: dict[str, Any] = answer.body
        return body

    first = await page(startIndex="1", count="2")
    assert (first["totalResults"], first["startIndex"], first["itemsPerPage"]) == (5, 1, 2)
    assert [u["id"] for u in first["Resources"]] == ids[:2]
    last = await page(startIndex="5", count="2")
    assert [u["id"] for u in last["Resources"]] == ids[4:]
    assert (await page(startIndex="9"))["Resources"] == []
    assert (await page(count="0"))["totalResults"] == 5
    assert (await page(count="0"))["Resources"] == []
    assert len((await page(count="100000", startIndex="-3"))["Resources"]) == 5
    assert (await page(startIndex=str(10**30)))["Resources"] == []
    only = await page(attributes="userName")
    assert set(only["Resources"][0]) == {"schemas", "id", "userName"}
    (await scim.call("GET", "/Users", params={"count": "ten"})).error(400, "invalidValue")


async def test_unsupported_filters_are_invalid(scim: Scim) -> None:
    for query in (
        'userName sw "a"',
        'userName eq "a" and active eq true',
        'name.familyName eq "x"',
        "userName eq alice",
        'active eq "true"',
        'displayName eq "x"',
        'userName eq "unterminated',
        "userName pr",
    ):
        answer = await scim.call("GET", "/Users", params={"filter": query})
        assert "filter" in answer.error(400, "invalidFilter"), query
    answer = await scim.call("GET", "/Groups", params={"filter": 'userName eq "x"'})
    answer.error(400, "invalidFilter")


async def test_injection_looking_filter_values_match_nothing(scim: Scim) -> None:
    await scim.create_user("x")
    for query in (
        r'userName eq "x\" or \"1\"=\"1"',
        """userName eq "x' OR '1'='1" """,
        'userName eq "%"',
        'userName eq "x%"',
        r'externalId eq "\\"',
    ):
        assert (await scim.find("Users", query))["totalResults"] == 0, query
    control = await scim.call("GET", "/Users", params={"filter": r'userName eq "x\u0000"'})
    control.error(400, "invalidFilter")
    assert (await scim.find("Users", 'userName eq "x"'))["totalResults"] == 1


async def test_bad_requests_get_scim_errors(scim: Scim) -> None:
    (await scim.call("POST", "/Users", data=b'{"userName": ')).error(400, "invalidSyntax")
    (await scim.call("POST", "/Users", data=b"[1, 2]")).error(400, "invalidSyntax")
    (await scim.call("POST", "/Users", data=b"\xff\xfe{")).error(400, "invalidSyntax")
    (await scim.call("POST", "/Users", data=b"[" * 100_000)).error(400, "invalidSyntax")
    (await scim.call("POST", "/Users", {"userName": "no-schemas"})).error(400, "invalidSyntax")
    for name in (None, "", "has space", "tab\there", "x" * 321, 42):
        answer = await scim.call("POST", "/Users", {"schemas": [USER], "userName": name})
        answer.error(400, "invalidValue")
    long_display = {"schemas": [USER], "userName": "ok", "displayName": "d" * 257}
    (await scim.call("POST", "/Users", long_display)).error(400, "invalidValue")
    (
        await scim.call("POST", "/Users", {"schemas": [USER], "userName": "ok", "active": "yes"})
    ).error(400, "invalidValue")

    for method in ("GET", "PUT", "PATCH", "DELETE"):
        body = {
            "schemas": [PATCH],
            "Operations": [{"op": "add", "path": "displayName", "value": "x"}],
        }
        if method == "PUT":
            body = {"schemas": [USER], "userName": "ghost"}
        answer = await scim.call(
            method, "/Users/no-such-id", body if method in ("PUT", "PATCH") else None
        )
        assert "no-such-id" in answer.error(404)
    (await scim.call("GET", "/Groups/no-such-id")).error(404)
    (await scim.call("GET", "/Bulk")).error(404)
    (await scim.call("GET", "/Users/a/b")).error(404)
    not_allowed = await scim.call("PUT", "/Users")
    not_allowed.error(405)
    assert not_allowed.headers["Allow"] == "GET, POST"
    (await scim.call("POST", "/ServiceProviderConfig", {})).error(405)


async def raw_http(url: str, head: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """Send a hand-made request (to control how much of the body goes out); status and JSON."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    writer.write(head.encode() + body)
    await writer.drain()
    response = await reader.read()
    writer.close()
    await writer.wait_closed()
    headers, _, payload = response.partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    assert b"content-type: application/scim+json" in headers.lower()
    return status, json.loads(payload)


async def test_bodies_over_one_mebibyte_are_refused(scim: Scim) -> None:
    declared = (
        "POST /scim/v2/Users HTTP/1.1\r\nhost: gw\r\ncontent-type: application/scim+json\r\n"
        f"content-length: {MAX_BODY + 1}\r\nconnection: close\r\n\r\n"
    )
    status, body = await raw_http(scim.url, declared, b"")
    assert (status, body["status"], body["schemas"]) == (413, "413", [ERROR])

    chunked = (
        "POST /scim/v2/Users HTTP/1.1\r\nhost: gw\r\ncontent-type: application/scim+json\r\n"
        "transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    piece = b" " * (64 * 1024)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(MAX_BODY // len(piece)))
    status, body = await raw_http(scim.url, chunked, chunks + b"1\r\n \r\n")
    assert (status, body["status"]) == (413, "413")

    near = {"schemas": [USER], "userName": "big@example.com", "displayName": "ok"}
    padded = json.dumps(near).encode().ljust(MAX_BODY, b" ")
    assert (await scim.call("POST", "/Users", data=padded)).status == 201


async def test_the_app_answers_under_a_mount_and_for_other_scopes(store: Store) -> None:
    app = ScimApp(store, BASE)
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    for root_path, path in [
        ("/scim/v2", "/scim/v2/ServiceProviderConfig"),
        ("", "/ServiceProviderConfig"),
    ]:
        scope = {
            "type": "http",
            "method": "GET",
            "path": path,
            "root_path": root_path,
            "query_string": b"",
            "headers": [],
        }
        await app(scope, receive, send)
        assert sent[0]["status"] == 200
        assert json.loads(sent[1]["body"])["patch"] == {"supported": True}
        sent.clear()
    await app({"type": "websocket"}, receive, send)
    assert sent == []
