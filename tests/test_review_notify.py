"""Review notifications: a signed webhook that survives its receiver being down, and Slack.

The receivers are local ASGI apps. The Slack one speaks Slack's incoming-webhook wire format:
a JSON body with `text` (and optional `blocks`), answered `200 ok`, or `400 invalid_payload`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from starlette.types import Receive, Scope, Send

from geogate.reviews import verify_signature
from tests.conftest import UPSTREAM_KEY
from tests.gateways import Gateway, run_gateway
from tests.reviewing import refused
from tests.servers import free_port, run_asgi

SECRET = "whsec-0123456789abcdef"
SSN = "123-45-6789"


@dataclass
class Receiver:
    """Keeps what it is sent; answers 503 to the first `failures` requests."""

    slack: bool = False
    failures: int = 0
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    attempts: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        self.attempts += 1
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if self.attempts <= self.failures:
            status, answer = 503, b"unavailable"
        elif self.slack and not _valid_slack(body):
            status, answer = 400, b"invalid_payload"
        else:
            self.received.append((headers, body))
            status, answer = 200, b"ok"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "http.response.body", "body": answer})

    def wait(self, count: int, seconds: float = 20) -> list[tuple[dict[str, str], bytes]]:
        deadline = time.monotonic() + seconds
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} received"
            time.sleep(0.05)
        return self.received


def _valid_slack(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("text"), str)


POLICY = """\
version: 1
gateway:
  region: onprem:test-eu
  state: "sqlite:///{folder}/state.db"
  audit_key: "{folder}/audit.key"
  listen: "127.0.0.1:{port}"
  recordings: {{store: "file://{folder}/recordings"}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
connections:
  asked: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
reviews:
  notify:
{notify}
policies:
  - name: ask
    subjects: {{groups: [contractors]}}
    connections: [asked]
    review: {{approvers: {{groups: [security]}}, mode: ask}}
"""


@contextmanager
def _gateway(
    tmp_path: Path, demo_url: str, notify: list[str]
) -> Iterator[tuple[Gateway, str, str]]:
    """The gateway with `notify` receivers; yields it, a caller's key and an approver's."""
    port = free_port()
    policy = POLICY.format(
        folder=tmp_path, demo=demo_url, key=UPSTREAM_KEY, notify="\n".join(notify), port=port
    )
    with run_gateway(tmp_path, policy, port) as gw:
        caller = gw.create_key("alice@example.com", groups=["contractors"])
        approver = gw.create_key("bob@example.com", groups=["security"])
        yield gw, caller, approver


def _ask(gw: Gateway, key: str, text: str, host: str | None = None) -> dict[str, Any]:
    headers = {} if host is None else {"Host": host}
    client = openai.OpenAI(
        base_url=gw.url("asked"), api_key=key, max_retries=0, default_headers=headers
    )
    error = refused(client, text)
    assert error["code"] == "approval_required"
    return error


def _approve(gw: Gateway, key: str, review_id: str) -> None:
    answer = httpx2.post(
        f"{gw.base_url}/api/v1/reviews/{review_id}/approve",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def test_webhook_is_signed_and_retried_until_the_receiver_answers(
    tmp_path: Path, demo_url: str
) -> None:
    receiver = Receiver(failures=2)  # down for the first two attempts (1 s and 2 s of backoff)
    with run_asgi(receiver) as url:
        notify = [f"    - {{webhook: {url}/hook, secret: {SECRET}}}"]
        with _gateway(tmp_path, demo_url, notify) as (gw, caller, approver):
            error = _ask(gw, caller, f"refund for SSN {SSN}")
            [(headers, body)] = receiver.wait(1)
            assert receiver.attempts == 3
            assert headers["x-geogate-event"] == "review.requested"
            assert verify_signature(SECRET, headers["x-geogate-signature"], body)
            assert not verify_signature(SECRET, headers["x-geogate-signature"], body + b" ")
            assert not verify_signature(
                "another-secret-12345", headers["x-geogate-signature"], body
            )
            payload = json.loads(body)
            review = payload["review"]
            assert review["id"] == error["review_id"] and review["url"] == error["review_url"]
            assert SSN not in body.decode()  # the summary is masked
            assert "[US_SSN]" in review["summary"]["preview"]

            _approve(gw, approver, error["review_id"])
            decided = receiver.wait(2)[1]
            assert decided[0]["x-geogate-event"] == "review.approved"
            assert json.loads(decided[1])["review"]["votes"][0]["by"] == "bob@example.com"


def test_a_receiver_that_is_down_blocks_nothing_and_loses_no_review(
    tmp_path: Path, demo_url: str
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    with _gateway(tmp_path, demo_url, [f"    - {{webhook: {closed}, secret: {SECRET}}}"]) as (
        gw,
        caller,
        approver,
    ):
        error = _ask(gw, caller, "ship it")  # answered while every delivery fails
        listed = httpx2.get(
            f"{gw.base_url}/api/v1/reviews?status=pending",
            headers={"Authorization": f"Bearer {approver}"},
        ).json()
        assert [row["id"] for row in listed] == [error["review_id"]]
        _approve(gw, approver, error["review_id"])
        client = openai.OpenAI(base_url=gw.url("asked"), api_key=caller, max_retries=0)
        reply = client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "ship it"}]
        )
        assert reply.choices[0].message.content == "You said: ship it"


def test_signature_checks_refuse_replays_and_garbage() -> None:
    body = b'{"event":"review.requested"}'
    from geogate.reviews.notify import sign

    now = int(time.time())
    assert verify_signature(SECRET, sign(SECRET, now, body), body)
    old = sign(SECRET, now - 3600, body)
    assert not verify_signature(SECRET, old, body)  # a replayed old delivery
    for header in ("", "t=abc,v1=00", "v1=" + "0" * 64, f"t={now}", f"t={now},v1="):
        assert not verify_signature(SECRET, header, body)


def test_slack_message_links_to_the_review_page(tmp_path: Path, demo_url: str) -> None:
    receiver = Receiver(slack=True)
    with run_asgi(receiver) as url:
        notify = [f"    - {{slack: {url}/services/T000/B000/XXXX}}"]
        with _gateway(tmp_path, demo_url, notify) as (gw, caller, _approver):
            forged = "approve-here.example"  # the caller's own Host header
            error = _ask(gw, caller, f"customer <@U123> SSN {SSN} & more", host=forged)
            assert error["review_url"].startswith(f"http://{forged}/")  # the caller's own view
            [(_headers, body)] = receiver.wait(1)
            message = json.loads(body)
            assert error["review_id"] in message["text"]
            text = json.dumps(message)
            assert SSN not in text
            assert "<@U123>" not in text  # a mention or link in the call cannot ping anyone
            [button] = message["blocks"][-1]["elements"]
            assert button["url"] == f"{gw.base_url}/reviews/{error['review_id']}"  # configured
            assert forged not in text


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("{webhook: https://hooks.example.com/x}", "needs a secret"),
        ("{webhook: http://hooks.example.com/x, secret: 0123456789abcdef}", "https://"),
        ("{slack: https://hooks.slack.com/x, secret: 0123456789abcdef}", "secret is for webhooks"),
        (
            "{webhook: https://a.example/x, slack: https://b.example/y, secret: 0123456789abcdef}",
            "exactly one",
        ),
        ("{webhook: https://hooks.example.com/x, secret: short}", "at least 16"),
    ],
)
def test_bad_notify_entries_are_policy_errors(tmp_path: Path, entry: str, problem: str) -> None:
    from geogate.config import ConfigError, parse_config

    policy = f"version: 1\nreviews:\n  notify:\n    - {entry}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(policy, filename="geogate.yaml", base_dir=tmp_path)
    assert problem in str(caught.value)
    assert "geogate.yaml:4" in str(caught.value)


def test_a_caller_past_max_open_gets_too_many_reviews_and_nobody_is_notified(
    tmp_path: Path, demo_url: str
) -> None:
    receiver = Receiver()
    with run_asgi(receiver) as url:
        port = free_port()
        policy = POLICY.format(
            folder=tmp_path,
            demo=demo_url,
            key=UPSTREAM_KEY,
            port=port,
            notify=f"    - {{webhook: {url}/hook, secret: {SECRET}}}",
        ).replace("reviews:\n  notify:\n", "reviews:\n  max_open: 1\n  notify:\n")
        with run_gateway(tmp_path, policy, port) as gw:
            caller = gw.create_key("alice@example.com", groups=["contractors"])
            _ask(gw, caller, "the first call")
            client = openai.OpenAI(base_url=gw.url("asked"), api_key=caller, max_retries=0)
            error = refused(client, "a second call", raised=openai.RateLimitError)
            assert error["code"] == "too_many_reviews" and "review_id" not in error
            receiver.wait(1)
            time.sleep(0.5)  # a second notification would have been sent by now
            assert len(receiver.received) == 1
