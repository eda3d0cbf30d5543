"""Reviews in the state store: every change is one conditional update, so two processes
deciding, using or expiring the same review at once cannot both win.

    row = await store.reviews.get("rev_...")
    row, change = await store.reviews.vote(row.id, "bob@example.com", approve=True, now=now)

Who may vote is the reviews package's business (it knows the caller's groups); the store
enforces what holds whoever asks: a review is decided once, before its deadline, and a person
votes on it once. Each change is also an identity audit event (`review.approved`, ...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, func, insert, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from geogate.store import journal
from geogate.store.models import Review, UtcDateTime

PENDING, APPROVED, DENIED, EXPIRED, USED, WITHDRAWN = (
    "pending", "approved", "denied", "expired", "used", "withdrawn",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReviewRow:
    id: str
    binding: str
    status: str
    mode: str
    request_id: str
    subject: str
    user: str
    connection: str
    policy: str
    policy_version: str
    summary: dict[str, Any]
    approvers: dict[str, list[str]]
    min_approvals: int
    votes: list[dict[str, Any]]
    grant: float
    timeout: float
    requested_at: datetime
    deadline: datetime
    decided_at: datetime | None = None
    grant_until: datetime | None = None
    used_at: datetime | None = None

    @property
    def use_by(self) -> datetime | None:
        """Until when an approval of one call waits for that call (`timeout` after approval)."""
        if self.decided_at is None:
            return None
        return self.decided_at + timedelta(seconds=self.timeout)


def approvals(votes: Iterable[Mapping[str, Any]]) -> int:
    """How many of `votes` approve."""
    return sum(1 for vote in votes if vote.get("decision") == "approve")


class ReviewConflict(Exception):
    """The review cannot take this change now (already decided, expired, voted twice)."""

    def __init__(self, row: ReviewRow, message: str, *, expired_now: bool = False) -> None:
        super().__init__(message)
        self.row = row
        self.message = message
        self.expired_now = expired_now
        """The review was found past its deadline and expired by this very change."""


_COLUMNS = tuple(field.name for field in fields(ReviewRow))


class ReviewStore:
    def __init__(self, engine: AsyncEngine, writer: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer

    async def add(self, row: ReviewRow) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(insert(Review).values(**_values(row)))
            await _event(conn, "review.requested", row.subject, row, row.requested_at)

    async def get(self, review_id: str) -> ReviewRow | None:
        async with self._engine.connect() as conn:
            return await _get(conn, review_id)

    async def latest(self, binding: str) -> ReviewRow | None:
        """The newest review of one exact call."""
        query = (
            select(Review)
            .where(Review.binding == binding)
            .order_by(Review.requested_at.desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            return await _first(conn, query)

    async def granted(
        self, subject: str, connection: str, policy_version: str, now: datetime
    ) -> ReviewRow | None:
        """An approval whose grant window lets `subject` use `connection` at `now`."""
        query = (
            select(Review)
            .where(Review.subject == subject, Review.connection == connection)
            .where(Review.policy_version == policy_version, Review.status == APPROVED)
            .where(Review.grant_until > literal(now, UtcDateTime()))
            .order_by(Review.grant_until.desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            return await _first(conn, query)

    async def open_count(self, subject: str) -> int:
        """How many of `subject`'s reviews wait for a decision."""
        query = select(func.count()).where(Review.subject == subject, Review.status == PENDING)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    async def find(self, *, status: str | None = None, limit: int = 100) -> list[ReviewRow]:
        """Newest first."""
        query = select(Review).order_by(Review.requested_at.desc()).limit(limit)
        if status is not None:
            query = query.where(Review.status == status)
        async with self._engine.connect() as conn:
            return [_row(row) for row in (await conn.execute(query)).all()]

    async def vote(
        self, review_id: str, voter: str, *, approve: bool, reason: str | None, now: datetime
    ) -> ReviewRow:
        """Add a vote; returns the review after it (decided, or still pending).

        A review found past its deadline is expired (and stays so) before the vote is refused.
        """
        problem, expired_now = None, False
        async with self._writer.begin() as conn:
            row = await _get(conn, review_id)
            if row is None:
                raise KeyError(review_id)
            if row.status == PENDING and now >= row.deadline:
                row = await _set(conn, row, status=EXPIRED, decided_at=row.deadline)
                await _event(conn, "review.expired", None, row, now)
                problem, expired_now = f"Review {row.id} expired before it was decided.", True
            elif row.status != PENDING:
                problem = f"Review {row.id} is already {row.status}."
            elif any(vote["by"] == voter for vote in row.votes):
                problem = f"{voter} has already voted on review {row.id}."
            else:
                row = await self._add_vote(conn, row, voter, approve, reason, now)
        if problem is not None:
            raise ReviewConflict(row, problem, expired_now=expired_now)
        return row

    @staticmethod
    async def _add_vote(
        conn: AsyncConnection,
        row: ReviewRow,
        voter: str,
        approve: bool,
        reason: str | None,
        now: datetime,
    ) -> ReviewRow:
        vote = {"by": voter, "decision": "approve" if approve else "deny", "at": iso(now)}
        if reason:
            vote["reason"] = reason
        votes = [*row.votes, vote]
        changes: dict[str, Any] = {"votes": votes}
        if not approve:
            changes.update(status=DENIED, decided_at=now)
        elif approvals(votes) >= row.min_approvals:
            changes.update(status=APPROVED, decided_at=now)
            if row.grant > 0:
                changes["grant_until"] = now + timedelta(seconds=row.grant)
        row = await _set(conn, row, **changes)
        kind = "review.voted" if row.status == PENDING else f"review.{row.status}"
        await _event(conn, kind, voter, row, now, vote)
        return row

    async def use(self, review_id: str, now: datetime) -> ReviewRow | None:
        """Claim the approval of one call, once. None when it cannot be used (used already,
        expired, not approved, or a grant, whose uses the recording log counts instead)."""
        async with self._writer.begin() as conn:
            row = await _get(conn, review_id)
            use_by = None if row is None or row.grant_until is not None else row.use_by
            if row is None or row.status != APPROVED or use_by is None or now >= use_by:
                return None
            row = await _set(conn, row, status=USED, used_at=now)
            await _event(conn, "review.used", row.subject, row, now)
        return row

    async def close(self, review_id: str, status: str, now: datetime) -> ReviewRow | None:
        """End a review that is still open: `expired` (its time ran out) or `withdrawn`
        (the held caller left). None when it was decided or used first."""
        async with self._writer.begin() as conn:
            row = await _get(conn, review_id)
            if row is None or not _open(row):
                return None
            row = await _set(conn, row, status=status, decided_at=row.decided_at or now)
            await _event(conn, f"review.{status}", None, row, now)
        return row

    async def expire_due(self, now: datetime) -> list[ReviewRow]:
        """Expire every review whose time ran out: pending past its deadline, or an approval
        of one call that waited `timeout` for it. Returns the reviews this call expired."""
        # One read of the few reviews that can run out (grants end by their window and are
        # never expired, however many accumulate), then one conditional update per overdue one.
        query = select(Review).where(
            or_(
                and_(Review.status == PENDING, Review.deadline <= literal(now, UtcDateTime())),
                and_(Review.status == APPROVED, Review.grant_until.is_(None)),
            )
        )
        async with self._engine.connect() as conn:
            candidates = [_row(row) for row in (await conn.execute(query)).all()]
        expired = []
        for row in candidates:
            if overdue(row, now):
                closed = await self.close(row.id, EXPIRED, now)
                if closed is not None:
                    expired.append(closed)
        return expired


def _open(row: ReviewRow) -> bool:
    return row.status == PENDING or (row.status == APPROVED and row.grant_until is None)


def overdue(row: ReviewRow, now: datetime) -> bool:
    """Whether a review still open has run out of time."""
    if row.status == PENDING:
        return now >= row.deadline
    use_by = row.use_by
    return _open(row) and use_by is not None and now >= use_by


async def _get(conn: AsyncConnection, review_id: str) -> ReviewRow | None:
    return await _first(conn, select(Review).where(Review.id == review_id))


async def _first(conn: AsyncConnection, query: Select[Any]) -> ReviewRow | None:
    row = (await conn.execute(query)).first()
    return None if row is None else _row(row)


async def _set(conn: AsyncConnection, row: ReviewRow, **changes: Any) -> ReviewRow:
    """Change a review only if nobody changed its status since it was read."""
    result = await conn.execute(
        update(Review).where(Review.id == row.id, Review.status == row.status).values(**changes)
    )
    if result.rowcount != 1:
        current = await _get(conn, row.id)
        raise ReviewConflict(current or row, f"Review {row.id} changed meanwhile; try again.")
    return replace(row, **changes)


async def _event(
    conn: AsyncConnection,
    kind: str,
    actor: str | None,
    row: ReviewRow,
    at: datetime,
    vote: dict[str, Any] | None = None,
) -> None:
    detail: dict[str, Any] = {"review": row.id, "connection": row.connection, "policy": row.policy}
    if vote is not None:
        detail["vote"] = vote
    await journal.write_events(conn, [journal.Event(kind, actor, row.subject, detail, at)])


def _row(row: Any) -> ReviewRow:
    return ReviewRow(*(row._mapping[name] for name in _COLUMNS))


def _values(row: ReviewRow) -> dict[str, Any]:
    return {name: getattr(row, name) for name in _COLUMNS}


def iso(moment: datetime) -> str:
    """A UTC time as votes and review records write it: `2026-12-03T02:27:00.123456Z`."""
    return moment.isoformat().replace("+00:00", "Z")
