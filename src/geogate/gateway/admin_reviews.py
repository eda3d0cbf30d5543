"""Reviews in the admin API: list them, and approve or deny as yourself.

    curl -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:8080/api/v1/reviews?status=pending"
    curl -X POST -H "Authorization: Bearer $TOKEN" -H "content-type: application/json" \
        -d '{"reason": "ticket SEC-42"}' http://127.0.0.1:8080/api/v1/reviews/rev_.../approve

Anyone signed in may call these; what they see and may decide follows the review: admins
see every review, approvers the ones they may decide, callers their own. Nobody decides a
review of their own call.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Body, FastAPI, Query, Request
from pydantic import BaseModel, Field

from geogate.gateway.access import Caller, Refused, base_url
from geogate.gateway.runtime import Runtime
from geogate.identity import Principal
from geogate.reviews import NotAllowed, ReviewInfo, may_see, refusal_to_decide, review_info
from geogate.store import ReviewConflict, ReviewRow


class Decision(BaseModel):
    reason: Annotated[str | None, Field(max_length=1000)] = None


def add_review_routes(api: FastAPI, runtime: Runtime) -> None:
    reviews = runtime.reviews
    store = runtime.store.reviews
    admin_groups = frozenset(runtime.config.identity.admin_groups)

    def info(row: ReviewRow, principal: Principal, request: Request) -> ReviewInfo:
        base = base_url(runtime, request.scope["headers"], request.url.scheme)
        may = row.status == "pending" and refusal_to_decide(row, principal) is None
        return review_info(row, base, may_decide=may)

    @api.get("/api/v1/reviews", tags=["reviews"])
    async def list_reviews(
        principal: Caller,
        request: Request,
        status: Literal["pending", "approved", "denied", "expired", "used", "withdrawn"]
        | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[ReviewInfo]:
        """Newest first: the reviews the signed-in person may see."""
        await reviews.sweep()  # an overdue review shows as expired, not pending
        rows = await store.find(status=status, limit=limit)
        return [
            info(row, principal, request) for row in rows if may_see(row, principal, admin_groups)
        ]

    @api.get("/api/v1/reviews/{review_id}", tags=["reviews"])
    async def get_review(review_id: str, principal: Caller, request: Request) -> ReviewInfo:
        row = await store.get(review_id)
        if row is None or not may_see(row, principal, admin_groups):
            raise Refused(404, "not_found", f"No review {review_id!r} that you may see.")
        return info(row, principal, request)

    async def decide(
        review_id: str, principal: Principal, request: Request, approve: bool, reason: str | None
    ) -> ReviewInfo:
        try:
            row = await reviews.vote(review_id, principal, approve=approve, reason=reason)
        except KeyError:
            raise Refused(404, "not_found", f"No review {review_id!r}.") from None
        except NotAllowed as exc:
            raise Refused(403, "forbidden", str(exc)) from None
        except ReviewConflict as exc:
            raise Refused(409, "review_closed", exc.message) from None
        return info(row, principal, request)

    @api.post("/api/v1/reviews/{review_id}/approve", tags=["reviews"])
    async def approve(
        review_id: str,
        principal: Caller,
        request: Request,
        decision: Annotated[Decision | None, Body()] = None,
    ) -> ReviewInfo:
        """Approve as yourself; the call goes once the review has its `min_approvals`."""
        reason = decision.reason if decision is not None else None
        return await decide(review_id, principal, request, True, reason)

    @api.post("/api/v1/reviews/{review_id}/deny", tags=["reviews"])
    async def deny(
        review_id: str,
        principal: Caller,
        request: Request,
        decision: Annotated[Decision | None, Body()] = None,
    ) -> ReviewInfo:
        """Deny as yourself: one denial decides, and the caller is told your reason."""
        reason = decision.reason if decision is not None else None
        return await decide(review_id, principal, request, False, reason)
