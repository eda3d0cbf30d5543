"""SCIM 2.0 (RFC 7643/7644) Users and Groups, so an IdP can provision and deprovision people.

    app = ScimApp(store, base_url="https://gw.example.com/scim/v2")
    # the gateway authenticates the IdP, then hands it requests under /scim/v2

Okta and Microsoft Entra ID speak slightly different dialects (Entra capitalises PATCH ops and
sends booleans as strings); both are accepted. Deactivating or deleting a user switches them off
in every worker at once, through the store's directory revision. The app does no authentication
of its own: the gateway checks the SCIM bearer token (or an admin) before calling it.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NoReturn
from urllib.parse import parse_qsl, quote

from sqlalchemy.exc import SQLAlchemyError
from starlette.types import Receive, Scope, Send

from geogate.store import (
    KEEP,
    Keep,
    MemberChange,
    ScimError,
    ScimGroup,
    ScimUser,
    Store,
)

logger = logging.getLogger("geogate.scim")

CONTENT_TYPE: Final = "application/scim+json"
MAX_BODY: Final = 1 << 20
"""Largest request body accepted (1 MiB); a group of thousands of members fits well within."""
MAX_RESULTS: Final = 200
DEFAULT_COUNT: Final = 100
_LAST_START: Final = 2**31
"""Larger startIndex values page past any directory (and past what SQLite takes as OFFSET)."""
MOUNT: Final = "/scim/v2"

USER_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_SCHEMA: Final = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_SCHEMA: Final = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA: Final = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA: Final = "urn:ietf:params:scim:api:messages:2.0:Error"
CONFIG_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA_SCHEMA: Final = "urn:ietf:params:scim:schemas:core:2.0:Schema"

_FILTER = re.compile(
    r'\s*([A-Za-z][\w:.$-]*)\s+eq\s+("(?:[^"\\]|\\.)*"|true|false)\s*', re.IGNORECASE
)
_MEMBER_PATH = re.compile(r'members\[\s*value\s+eq\s+("(?:[^"\\]|\\.)*")\s*\]', re.IGNORECASE)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_IGNORED_USER_ATTRIBUTES = frozenset(
    {
        "nickname",
        "profileurl",
        "title",
        "usertype",
        "preferredlanguage",
        "locale",
        "timezone",
        "password",
        "emails",
        "phonenumbers",
        "ims",
        "photos",
        "addresses",
        "entitlements",
        "roles",
        "x509certificates",
    }
)
"""Core User attributes the gateway does not keep: accepted and dropped, as RFC 7644 allows.

Emails are derived from userName, the only name keys and tokens are matched by."""

Json = dict[str, Any]
Op = Literal["add", "remove", "replace"]
_OPS: Final[dict[str, Op]] = {"add": "add", "remove": "remove", "replace": "replace"}


class _Refusal(Exception):
    """An answer other than success: an RFC 7644 §3.12 error."""

    def __init__(
        self,
        status: int,
        detail: str,
        scim_type: str | None = None,
        headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = tuple(headers)


def _bad(scim_type: str, detail: str) -> _Refusal:
    return _Refusal(400, detail, scim_type)


@dataclass
class _Response:
    status: int
    body: Json | None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


@dataclass(frozen=True)
class _Request:
    method: str
    parts: tuple[str, ...]
    query: Mapping[str, str]
    receive: Receive
    scope: Scope


@dataclass(frozen=True)
class _Shape:
    """Which attributes to return (`attributes`, `excludedAttributes` query parameters)."""

    only: frozenset[str] | None
    excluded: frozenset[str]

    def wants(self, attribute: str) -> bool:
        if attribute in ("id", "schemas"):
            return True
        name = attribute.lower()
        return (self.only is None or name in self.only) and name not in self.excluded


class ScimApp:
    """The `/scim/v2` ASGI app; errors are SCIM errors, never tracebacks."""

    def __init__(self, store: Store, base_url: str, actor: str = "scim") -> None:
        """`actor` is named in the audit events: the IdP (`scim`) or the admin acting."""
        self._directory = store.scim.acting_as(actor)
        self._base = base_url.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        try:
            response = await self._dispatch(_request(scope, receive))
        except _Refusal as refusal:
            response = _error(refusal.status, refusal.detail, refusal.scim_type)
            response.headers.extend(refusal.headers)
        except ScimError as exc:
            status = 409 if exc.scim_type == "uniqueness" else 400
            response = _error(status, str(exc), exc.scim_type)
        except SQLAlchemyError:
            logger.exception("SCIM request failed on the state database")
            response = _error(503, "The state database is busy or unavailable; retry shortly.")
        except Exception:  # a bug must still answer in SCIM's shape, without a traceback
            logger.exception("SCIM request failed")
            response = _error(500, "The gateway failed to handle this request; see its log.")
        await _send(send, response)

    async def _dispatch(self, request: _Request) -> _Response:
        parts = request.parts
        if parts in (("Users",), ("Groups",)) or (
            len(parts) == 2 and parts[0] in ("Users", "Groups")
        ):
            return await self._resources(request)
        if parts == ("ServiceProviderConfig",) or (
            len(parts) in (1, 2) and parts[0] in ("ResourceTypes", "Schemas")
        ):
            _allow(request, "GET")
            return _Response(200, self._discovery(parts))
        raise _Refusal(
            404,
            f"Nothing is served at {MOUNT}/{'/'.join(parts)}; SCIM resources are at "
            f"{MOUNT}/Users and {MOUNT}/Groups.",
        )

    async def _resources(self, request: _Request) -> _Response:
        kind, *rest = request.parts
        users = kind == "Users"
        if not rest:
            _allow(request, "GET", "POST")
            if request.method == "GET":
                return await (self._list_users(request) if users else self._list_groups(request))
            body = await _json_body(request)
            return await (
                self._create_user(body, request) if users else self._create_group(body, request)
            )
        resource_id = rest[0]
        _allow(request, "GET", "PUT", "PATCH", "DELETE")
        if request.method == "DELETE":
            directory = self._directory
            deleted = await (
                directory.delete_user(resource_id) if users else directory.delete_group(resource_id)
            )
            if not deleted:
                raise _not_found(kind, resource_id)
            return _Response(204, None)
        shape = _shape(request.query)
        if request.method == "GET":
            if users:
                user = await self._directory.get_user(resource_id)
                return self._user_response(200, user, shape, resource_id)
            group = await self._directory.get_group(resource_id, members=shape.wants("members"))
            return self._group_response(200, group, shape, resource_id)
        body = await _json_body(request)
        if users:
            update = _put_user(body) if request.method == "PUT" else _patch_user(body, resource_id)
            user = await self._directory.update_user(resource_id, **update)
            return self._user_response(200, user, shape, resource_id)
        name, external_id, changes = (
            _put_group(body) if request.method == "PUT" else _patch_group(body, resource_id)
        )
        group = await self._directory.update_group(
            resource_id, display_name=name, external_id=external_id, members=changes
        )
        return self._group_response(200, group, shape, resource_id)

    async def _create_user(self, body: Json, request: _Request) -> _Response:
        fields = _put_user(body)
        active = fields["active"]
        user = await self._directory.create_user(
            fields["user_name"],
            external_id=fields["external_id"],
            display_name=fields["display_name"],
            active=True if isinstance(active, Keep) else active,
        )
        response = self._user_response(201, user, _shape(request.query), user.id)
        response.headers.append((b"location", self._location("Users", user.id).encode()))
        return response

    async def _create_group(self, body: Json, request: _Request) -> _Response:
        name, external_id, changes = _put_group(body)
        group = await self._directory.create_group(
            name,
            external_id=external_id,
            members=changes[0].user_ids if changes else (),
        )
        response = self._group_response(201, group, _shape(request.query), group.id)
        response.headers.append((b"location", self._location("Groups", group.id).encode()))
        return response

    async def _list_users(self, request: _Request) -> _Response:
        offset, limit = _page(request.query)
        filters: dict[str, Any] = {}
        found = _filter(request.query)
        if found is not None:
            attribute, value = found
            names = {"username": "user_name", "externalid": "external_id", "id": "user_id"}
            if attribute in names and isinstance(value, str):
                filters[names[attribute]] = value
            elif attribute == "active" and isinstance(value, bool):
                filters["active"] = value
            else:
                raise _unsupported_filter("Users", 'userName eq "alice@example.com"')
        page = await self._directory.list_users(offset=offset, limit=limit, **filters)
        shape = _shape(request.query)
        resources = [_project(self._user(user), shape) for user in page.items]
        return _Response(200, _list(page.total, offset, resources))

    async def _list_groups(self, request: _Request) -> _Response:
        offset, limit = _page(request.query)
        filters: dict[str, str] = {}
        found = _filter(request.query)
        if found is not None:
            attribute, value = found
            names = {"displayname": "display_name", "externalid": "external_id", "id": "group_id"}
            if attribute not in names or not isinstance(value, str):
                raise _unsupported_filter("Groups", 'displayName eq "support"')
            filters[names[attribute]] = value
        shape = _shape(request.query)
        page = await self._directory.list_groups(
            offset=offset, limit=limit, members=shape.wants("members"), **filters
        )
        resources = [_project(self._group(group), shape) for group in page.items]
        return _Response(200, _list(page.total, offset, resources))

    def _user_response(
        self, status: int, user: ScimUser | None, shape: _Shape, resource_id: str
    ) -> _Response:
        if user is None:
            raise _not_found("Users", resource_id)
        return _Response(status, _project(self._user(user), shape))

    def _group_response(
        self, status: int, group: ScimGroup | None, shape: _Shape, resource_id: str
    ) -> _Response:
        if group is None:
            raise _not_found("Groups", resource_id)
        return _Response(status, _project(self._group(group), shape))

    def _user(self, user: ScimUser) -> Json:
        resource: Json = {"schemas": [USER_SCHEMA], "id": user.id}
        if user.external_id is not None:
            resource["externalId"] = user.external_id
        resource["userName"] = user.user_name
        if user.display_name is not None:
            resource["name"] = {"formatted": user.display_name}
            resource["displayName"] = user.display_name
        resource["active"] = user.active
        if _EMAIL.fullmatch(user.user_name):
            resource["emails"] = [{"value": user.user_name, "type": "work", "primary": True}]
        resource["groups"] = [
            {"value": g.value, "display": g.display, "$ref": self._location("Groups", g.value)}
            for g in user.groups
        ]
        resource["meta"] = self._meta("User", user.id, user.created_at, user.modified_at)
        return resource

    def _group(self, group: ScimGroup) -> Json:
        resource: Json = {"schemas": [GROUP_SCHEMA], "id": group.id}
        if group.external_id is not None:
            resource["externalId"] = group.external_id
        resource["displayName"] = group.display_name
        if group.members is not None:
            resource["members"] = [
                {
                    "value": m.value,
                    "display": m.display,
                    "type": "User",
                    "$ref": self._location("Users", m.value),
                }
                for m in group.members
            ]
        resource["meta"] = self._meta("Group", group.id, group.created_at, group.modified_at)
        return resource

    def _meta(self, kind: str, resource_id: str, created: datetime, modified: datetime) -> Json:
        return {
            "resourceType": kind,
            "created": _timestamp(created),
            "lastModified": _timestamp(modified),
            "location": self._location(f"{kind}s", resource_id),
        }

    def _location(self, collection: str, resource_id: str) -> str:
        return f"{self._base}/{collection}/{quote(resource_id, safe='')}"

    def _discovery(self, parts: tuple[str, ...]) -> Json:
        """The static documents that describe this service provider (RFC 7644 §4)."""
        if parts == ("ServiceProviderConfig",):
            return {**_SERVICE_PROVIDER_CONFIG, "meta": self._static_meta(*parts)}
        documents: dict[str, Json]
        if parts[0] == "ResourceTypes":
            documents = {
                name: {
                    **document,
                    "meta": self._static_meta("ResourceType", f"ResourceTypes/{name}"),
                }
                for name, document in _RESOURCE_TYPES.items()
            }
        else:
            documents = {
                urn: {**document, "meta": self._static_meta("Schema", f"Schemas/{urn}")}
                for urn, document in _SCHEMAS.items()
            }
        if len(parts) == 1:
            return _list(len(documents), 0, list(documents.values()))
        if parts[1] not in documents:
            raise _Refusal(
                404,
                f"There is no {parts[0]} entry {parts[1]!r}; GET {MOUNT}/{parts[0]} lists them.",
            )
        return documents[parts[1]]

    def _static_meta(self, kind: str, path: str | None = None) -> Json:
        return {"resourceType": kind, "location": f"{self._base}/{path or kind}"}


# --- Requests ------------------------------------------------------------------------------------


def _request(scope: Scope, receive: Receive) -> _Request:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if path == MOUNT or path.startswith(MOUNT + "/"):
        path = path[len(MOUNT) :]
    raw = scope.get("query_string", b"").decode("latin-1")
    pairs = parse_qsl(raw, keep_blank_values=True, errors="replace")
    return _Request(
        method=scope["method"].upper(),
        parts=tuple(part for part in path.split("/") if part),
        query={name.lower(): value for name, value in pairs},
        receive=receive,
        scope=scope,
    )


def _allow(request: _Request, *methods: str) -> None:
    if request.method not in methods:
        raise _Refusal(
            405,
            f"{request.method} is not supported here; use {', '.join(methods)}.",
            headers=[(b"allow", ", ".join(methods).encode())],
        )


async def _json_body(request: _Request) -> Json:
    """The request's JSON object, read up to `MAX_BODY` bytes."""
    for name, value in request.scope.get("headers", ()):
        if name == b"content-length" and value.isdigit() and int(value) > MAX_BODY:
            raise _too_large()
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise _bad("invalidSyntax", "The client went away before sending the whole body.")
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            raise _too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    try:
        body = json.loads(b"".join(chunks), parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise _bad(
            "invalidSyntax", "The request body is not valid JSON; send a JSON object."
        ) from None
    if not isinstance(body, dict):
        raise _bad("invalidSyntax", "The request body must be a JSON object.")
    return body


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _too_large() -> _Refusal:
    return _Refusal(413, f"The request body is over {MAX_BODY} bytes; send fewer changes at once.")


def _page(query: Mapping[str, str]) -> tuple[int, int]:
    """(offset, limit) from the 1-based `startIndex` and `count`, clamped as RFC 7644 §3.4.2.4."""
    start = _integer(query, "startindex", 1)
    count = _integer(query, "count", DEFAULT_COUNT)
    return min(max(start, 1), _LAST_START) - 1, min(max(count, 0), MAX_RESULTS)


def _integer(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        label = "startIndex" if name == "startindex" else name
        raise _bad("invalidValue", f"{label} must be a whole number, not {text[:32]!r}.") from None


def _filter(query: Mapping[str, str]) -> tuple[str, str | bool] | None:
    """(attribute in lower case, value) of a filter `ATTRIBUTE eq VALUE`, the one form served."""
    text = query.get("filter")
    if text is None or text.strip() == "":
        return None
    match = _FILTER.fullmatch(text)
    if match is None:
        raise _bad(
            "invalidFilter",
            f"The filter {text[:100]!r} is not supported; use one comparison of the form "
            'ATTRIBUTE eq "VALUE" (or active eq true).',
        )
    attribute = _attribute_path(match.group(1))
    literal = match.group(2)
    if literal.lower() in ("true", "false"):
        return attribute, literal.lower() == "true"
    return attribute, _decoded(match)


def _decoded(match: re.Match[str]) -> str:
    """The JSON string literal a pattern captured last, checked to be printable text."""
    literal = match.group(match.lastindex or 0)
    try:
        value = json.loads(literal)
    except ValueError:
        value = None
    if not isinstance(value, str) or not value.isprintable():
        raise _bad("invalidFilter", f"{literal[:100]} is not a string of printable characters.")
    return value


def _unsupported_filter(kind: str, example: str) -> _Refusal:
    supported = (
        "userName, externalId, id (strings) or active (true/false)"
        if kind == "Users"
        else "displayName, externalId or id"
    )
    return _bad(
        "invalidFilter", f"{kind} can be filtered by {supported}, for example filter={example}."
    )


def _shape(query: Mapping[str, str]) -> _Shape:
    def names(text: str | None) -> frozenset[str]:
        return frozenset(
            _attribute_path(name.strip()).split(".")[0]
            for name in (text or "").split(",")
            if name.strip()
        )

    only = query.get("attributes")
    return _Shape(names(only) if only else None, names(query.get("excludedattributes")))


def _project(resource: Json, shape: _Shape) -> Json:
    return {key: value for key, value in resource.items() if shape.wants(key)}


def _attribute_path(path: str) -> str:
    """`path` in lower case, without the core schema's URN (names are case-insensitive)."""
    return _without_urn(path).lower()


def _without_urn(path: str) -> str:
    for urn in (USER_SCHEMA, GROUP_SCHEMA):
        if path.lower().startswith(urn.lower() + ":"):
            return path[len(urn) + 1 :]
    return path


def _not_found(kind: str, resource_id: str) -> _Refusal:
    noun = "user" if kind == "Users" else "group"
    return _Refusal(
        404,
        f"No {noun} has the id {resource_id[:64]!r}; list them with GET {MOUNT}/{kind}.",
    )


# --- Resource bodies -----------------------------------------------------------------------------

UserUpdate = dict[str, Any]
"""Keyword arguments for `ScimDirectory.update_user`."""


def _lowered(body: Mapping[str, Any]) -> Json:
    """The object with its keys in lower case: SCIM attribute names ignore case."""
    return {str(key).lower(): value for key, value in body.items()}


def _check_schemas(body: Json, urn: str) -> None:
    schemas = _lowered(body).get("schemas")
    if not isinstance(schemas, list) or urn.lower() not in {
        s.lower() for s in schemas if isinstance(s, str)
    }:
        raise _bad("invalidSyntax", f'The request body must list "{urn}" in its schemas.')


def _put_user(body: Json) -> UserUpdate:
    """A user's attributes from a POST or PUT body: left out is cleared, but `active` is kept."""
    _check_schemas(body, USER_SCHEMA)
    attributes = _lowered(body)
    user_name = attributes.get("username")
    if not isinstance(user_name, str):
        raise _bad("invalidValue", "userName is required: the person's login or email, a string.")
    update: UserUpdate = {
        "user_name": user_name,
        "external_id": _string(attributes.get("externalid"), "externalId"),
        "display_name": _display_name(attributes),
        "active": KEEP if attributes.get("active") is None else _boolean(attributes["active"]),
    }
    return update


def _display_name(attributes: Json) -> str | None:
    """displayName, else name.formatted, else the given and family names joined."""
    display = _string(attributes.get("displayname"), "displayName")
    if display is not None:
        return display
    return _formatted_name(attributes.get("name"))


def _formatted_name(name: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, dict):
        raise _bad("invalidValue", 'name must be an object such as {"formatted": "Alice Smith"}.')
    parts = _lowered(name)
    formatted = _string(parts.get("formatted"), "name.formatted")
    if formatted is not None:
        return formatted
    given = _string(parts.get("givenname"), "name.givenName")
    family = _string(parts.get("familyname"), "name.familyName")
    joined = " ".join(part for part in (given, family) if part)
    return joined or None


def _patch_user(body: Json, user_id: str) -> UserUpdate:
    """The attribute changes of a PATCH on a user (Okta and Entra styles)."""
    update: UserUpdate = {}
    for op, path, value in _operations(body):
        for key, item in _targets(path, value):
            _patch_user_attribute(update, op, key, item, user_id)
    return update


def _targets(path: str | None, value: Any) -> list[tuple[str, Any]]:
    """(path, value) pairs of an operation: an operation without a path sets several."""
    if path is not None:
        return [(path, value)]
    if not isinstance(value, dict):
        raise _bad(
            "invalidValue", "An operation without a path needs an object of attributes as value."
        )
    return [(str(key), item) for key, item in value.items()]


def _patch_user_attribute(update: UserUpdate, op: str, path: str, value: Any, user_id: str) -> None:
    attribute = _attribute_path(path)
    top = re.split(r"[.\[]", attribute, maxsplit=1)[0]
    removing = op == "remove"
    if (
        top in _IGNORED_USER_ATTRIBUTES
        or top in ("schemas", "meta")
        or attribute.startswith(ENTERPRISE_SCHEMA.lower())
        or (top == "id" and value == user_id and not removing)
    ):
        return
    if top == "active":
        if removing:
            raise _bad("invalidValue", "active cannot be removed; replace it with true or false.")
        update["active"] = _boolean(value)
    elif top == "username":
        if removing:
            raise _bad("mutability", "userName is required and cannot be removed.")
        update["user_name"] = _required_string(value, "userName")
    elif top == "externalid":
        update["external_id"] = None if removing else _string(value, "externalId")
    elif top == "displayname":
        update["display_name"] = None if removing else _string(value, "displayName")
    elif attribute == "name":
        update["display_name"] = None if removing else _formatted_name(value)
    elif attribute == "name.formatted":
        update["display_name"] = None if removing else _string(value, "name.formatted")
    elif top == "name":
        return  # givenName and the like: only the formatted name is kept
    elif top in ("id", "groups"):
        raise _bad(
            "mutability",
            f"{path} is read-only; group membership changes through {MOUNT}/Groups.",
        )
    else:
        raise _bad("invalidPath", f"Users have no attribute {path[:100]!r}.")


def _put_group(body: Json) -> tuple[str, str | None, list[MemberChange]]:
    """(displayName, externalId, members as one replace) from a POST or PUT body."""
    _check_schemas(body, GROUP_SCHEMA)
    attributes = _lowered(body)
    name = _required_string(attributes.get("displayname"), "displayName")
    external_id = _string(attributes.get("externalid"), "externalId")
    members = _member_ids(attributes.get("members"))
    return name, external_id, [MemberChange("replace", members)]


def _patch_group(
    body: Json, group_id: str
) -> tuple[str | Keep, str | Keep | None, list[MemberChange]]:
    """(displayName, externalId, member changes in order) of a PATCH on a group."""
    name: str | Keep = KEEP
    external_id: str | Keep | None = KEEP
    changes: list[MemberChange] = []
    for op, path, value in _operations(body):
        for key, item in _targets(path, value):
            attribute = _attribute_path(key)
            removing = op == "remove"
            member = _MEMBER_PATH.fullmatch(_without_urn(key))
            if attribute == "displayname":
                if removing:
                    raise _bad("mutability", "displayName is required and cannot be removed.")
                name = _required_string(item, "displayName")
            elif attribute == "externalid":
                external_id = None if removing else _string(item, "externalId")
            elif attribute == "members":
                ids = _member_ids(item)
                if removing and item is None:
                    changes.append(MemberChange("replace", frozenset()))  # remove them all
                else:
                    changes.append(MemberChange(op, ids))
            elif member is not None and removing:
                changes.append(MemberChange("remove", _member_ids({"value": _decoded(member)})))
            elif (attribute == "id" and item == group_id) or attribute in ("schemas", "meta"):
                continue
            else:
                raise _bad(
                    "invalidPath",
                    f"Cannot {op} {key[:100]!r} on a group; PATCH changes displayName, "
                    "externalId and members.",
                )
    return name, external_id, changes


def _operations(body: Json) -> list[tuple[Op, str | None, Any]]:
    """(op, path or None, value) of each PATCH operation, checked; ops ignore case (Entra)."""
    _check_schemas(body, PATCH_SCHEMA)
    operations = _lowered(body).get("operations")
    if not isinstance(operations, list) or not operations:
        raise _bad("invalidSyntax", "A PATCH body needs a non-empty Operations list.")
    checked: list[tuple[Op, str | None, Any]] = []
    for raw in operations:
        if not isinstance(raw, dict):
            raise _bad("invalidSyntax", "Each PATCH operation must be a JSON object.")
        operation = _lowered(raw)
        name = operation.get("op")
        op = _OPS.get(name.lower()) if isinstance(name, str) else None
        if op is None:
            shown = json.dumps(name)[:32]
            raise _bad("invalidSyntax", f"Unknown PATCH op {shown}; use add, replace or remove.")
        path = operation.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise _bad("invalidPath", "A PATCH operation's path must be a non-empty string.")
        if op == "remove" and path is None:
            raise _bad("noTarget", "A remove operation needs a path naming what to remove.")
        if op != "remove" and "value" not in operation:
            raise _bad("invalidSyntax", f"The {op} operation needs a value.")
        checked.append((op, None if path is None else path.strip(), operation.get("value")))
    return checked


def _member_ids(value: Any) -> frozenset[str]:
    """The user ids of a members value: a list of {"value": ID} (one object or null allowed)."""
    if value is None:
        return frozenset()
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list):
        raise _bad("invalidValue", 'members must be a list of {"value": USER_ID} objects.')
    ids: set[str] = set()
    for item in items:
        member = _lowered(item) if isinstance(item, dict) else {}
        user_id = member.get("value")
        if not isinstance(user_id, str) or not 0 < len(user_id) <= 64 or not user_id.isprintable():
            raise _bad("invalidValue", 'Each member must be an object {"value": USER_ID}.')
        ids.add(user_id)
    return frozenset(ids)


def _string(value: Any, attribute: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _bad("invalidValue", f"{attribute} must be a string.")


def _required_string(value: Any, attribute: str) -> str:
    text = _string(value, attribute)
    if text is None:
        raise _bad("invalidValue", f"{attribute} is required and must be a string.")
    return text


def _boolean(value: Any) -> bool:
    """true/false, also as the strings "True"/"False" that Entra ID sends."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _bad("invalidValue", f"active must be true or false, not {json.dumps(value)[:32]}.")


# --- Responses -----------------------------------------------------------------------------------


def _list(total: int, offset: int, resources: list[Json]) -> Json:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": offset + 1,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


def _error(status: int, detail: str, scim_type: str | None = None) -> _Response:
    body: Json = {"schemas": [ERROR_SCHEMA], "status": str(status)}
    if scim_type is not None:
        body["scimType"] = scim_type
    body["detail"] = detail
    return _Response(status, body)


def _timestamp(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


async def _send(send: Send, response: _Response) -> None:
    body = b"" if response.body is None else json.dumps(response.body).encode()
    headers = [(b"content-type", CONTENT_TYPE.encode()), *response.headers]
    if response.status != 204:
        headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# --- Discovery documents (RFC 7643 §5-7) ---------------------------------------------------------


def _attribute(
    name: str,
    kind: str = "string",
    *,
    description: str,
    required: bool = False,
    multi: bool = False,
    mutability: str = "readWrite",
    uniqueness: str = "none",
    case_exact: bool = False,
    sub: list[Json] | None = None,
) -> Json:
    attribute: Json = {
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description,
        "required": required,
        "mutability": mutability,
        "returned": "default",
        "uniqueness": uniqueness,
    }
    if kind in ("string", "reference"):
        attribute["caseExact"] = case_exact
    if sub is not None:
        attribute["subAttributes"] = sub
    return attribute


def _refs(mutability: str, what: str, reference: str) -> list[Json]:
    return [
        _attribute("value", description=f"The {what}'s id.", mutability=mutability),
        _attribute("$ref", "reference", description=f"The {what}'s URI.", mutability=mutability)
        | {"referenceTypes": [reference]},
        _attribute("display", description=f"The {what}'s name.", mutability="readOnly"),
    ]


_SERVICE_PROVIDER_CONFIG: Final[Json] = {
    "schemas": [CONFIG_SCHEMA],
    "patch": {"supported": True},
    "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
    "filter": {"supported": True, "maxResults": MAX_RESULTS},
    "changePassword": {"supported": False},
    "sort": {"supported": False},
    "etag": {"supported": False},
    "authenticationSchemes": [
        {
            "type": "oauthbearertoken",
            "name": "OAuth Bearer Token",
            "description": "The SCIM bearer token set in the gateway's identity.scim.token.",
            "primary": True,
        }
    ],
}

_RESOURCE_TYPES: Final[dict[str, Json]] = {
    "User": {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person whose API keys and tokens the gateway accepts while active.",
        "schema": USER_SCHEMA,
    },
    "Group": {
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A group that policies can name; members get it on top of their token's.",
        "schema": GROUP_SCHEMA,
    },
}

_SCHEMAS: Final[dict[str, Json]] = {
    USER_SCHEMA: {
        "schemas": [SCHEMA_SCHEMA],
        "id": USER_SCHEMA,
        "name": "User",
        "description": "User Account",
        "attributes": [
            _attribute(
                "userName",
                description="The login or email that API keys and tokens are matched by; "
                "it cannot change once provisioned.",
                required=True,
                mutability="immutable",
                uniqueness="server",
            ),
            _attribute(
                "name",
                "complex",
                description="The user's name; only the formatted form is kept.",
                sub=[_attribute("formatted", description="The full name, for display.")],
            ),
            _attribute("displayName", description="The name shown for the user."),
            _attribute("externalId", description="The IdP's own id for the user.", case_exact=True),
            _attribute(
                "active",
                "boolean",
                description="False switches the user and every key they own off at once.",
            ),
            _attribute(
                "emails",
                "complex",
                description="The userName, when it is an email address.",
                multi=True,
                mutability="readOnly",
                sub=[
                    _attribute("value", description="The address.", mutability="readOnly"),
                    _attribute("type", description="Always work.", mutability="readOnly"),
                    _attribute(
                        "primary", "boolean", description="Always true.", mutability="readOnly"
                    ),
                ],
            ),
            _attribute(
                "groups",
                "complex",
                description="The groups the user is a member of; change them through /Groups.",
                multi=True,
                mutability="readOnly",
                sub=_refs("readOnly", "group", "Group"),
            ),
        ],
    },
    GROUP_SCHEMA: {
        "schemas": [SCHEMA_SCHEMA],
        "id": GROUP_SCHEMA,
        "name": "Group",
        "description": "Group",
        "attributes": [
            _attribute(
                "displayName",
                description="The group's name, as policies refer to it.",
                required=True,
                uniqueness="server",
            ),
            _attribute(
                "externalId", description="The IdP's own id for the group.", case_exact=True
            ),
            _attribute(
                "members",
                "complex",
                description="The users in the group.",
                multi=True,
                sub=[
                    *_refs("immutable", "user", "User"),
                    _attribute("type", description="Always User.", mutability="immutable"),
                ],
            ),
        ],
    },
}
