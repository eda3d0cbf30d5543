"""The review pages: what Slack messages and `approval_required` errors link to.

    GET  /reviews/{id}        a review, as its caller, its approvers and admins see it
    POST /reviews/{id}        an approver's decision (`decision=approve|deny&reason=...`)

A decision posted with the session cookie must carry the gateway's own `Origin` (see
access.py); everything a review shows came from a caller or a voter and is escaped.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from urllib.parse import parse_qsl, quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from geogate.gateway.access import Access, Denied
from geogate.gateway.pages import PageError, page
from geogate.gateway.runtime import Runtime
from geogate.identity import Principal
from geogate.reviews import NotAllowed, may_see, refusal_to_decide
from geogate.store import ReviewConflict, ReviewRow
from geogate.store.reviews import PENDING

_WAITING_SHOWN = 50
_DECISION_FORM_LIMIT = 16 * 1024
"""The largest review decision read: a reason of `_REASON_CHARS` fits, percent-encoded."""
_REASON_CHARS = 1000


class ReviewPages:
    """The review routes of the console, and the list of reviews its home page shows."""

    def __init__(self, runtime: Runtime, access: Access) -> None:
        self._runtime = runtime
        self._access = access
        self._admin_groups = frozenset(runtime.config.identity.admin_groups)

    async def show(self, request: Request) -> Response:
        """A review as its caller, its approvers and admins see it; approvers decide here."""
        try:
            principal = await self._access.principal(
                request.scope["headers"], "GET", request.url.scheme
            )
        except Denied as denied:
            if denied.status == 401:
                back = _review_path(request.path_params["review_id"])
                return RedirectResponse(f"/login?{urlencode({'next': back})}", status_code=303)
            raise PageError("Review unavailable", denied.message, denied.status) from None
        row = await self._visible_review(request.path_params["review_id"], principal)
        return page(f"Review {row.id}", _review_body(row, principal, datetime.now(UTC)))

    async def decide(self, request: Request) -> Response:
        """Approve or deny as the signed-in person, then back to the review (post/redirect/get).

        Authenticated as a change (`POST`): a session cookie counts only with this site's
        `Origin`, so another site cannot make an approver's browser decide.
        """
        review_id = request.path_params["review_id"]
        back = _review_path(review_id)
        try:
            principal = await self._access.principal(
                request.scope["headers"], "POST", request.url.scheme
            )
        except Denied as denied:
            raise PageError("Not decided", denied.message, denied.status, back) from None
        await self._visible_review(review_id, principal)
        approve, reason = _decision(await _small_form(request, back), back)
        try:
            row = await self._runtime.reviews.vote(
                review_id, principal, approve=approve, reason=reason
            )
        except KeyError:
            raise PageError("Not decided", f"No review {review_id!r}.", 404) from None
        except NotAllowed as exc:
            raise PageError("Not decided", str(exc), 403, back) from None
        except ReviewConflict as exc:
            raise PageError("Not decided", exc.message, 409, back) from None
        return RedirectResponse(_review_path(row.id), status_code=303)

    async def _visible_review(self, review_id: str, principal: Principal) -> ReviewRow:
        """The review, if `principal` may see it; the same 404 whether unknown or hidden."""
        row = await self._runtime.store.reviews.get(review_id)
        if row is None or not may_see(row, principal, self._admin_groups):
            raise PageError("Review not found", f"No review {review_id!r} that you may see.", 404)
        return row

    async def waiting_for(self, principal: Principal) -> str:
        """The pending reviews this person may decide: where a sign-in from a review link
        lands, so the approver is one click from the call that asked."""
        await self._runtime.reviews.sweep()
        rows = await self._runtime.store.reviews.find(status=PENDING, limit=_WAITING_SHOWN)
        waiting = [row for row in rows if refusal_to_decide(row, principal) is None]
        if not waiting:
            return "<p>No review is waiting for you.</p>"
        items = "".join(
            f'<li><a href="{_review_path(row.id)}">{html.escape(row.id)}</a>: '
            f"{html.escape(row.subject)} on {html.escape(row.connection)} "
            f"(policy {html.escape(row.policy)})</li>"
            for row in waiting
        )
        return f"<h2>Reviews waiting for you</h2><ul>{items}</ul>"


def _why_not_decide(row: ReviewRow, principal: Principal, now: datetime) -> str | None:
    """Why the viewer has no approve and deny buttons, in their own terms; None if they do."""
    if row.status != PENDING:
        return f"This review is {row.status}: there is nothing left to decide."
    if now >= row.deadline:
        return "Its deadline has passed: it expires undecided."
    if principal.user == row.user or principal.subject == row.subject:
        return "You asked for this call; someone else must approve it."
    if any(vote.get("by") == principal.user for vote in row.votes):
        return "You have voted on this review; it waits for the other approvals it needs."
    return refusal_to_decide(row, principal)


def _review_body(row: ReviewRow, principal: Principal, now: datetime) -> str:
    """The review as a page; every value came from a caller or a voter and is escaped."""
    summary = row.summary
    approvers = "; ".join(
        f"{label} {', '.join(str(name) for name in row.approvers.get(key, []))}"
        for label, key in (("groups", "groups"), ("users", "users"))
        if row.approvers.get(key)
    )
    found = summary.get("found")
    facts: list[tuple[str, object]] = [
        ("Status", row.status),
        ("Caller", row.subject if row.user == row.subject else f"{row.subject} ({row.user})"),
        ("Connection", row.connection),
        ("Policy", f"{row.policy} (version {row.policy_version})"),
        ("Call", f"{summary.get('method', '')} {summary.get('target', '')}"),
        ("Model", summary.get("model")),
        ("Why reviewed", summary.get("reason")),
        ("Justification", summary.get("justification") or "none given"),
        (
            "Found",
            ", ".join(f"{name}: {count}" for name, count in sorted(found.items()))
            if isinstance(found, dict)
            else None,
        ),
        ("Approvers", approvers),
        ("Approvals needed", row.min_approvals),
        ("Requested", _when(row.requested_at)),
        ("Deadline", _when(row.deadline)),
        (
            "Grant",
            f"the caller may use {row.connection} for {row.grant:g} s after approval"
            if row.grant > 0
            else "this one call, once",
        ),
        ("Grant until", _when(row.grant_until)),
        ("Decided", _when(row.decided_at)),
        ("Used", _when(row.used_at)),
    ]
    table = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(value))}</td></tr>"
        for label, value in facts
        if value not in (None, "")
    )
    preview = summary.get("preview")
    text = (
        f"<pre>{html.escape(str(preview))}</pre>"
        if preview
        else "<p>No text could be read from this call.</p>"
    )
    votes = "".join(
        f"<li>{html.escape(str(vote.get('by')))}: {html.escape(str(vote.get('decision')))} "
        f"at {html.escape(str(vote.get('at')))}"
        + (f": {html.escape(str(vote['reason']))}" if vote.get("reason") else "")
        + "</li>"
        for vote in row.votes
    )
    why_not = _why_not_decide(row, principal, now)
    if why_not is None:
        decide = (
            f'<form method="post" action="{html.escape(_review_path(row.id))}">'
            "<p><label>Reason (recorded; a denial's reason is shown to the caller)<br>"
            f'<textarea name="reason" rows="3" cols="60" maxlength="{_REASON_CHARS}">'
            "</textarea></label></p>"
            '<p><button name="decision" value="approve">Approve</button> '
            '<button name="decision" value="deny">Deny</button></p></form>'
        )
    else:
        decide = f"<p>{html.escape(why_not)}</p>"
    return (
        f"<table>{table}</table>"
        f"<h2>Text of the call (masked)</h2>{text}"
        f"<h2>Votes</h2>{f'<ul>{votes}</ul>' if votes else '<p>No votes yet.</p>'}"
        f"<h2>Decision</h2>{decide}"
    )


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _review_path(review_id: str) -> str:
    return f"/reviews/{quote(review_id, safe='')}"


async def _small_form(request: Request, back: str) -> list[tuple[str, str]]:
    """A urlencoded form's fields; a body over `_DECISION_FORM_LIMIT` is refused, not read."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise PageError(
            "Not decided",
            "Send the decision as a form (application/x-www-form-urlencoded).",
            415,
            back,
        )
    too_large = PageError(
        "Not decided", f"A decision is limited to {_DECISION_FORM_LIMIT // 1024} KiB.", 413, back
    )
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > _DECISION_FORM_LIMIT):
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _DECISION_FORM_LIMIT:
            raise too_large
    try:
        return parse_qsl(
            body.decode("ascii"), keep_blank_values=True, errors="strict", max_num_fields=10
        )
    except (UnicodeDecodeError, ValueError):
        raise PageError("Not decided", "The decision form could not be read.", 400, back) from None


def _decision(fields: list[tuple[str, str]], back: str) -> tuple[bool, str | None]:
    """(approve?, reason) from the form: exactly one decision, at most one short reason."""
    decisions = [value for name, value in fields if name == "decision"]
    reasons = [value.strip() for name, value in fields if name == "reason"]
    if decisions not in (["approve"], ["deny"]):
        raise PageError("Not decided", "Choose Approve or Deny.", 400, back)
    if len(reasons) > 1 or (reasons and len(reasons[0]) > _REASON_CHARS):
        raise PageError(
            "Not decided", f"Give one reason of at most {_REASON_CHARS} characters.", 400, back
        )
    return decisions[0] == "approve", (reasons[0] if reasons else "") or None
