"""Rules every part of the store shares: what a user or group name may be, the clock, refusals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func, literal

from geogate.store.models import UtcDateTime


class StoreError(Exception):
    """A request the store refuses (bad name, conflict, unusable URL); the message says why."""


def is_user_name(name: str) -> bool:
    return 0 < len(name) <= 320 and name.isprintable() and not any(c.isspace() for c in name)


def check_user_name(name: str) -> None:
    if not is_user_name(name):
        raise StoreError(
            f"{name!r} is not a user name; use the person's login or email, without spaces."
        )


def checked_groups(groups: Sequence[str]) -> list[str]:
    if isinstance(groups, str):
        raise StoreError("groups must be a list of group names, not one string")
    for group in groups:
        if not 0 < len(group) <= 256 or not group.isprintable() or group != group.strip():
            raise StoreError(
                f"{group!r} is not a group name; use printable text without surrounding spaces."
            )
    return sorted(set(groups))


def first_time(column: Any, now: datetime) -> ColumnElement[datetime]:
    """`column` if already set, else `now`: repeating an action keeps its first time."""
    return func.coalesce(column, literal(now, UtcDateTime()))


def utc_now() -> datetime:
    return datetime.now(UTC)
