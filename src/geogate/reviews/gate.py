"""The review gate: a call under a policy's `review` waits for (`hold`) or is refused until
(`ask`) approvals from people other than its caller.

    review = await reviews.admit(call, rule, base_url, caller_left)   # the record's `review`
    row = await reviews.vote(review_id, approver, approve=True)       # from the API or console

An approval is bound to one exact call: the caller, the connection, the method and target,
the SHA-256 of the body as it leaves (masked) and the policy version. It is used once, unless
the policy's `grant` opens a window in which the caller may use the connection freely.
Every step (requested, each vote, approved, denied, expired, withdrawn, used) is written to
the signed recording log and to the identity audit events.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from geogate.config import Review
from geogate.identity import Principal
from geogate.reviews.notify import Notifier
from geogate.reviews.view import review_info, review_url
from geogate.reviews.wakeups import RECHECK, Wakeups
from geogate.store import ReviewConflict, ReviewRow, ReviewStore
from geogate.store.reviews import (
    APPROVED,
    DENIED,
    EXPIRED,
    PENDING,
    USED,
    WITHDRAWN,
    iso,
    overdue,
)

_log = logging.getLogger("geogate.reviews")
SWEEP_INTERVAL = 15.0
"""Seconds between looks for reviews whose time ran out (so their expiry is recorded)."""
Record = dict[str, Any]
_GRANTS_KEPT = 10_000


@dataclass(frozen=True, slots=True)
class CallUnderReview:
    """One call as a review binds and shows it.

    `describe` gives what approvers are shown (masked, never raw values); it is called only
    when the call asks for a new review, so a call that goes on an approval pays nothing.
    """

    request_id: str
    principal: Principal
    connection: str
    policy: str
    policy_version: str
    method: str
    target: str
    body: bytes
    describe: Callable[[], dict[str, Any]]

    def binding(self) -> str:
        """What an approval covers: a retry of the same call has the same binding."""
        parts = (
            self.principal.subject,
            self.connection,
            self.method,
            self.target,
            hashlib.sha256(self.body).hexdigest(),
            self.policy_version,
        )
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class ReviewRefusal(Exception):
    """The call does not go: it needs, or was refused, an approval."""

    def __init__(self, code: str, message: str, **details: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class CallerLeft(Exception):
    """The caller of a held call disconnected; its review was withdrawn."""


class NotAllowed(Exception):
    """This person may not decide this review."""


class Reviews:
    def __init__(
        self,
        store: ReviewStore,
        wakeups: Wakeups,
        notifier: Notifier,
        record: Callable[[Record], None],
        *,
        base_url: str = "",
        max_open: int = 20,
    ) -> None:
        self._store = store
        self.base_url = base_url
        """Where review pages are reached, when a request does not say (`gateway.own_url`):
        the only address notifications link to."""
        self._max_open = max_open
        self._wakeups = wakeups
        self._notifier = notifier
        self._record = record
        self._sweeper: asyncio.Task[None] | None = None
        self._grants: dict[tuple[str, str, str], ReviewRow] = {}

    async def start(self) -> None:
        await self._wakeups.start()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self._notifier.close()
        await self._wakeups.close()

    async def admit(
        self,
        call: CallUnderReview,
        rule: Review,
        base_url: str,
        caller_left: Callable[[], Awaitable[None]],
    ) -> dict[str, Any]:
        """Return when the call may go (what its record says of the review), or raise
        `ReviewRefusal` (or `CallerLeft`) when it may not."""
        now = _now()
        granted = await self._grant(call, now)
        if granted is not None:
            return self._used(granted, call.request_id)
        if rule.mode == "ask":
            return await self._ask(call, rule, base_url, now)
        row = await self._request(call, rule, now)
        return await self._hold(row, call.request_id, caller_left)

    async def _grant(self, call: CallUnderReview, now: datetime) -> ReviewRow | None:
        """An approval whose grant window covers this caller and connection now.

        A grant, once found, is kept in memory until its window ends: nothing takes it back
        early (a deactivated caller is refused before the gate), so calls in the window cost
        no store round trip.
        """
        key = (call.principal.subject, call.connection, call.policy_version)
        row = self._grants.get(key)
        if row is None or row.grant_until is None or now >= row.grant_until:
            self._grants.pop(key, None)
            row = await self._store.granted(*key, now)
            if row is None:
                return None
            if len(self._grants) >= _GRANTS_KEPT:
                self._grants.clear()
            self._grants[key] = row
        return row

    async def _ask(
        self, call: CallUnderReview, rule: Review, base_url: str, now: datetime
    ) -> dict[str, Any]:
        """A retry of an approved call goes; a pending one is asked again; a denied or
        expired one answers so for `timeout`, after which the call asks anew."""
        row = await self._store.latest(call.binding())
        if row is not None and row.status in (PENDING, APPROVED):
            if overdue(row, now):
                row = await self._expire(row, now) or await self._store.get(row.id) or row
            elif row.status == APPROVED:
                used = await self._store.use(row.id, now)
                if used is not None:
                    return self._used(used, call.request_id)
                row = await self._store.get(row.id) or row
            else:
                raise self._required(row, base_url)
        if row is not None and row.status in (DENIED, EXPIRED) and row.decided_at is not None:
            ask_again = row.decided_at + timedelta(seconds=row.timeout)
            if now < ask_again:
                raise _ended(row, ask_again)
        row = await self._request(call, rule, now)
        raise self._required(row, base_url)

    async def _request(self, call: CallUnderReview, rule: Review, now: datetime) -> ReviewRow:
        principal = call.principal
        if await self._store.open_count(principal.subject) >= self._max_open:
            raise ReviewRefusal(
                "too_many_reviews",
                f"You already have {self._max_open} calls waiting for an approval, so no new "
                "review was opened and this call was not sent; send it again once some of "
                "them are decided or have expired.",
            )
        row = ReviewRow(
            id="rev_" + secrets.token_hex(10),
            binding=call.binding(),
            status=PENDING,
            mode=rule.mode,
            request_id=call.request_id,
            subject=principal.subject,
            user=principal.user,
            connection=call.connection,
            policy=call.policy,
            policy_version=call.policy_version,
            summary=call.describe(),
            approvers={
                "users": list(rule.approvers.users),
                "groups": list(rule.approvers.groups),
            },
            min_approvals=rule.min_approvals,
            votes=[],
            grant=rule.grant,
            timeout=rule.timeout,
            requested_at=now,
            deadline=now + timedelta(seconds=rule.timeout),
        )
        await self._store.add(row)
        self._step("review.requested", row, request_id=call.request_id)
        # Links to approvers use the configured address, never the caller's Host header: a
        # caller must not be able to point an approver's button at a site of their own.
        self._notifier.send("review.requested", self.view(row))
        return row

    async def _hold(
        self, row: ReviewRow, request_id: str, caller_left: Callable[[], Awaitable[None]]
    ) -> dict[str, Any]:
        """Wait for a decision, the deadline or the caller leaving, whichever comes first."""
        left = asyncio.ensure_future(caller_left())
        try:
            with self._wakeups.watch(row.id) as woken:
                while True:
                    woken.clear()
                    current = await self._store.get(row.id)
                    if current is None or current.status != PENDING:
                        break
                    remaining = (current.deadline - _now()).total_seconds()
                    if remaining <= 0:
                        await self._expire(current, _now())
                        continue
                    wake = asyncio.ensure_future(woken.wait())
                    try:
                        await asyncio.wait(
                            (wake, left),
                            timeout=min(remaining, RECHECK),
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        wake.cancel()
                    if left.done():
                        await self._withdraw(row.id, request_id)
                        raise CallerLeft
        except asyncio.CancelledError:  # the gateway is stopping: nobody waits for the call
            await asyncio.shield(self._withdraw(row.id, request_id))
            raise
        finally:
            left.cancel()
        if current is not None and current.status == APPROVED and current.grant_until:
            return self._used(current, request_id)  # its window covers this call too
        if current is not None and current.status == APPROVED:
            used = await self._store.use(current.id, _now())
            if used is not None:
                return self._used(used, request_id)
            current = await self._store.get(row.id)
        raise _ended(current or row)

    async def _withdraw(self, review_id: str, request_id: str) -> None:
        withdrawn = await self._store.close(review_id, WITHDRAWN, _now())
        if withdrawn is not None:
            self._step("review.withdrawn", withdrawn, request_id=request_id)
            self._notifier.send("review.withdrawn", self.view(withdrawn))

    async def vote(
        self, review_id: str, voter: Principal, *, approve: bool, reason: str | None = None
    ) -> ReviewRow:
        """Approve or deny as `voter`; `KeyError` for an unknown review, `NotAllowed` for
        someone who may not decide it, `ReviewConflict` when it is no longer open."""
        row = await self._store.get(review_id)
        if row is None:
            raise KeyError(review_id)
        why_not = refusal_to_decide(row, voter)
        if why_not is not None:
            raise NotAllowed(why_not)
        try:
            row = await self._store.vote(
                review_id, voter.user, approve=approve, reason=reason, now=_now()
            )
        except ReviewConflict as conflict:
            if conflict.expired_now:
                self._ended_step(conflict.row)
            raise
        vote = row.votes[-1]
        self._step("review.voted", row, reviewer=voter.user, vote=vote)
        if row.status != PENDING:
            self._ended_step(row, reviewer=voter.user)
        return row

    def view(self, row: ReviewRow) -> dict[str, Any]:
        """The review as notifications carry it, linked at the configured address."""
        return review_info(row, self.base_url).model_dump(mode="json")

    async def sweep(self) -> list[ReviewRow]:
        """Expire (and record) every review whose time ran out."""
        expired = await self._store.expire_due(_now())
        for row in expired:
            self._ended_step(row)
        return expired

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            try:
                await self.sweep()
            except Exception:  # the store may be busy or gone for a moment: next round
                _log.exception("could not expire overdue reviews")

    async def _expire(self, row: ReviewRow, now: datetime) -> ReviewRow | None:
        expired = await self._store.close(row.id, EXPIRED, now)
        if expired is not None:
            self._ended_step(expired)
        return expired

    def _ended_step(self, row: ReviewRow, reviewer: str | None = None) -> None:
        """Record, announce and notify a decision (by `reviewer`'s vote) or an expiry."""
        self._step(f"review.{row.status}", row, reviewer=reviewer)
        self._wakeups.announce(row.id)
        self._notifier.send(f"review.{row.status}", self.view(row))

    def _used(self, row: ReviewRow, request_id: str) -> dict[str, Any]:
        self._step("review.used", row, request_id=request_id)
        return {
            "id": row.id,
            "mode": row.mode,
            "requested_by": row.request_id,
            "approved_by": [vote["by"] for vote in row.votes if vote["decision"] == "approve"],
            "decided_at": _iso(row.decided_at),
            "grant_until": _iso(row.grant_until),
        }

    def _required(self, row: ReviewRow, base_url: str) -> ReviewRefusal:
        url = review_url(base_url or self.base_url, row.id)
        return ReviewRefusal(
            "approval_required",
            f"This call needs an approval under policy {row.policy!r} ({_approvers(row)}); it "
            f"was not sent. Review {row.id} is waiting at {url}: send the same call again "
            "once it is approved.",
            review_id=row.id,
            review_url=url,
        )

    def _step(
        self,
        kind: str,
        row: ReviewRow,
        *,
        request_id: str | None = None,
        reviewer: str | None = None,
        vote: dict[str, Any] | None = None,
    ) -> None:
        record: Record = {
            "kind": kind,
            "review_id": row.id,
            "request_id": request_id or row.request_id,
            "subject": row.subject,
            "user": row.user,
            "connection": row.connection,
            "policy": row.policy,
            "policy_version": row.policy_version,
            "mode": row.mode,
            "status": row.status,
        }
        if reviewer is not None or row.status == EXPIRED:
            record["reviewer"] = reviewer  # an expiry is nobody's act
        if vote is not None:
            record["decision"] = vote["decision"]
            if "reason" in vote:
                record["reason"] = vote["reason"]
        if kind == "review.requested":
            record["binding"] = row.binding
            record["summary"] = row.summary
            record["deadline"] = _iso(row.deadline)
        if row.grant_until is not None:
            record["grant_until"] = _iso(row.grant_until)
        self._record(record)


def refusal_to_decide(row: ReviewRow, voter: Principal) -> str | None:
    """Why `voter` may not decide `row`, or None: approvers are people named by the policy,
    never the caller (nor the owner of the caller's service account)."""
    if voter.service_account is not None:
        return "Reviews are decided by people; sign in as yourself, not a service account."
    if voter.user == row.user or voter.subject == row.subject:
        return f"{voter.user} asked for this call, and nobody approves their own call."
    approvers = row.approvers
    if voter.user in approvers.get("users", ()) or voter.groups & set(approvers.get("groups", ())):
        return None
    return f"{voter.user} is not an approver of review {row.id} ({_approvers(row)})."


def may_see(row: ReviewRow, viewer: Principal, admin_groups: frozenset[str]) -> bool:
    """Who may see a review: admins, its caller, and the people who may decide it."""
    return (
        bool(viewer.groups & admin_groups)
        or viewer.subject == row.subject
        or viewer.user == row.user
        or refusal_to_decide(row, viewer) is None
    )


def _ended(row: ReviewRow, ask_again: datetime | None = None) -> ReviewRefusal:
    again = (
        f" The same call asks for a new review from {_iso(ask_again)}."
        if ask_again is not None
        else ""
    )
    if row.status == DENIED:
        denial = next((v for v in row.votes if v["decision"] == "deny"), {})
        reason = f": {denial['reason']}" if denial.get("reason") else ""
        return ReviewRefusal(
            "approval_denied",
            f"Review {row.id} was denied by {denial.get('by', 'an approver')}{reason}. "
            f"The call was not sent.{again}",
            review_id=row.id,
        )
    if row.status in (EXPIRED, USED):
        return ReviewRefusal(
            "approval_expired",
            f"Review {row.id} ran out before the call could go (timeout "
            f"{_duration(row.timeout)}); the call was not sent."
            + (again or " Send it again to ask anew."),
            review_id=row.id,
        )
    return ReviewRefusal(  # withdrawn, or removed from the store under us
        "approval_expired",
        f"Review {row.id} is {row.status}; the call was not sent. Send it again to ask anew.",
        review_id=row.id,
    )


def _approvers(row: ReviewRow) -> str:
    named = [
        f"{label} {', '.join(values)}"
        for label, values in (
            ("groups", row.approvers.get("groups", [])),
            ("users", row.approvers.get("users", [])),
        )
        if values
    ]
    needed = f"{row.min_approvals} approvals" if row.min_approvals > 1 else "one approval"
    return f"{needed} from {' or '.join(named)}"


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso(moment)
