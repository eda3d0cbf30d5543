"""A review as people and other systems see it: the admin API, the CLI, the review page's
links and notifications all show this one shape (the binding hash stays inside the gateway)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

from geogate.store import ReviewRow


class ReviewInfo(BaseModel):
    id: str
    status: Literal["pending", "approved", "denied", "expired", "used", "withdrawn"]
    mode: Literal["hold", "ask"]
    subject: str
    user: str
    connection: str
    policy: str
    policy_version: str
    request_id: str
    summary: dict[str, Any]
    """The call's method, target, why it is reviewed, and a masked preview of its text."""
    approvers: dict[str, list[str]]
    min_approvals: int
    votes: list[dict[str, Any]]
    grant: float
    requested_at: datetime
    deadline: datetime
    decided_at: datetime | None
    grant_until: datetime | None
    used_at: datetime | None
    url: str
    may_decide: bool = False
    """Whether the signed-in person may approve or deny it now."""


def review_info(row: ReviewRow, base_url: str, *, may_decide: bool = False) -> ReviewInfo:
    """The review of `row`, its page under `base_url`; the row's other fields are left out."""
    shown = {name: value for name, value in asdict(row).items() if name in ReviewInfo.model_fields}
    return ReviewInfo(**shown, url=review_url(base_url, row.id), may_decide=may_decide)


def review_url(base_url: str, review_id: str) -> str:
    return f"{base_url.rstrip('/')}/reviews/{review_id}"
