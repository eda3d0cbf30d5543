"""The review gate and store on their own: races, expiry and shutdown, without a gateway."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from geogate.config import Approvers, Review
from geogate.identity import Principal
from geogate.reviews import CallUnderReview, Notifier, ReviewRefusal, Reviews, Wakeups
from geogate.store import ReviewConflict, Store

ALICE = Principal("alice@example.com", "alice@example.com", frozenset(), None, "api_key", None)
BOB = Principal(
    "bob@example.com", "bob@example.com", frozenset({"security"}), None, "api_key", None
)
CAROL = Principal(
    "carol@example.com", "carol@example.com", frozenset({"security"}), None, "oidc", None
)


def _call(text: str = "hello") -> CallUnderReview:
    return CallUnderReview(
        request_id="req_" + text,
        principal=ALICE,
        connection="llm",
        policy="p",
        policy_version="v1",
        method="POST",
        target="/c/llm/chat/completions",
        body=text.encode(),
        describe=lambda: {"preview": text},
    )


def _rule(**changes: Any) -> Review:
    return Review(approvers=Approvers(groups=["security"]), **changes)


async def _reviews(store: Store, tmp_path: Path) -> tuple[Reviews, list[dict[str, Any]]]:
    steps: list[dict[str, Any]] = []
    reviews = Reviews(store.reviews, Wakeups(tmp_path), Notifier([]), steps.append)
    await reviews.start()
    return reviews, steps


async def _never() -> None:
    await asyncio.Event().wait()


async def _pending(reviews: Reviews, store: Store) -> str:
    for _ in range(200):
        rows = await store.reviews.find(status="pending")
        if rows:
            return rows[0].id
        await asyncio.sleep(0.01)
    raise AssertionError("no pending review")


async def test_a_held_call_cancelled_at_shutdown_withdraws_its_review(
    store: Store, tmp_path: Path
) -> None:
    reviews, steps = await _reviews(store, tmp_path)
    held = asyncio.ensure_future(reviews.admit(_call(), _rule(), "http://gw", _never))
    review_id = await _pending(reviews, store)
    held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    row = await store.reviews.get(review_id)
    assert row is not None and row.status == "withdrawn"
    assert [step["kind"] for step in steps] == ["review.requested", "review.withdrawn"]
    await reviews.close()


async def test_an_approval_of_one_call_is_used_once_even_by_racing_retries(
    store: Store, tmp_path: Path
) -> None:
    reviews, steps = await _reviews(store, tmp_path)
    with pytest.raises(ReviewRefusal) as asked:
        await reviews.admit(_call(), _rule(mode="ask"), "http://gw", _never)
    review_id = asked.value.details["review_id"]
    await reviews.vote(review_id, BOB, approve=True)
    results = await asyncio.gather(
        *(reviews.admit(_call(), _rule(mode="ask"), "http://gw", _never) for _ in range(5)),
        return_exceptions=True,
    )
    went = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ReviewRefusal)]
    assert len(went) == 1 and went[0]["id"] == review_id
    assert len(refused) == 4 and all(r.code == "approval_required" for r in refused)
    assert [s["kind"] for s in steps].count("review.used") == 1
    await reviews.close()


async def test_a_vote_after_the_deadline_expires_the_review(store: Store, tmp_path: Path) -> None:
    reviews, steps = await _reviews(store, tmp_path)
    with pytest.raises(ReviewRefusal) as asked:
        await reviews.admit(_call(), _rule(mode="ask", timeout=60), "http://gw", _never)
    review_id = asked.value.details["review_id"]
    await _age(store, review_id, seconds=61)
    with pytest.raises(ReviewConflict) as late:
        await reviews.vote(review_id, BOB, approve=True)
    assert late.value.expired_now and late.value.row.status == "expired"
    assert steps[-1]["kind"] == "review.expired" and steps[-1]["reviewer"] is None
    with pytest.raises(ReviewRefusal) as retried:  # told so for one more timeout
        await reviews.admit(_call(), _rule(mode="ask", timeout=60), "http://gw", _never)
    assert retried.value.code == "approval_expired"
    await reviews.close()


async def test_the_sweep_expires_overdue_reviews_once(store: Store, tmp_path: Path) -> None:
    reviews, steps = await _reviews(store, tmp_path)
    other, other_steps = await _reviews(store, tmp_path)  # a second worker
    with pytest.raises(ReviewRefusal) as asked:
        await reviews.admit(_call(), _rule(mode="ask", timeout=60), "http://gw", _never)
    await _age(store, asked.value.details["review_id"], seconds=61)
    swept = await asyncio.gather(reviews.sweep(), other.sweep())
    assert sorted(len(rows) for rows in swept) == [0, 1]
    expired = [s for s in steps + other_steps if s["kind"] == "review.expired"]
    assert len(expired) == 1
    await reviews.close()
    await other.close()


async def test_a_denial_decides_whatever_the_approvals(store: Store, tmp_path: Path) -> None:
    reviews, _steps = await _reviews(store, tmp_path)
    rule = _rule(mode="ask", min_approvals=2)
    with pytest.raises(ReviewRefusal) as asked:
        await reviews.admit(_call(), rule, "http://gw", _never)
    review_id = asked.value.details["review_id"]
    assert (await reviews.vote(review_id, BOB, approve=True)).status == "pending"
    denied = await reviews.vote(review_id, CAROL, approve=False, reason="no")
    assert denied.status == "denied"
    with pytest.raises(ReviewRefusal) as refused:
        await reviews.admit(_call(), rule, "http://gw", _never)
    assert refused.value.code == "approval_denied" and "carol@example.com: no" in str(refused.value)
    await reviews.close()


async def test_an_unused_approval_expires_but_a_grant_runs_out_by_its_window(
    store: Store, tmp_path: Path
) -> None:
    reviews, steps = await _reviews(store, tmp_path)
    ids = []
    for text, rule in (
        ("once", _rule(mode="ask", timeout=60)),
        ("window", _rule(mode="ask", grant=3600)),
    ):
        with pytest.raises(ReviewRefusal) as asked:
            await reviews.admit(_call(text), rule, "http://gw", _never)
        ids.append(asked.value.details["review_id"])
        await reviews.vote(ids[-1], BOB, approve=True)
        await _age(store, ids[-1], seconds=61, decided=True)
    swept = await reviews.sweep()
    assert [row.id for row in swept] == [ids[0]]  # the approval nobody came back for
    window = await store.reviews.get(ids[1])
    assert window is not None and window.status == "approved"
    assert steps[-1]["kind"] == "review.expired" and steps[-1]["review_id"] == ids[0]
    await reviews.close()


async def _age(store: Store, review_id: str, *, seconds: float, decided: bool = False) -> None:
    """Move a review's times into the past, as if `seconds` had gone by."""
    from sqlalchemy import update

    from geogate.store.models import Review as ReviewModel

    row = await store.reviews.get(review_id)
    assert row is not None
    shift = timedelta(seconds=seconds)
    async with store._writer.begin() as conn:
        await conn.execute(
            update(ReviewModel)
            .where(ReviewModel.id == review_id)
            .values(
                requested_at=row.requested_at - shift,
                deadline=row.deadline - shift,
                **({"decided_at": row.decided_at - shift} if decided and row.decided_at else {}),
            )
        )


async def test_a_caller_cannot_open_more_than_max_open_reviews(
    store: Store, tmp_path: Path
) -> None:
    steps: list[dict[str, Any]] = []
    reviews = Reviews(store.reviews, Wakeups(tmp_path), Notifier([]), steps.append, max_open=2)
    await reviews.start()
    opened = []
    for text in ("one", "two"):
        with pytest.raises(ReviewRefusal) as asked:
            await reviews.admit(_call(text), _rule(mode="ask"), "http://gw", _never)
        assert asked.value.code == "approval_required"
        opened.append(asked.value.details["review_id"])
    with pytest.raises(ReviewRefusal) as flood:
        await reviews.admit(_call("three"), _rule(mode="ask"), "http://gw", _never)
    assert flood.value.code == "too_many_reviews" and "review_id" not in flood.value.details
    with pytest.raises(ReviewRefusal) as again:  # a pending one is still answered as before
        await reviews.admit(_call("one"), _rule(mode="ask"), "http://gw", _never)
    assert again.value.details["review_id"] == opened[0]
    await reviews.vote(opened[0], BOB, approve=False)
    with pytest.raises(ReviewRefusal) as room:  # a decided one makes room
        await reviews.admit(_call("three"), _rule(mode="ask"), "http://gw", _never)
    assert room.value.code == "approval_required"
    assert sum(1 for step in steps if step["kind"] == "review.requested") == 3
    await reviews.close()
