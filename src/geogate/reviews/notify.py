"""Tell approvers about reviews: a signed webhook, or a Slack message with a link back.

A webhook POST carries the review as JSON and three headers:

    x-geogate-event: review.requested
    x-geogate-delivery: dlv_...                  (the same on every retry of one message)
    x-geogate-signature: t=1764640000,v1=HEX     HEX = HMAC-SHA256(secret, "1764640000." + body)

A receiver recomputes the HMAC over the timestamp and the raw body, compares in constant time
and refuses old timestamps (see `verify_signature`). A Slack message is an incoming-webhook
payload whose button opens the review page on the gateway, where the approver signs in.

Sending never blocks a call or a decision: each message is a background task retried with
backoff, and a receiver that stays down costs log lines, not the review (which lives in the
store, where `geogate reviews list` and the console find it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from prometheus_client import Counter

from geogate.config import Notify

_log = logging.getLogger("geogate.reviews")
SENT = Counter(
    "geogate_review_notifications_total",
    "Review notifications by kind of receiver and outcome (sent, failed).",
    ["receiver", "outcome"],
)
BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
"""Seconds between attempts: eight tries over about two minutes."""
_TIMEOUT = aiohttp.ClientTimeout(total=10)
_RETRIED_STATUSES = frozenset({408, 425, 429})
SIGNATURE_TOLERANCE = 300
"""How old a signed timestamp a receiver should accept, in seconds."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify_signature(secret: str, header: str, body: bytes, *, now: float | None = None) -> bool:
    """What a receiver runs: the signature matches the body and is recent."""
    parts = dict(part.partition("=")[::2] for part in header.split(","))
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - timestamp) > SIGNATURE_TOLERANCE:
        return False
    expected = sign(secret, timestamp, body).partition(",v1=")[2]
    return hmac.compare_digest(expected, parts.get("v1", ""))


class Notifier:
    def __init__(self, receivers: Sequence[Notify], backoff: Sequence[float] = BACKOFF) -> None:
        self._receivers = tuple(receivers)
        self._backoff = tuple(backoff)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def send(self, event: str, review: Mapping[str, Any]) -> None:
        """Queue `event` about `review` (its public view) for every receiver; returns at once."""
        for receiver in self._receivers:
            task = asyncio.get_running_loop().create_task(self._deliver(receiver, event, review))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _deliver(self, receiver: Notify, event: str, review: Mapping[str, Any]) -> None:
        try:
            await self._attempts(receiver, event, review)
        except Exception:  # a bug here must cost a notification, never the gateway
            _log.exception("review %s: notification failed", review.get("id"))

    async def _attempts(self, receiver: Notify, event: str, review: Mapping[str, Any]) -> None:
        kind = "slack" if receiver.slack is not None else "webhook"
        url, body, headers = _message(receiver, event, review)
        for attempt, pause in enumerate((0.0, *self._backoff)):
            await asyncio.sleep(pause)
            if receiver.secret is not None:
                headers["x-geogate-signature"] = sign(receiver.secret, int(time.time()), body)
            try:
                async with self._client().post(url, data=body, headers=headers) as response:
                    await response.read()
                    if response.status < 300:
                        SENT.labels(kind, "sent").inc()
                        return
                    problem = f"HTTP {response.status}"
                    if response.status < 500 and response.status not in _RETRIED_STATUSES:
                        break  # the receiver refuses this message: retrying will not help
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                problem = str(exc) or type(exc).__name__
            _log.warning(
                "review %s: %s notification to %s failed (attempt %d): %s",
                review.get("id"), kind, _shown(url), attempt + 1, problem,
            )  # fmt: skip
        SENT.labels(kind, "failed").inc()
        _log.error(
            "review %s: gave up notifying %s %s; the review waits in `geogate reviews list`",
            review.get("id"), kind, _shown(url),
        )  # fmt: skip

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT, trust_env=False)
        return self._session


def _message(
    receiver: Notify, event: str, review: Mapping[str, Any]
) -> tuple[str, bytes, dict[str, str]]:
    headers = {"content-type": "application/json"}
    if receiver.slack is not None:
        return receiver.slack, json.dumps(slack_message(event, review)).encode(), headers
    assert receiver.webhook is not None
    headers["x-geogate-event"] = event
    headers["x-geogate-delivery"] = "dlv_" + secrets.token_hex(10)
    body = json.dumps({"event": event, "review": review}, separators=(",", ":")).encode()
    return receiver.webhook, body, headers


def slack_message(event: str, review: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook payload: the masked call summary and a link to decide."""
    summary = review.get("summary", {})
    what = {
        "review.requested": "needs an approval",
        "review.approved": "was approved",
        "review.denied": "was denied",
        "review.expired": "expired undecided",
        "review.withdrawn": "was withdrawn: the caller stopped waiting",
    }.get(event, event)
    title = f"GeoGate review {review['id']} {what}"
    lines = [
        f"*Caller:* {_slack_text(review.get('subject'))}",
        f"*Connection:* {_slack_text(review.get('connection'))} "
        f"(policy {_slack_text(review.get('policy'))})",
        f"*Call:* {_slack_text(summary.get('method'))} {_slack_text(summary.get('target'))}",
    ]
    for label, key in (("Why", "reason"), ("Justification", "justification"), ("Text", "preview")):
        value = summary.get(key)
        if value:
            lines.append(f"*{label}:* {_slack_text(value)}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
    ]
    if event == "review.requested":
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {
                        "type": "button",
                        "text": {"type": "plain_text", "text": "Review (approve or deny)"},
                        "url": review["url"],
                        "style": "primary",
                    }
                ],
            }
        )
    return {"text": title, "blocks": blocks}


def _slack_text(value: object) -> str:
    """Text as Slack shows it literally: its three control characters escaped."""
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shown(url: str) -> str:
    """A receiver's URL for logs: scheme and host only (a Slack URL's path is its secret)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.partition('/')[0]}/..."
