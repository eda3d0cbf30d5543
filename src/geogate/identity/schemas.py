"""The admin API's JSON shapes for users, keys and events, shared with the CLI (same JSON)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _View(BaseModel):
    """A response model read straight from the store's dataclasses."""

    model_config = ConfigDict(from_attributes=True)


class User(_View):
    name: str
    active: bool
    created_at: datetime
    deactivated_at: datetime | None


class Key(_View):
    id: str
    prefix: str
    owner: str
    service_account: str | None
    groups: list[str]
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None


class CreatedKey(Key):
    key: str = Field(description="The key itself; shown this once, never again.")


class NewKey(BaseModel):
    owner: str = Field(description="The accountable user (login or email).")
    service_account: str | None = Field(
        None, description="Make the key act as this service account, owned by `owner`."
    )
    groups: list[str] = []
    expires: str | None = Field(
        None, description="Lifetime such as `30d`; default and most: api_keys.max_lifetime."
    )


class ServiceAccount(_View):
    name: str
    owner: str
    owner_active: bool
    groups: list[str]
    created_at: datetime
    keys: int = Field(description="Keys neither revoked nor expired.")


class Event(_View):
    id: int
    at: datetime
    kind: str
    actor: str | None
    subject: str | None
    detail: dict[str, Any]


class Me(BaseModel):
    subject: str
    user: str
    groups: list[str]
    method: str
    admin: bool


class LoginInfo(BaseModel):
    """What `geogate login` needs to sign in to this gateway's IdP."""

    issuer: str | None
    cli_client_id: str | None
    scopes: list[str]
