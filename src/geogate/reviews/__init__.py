"""Just-in-time approval of single calls (SPEC §4 `review`): the gate the data path asks,
the decisions approvers make, and the notifications that reach them.

    reviews = Reviews(store.reviews, Wakeups(store.folder), Notifier(config.reviews.notify),
                      recorder.append)
    await reviews.start()
    review = await reviews.admit(call, policy.review, base_url, caller_left)
"""

from geogate.reviews.gate import (
    CallerLeft,
    CallUnderReview,
    NotAllowed,
    ReviewRefusal,
    Reviews,
    may_see,
    refusal_to_decide,
)
from geogate.reviews.notify import Notifier, slack_message, verify_signature
from geogate.reviews.view import ReviewInfo, review_info, review_url
from geogate.reviews.wakeups import Wakeups

__all__ = [
    "CallUnderReview",
    "CallerLeft",
    "NotAllowed",
    "Notifier",
    "ReviewInfo",
    "ReviewRefusal",
    "Reviews",
    "Wakeups",
    "may_see",
    "refusal_to_decide",
    "review_info",
    "review_url",
    "slack_message",
    "verify_signature",
]
