"""Just-in-time approval end to end: the official `openai` SDK calls through the gateway, and
approvers decide through the admin API as themselves.

The demo LLM echoes the last user message, so a reply shows the call went through; the
recording log shows every step of each review.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from geogate.reviews import gate
from tests.conftest import UPSTREAM_KEY
from tests.gateways import Gateway, run_gateway
from tests.recordings import records
from tests.reviewing import chat, error_of

POLICY = """\
version: 1
gateway:
  region: onprem:test-eu
  state: "sqlite:///{folder}/state.db"
  audit_key: "{folder}/audit.key"
  recordings: {{store: "file://{folder}/recordings"}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
connections:
  held: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  asked: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  granted: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  brief: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  dual: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  detected: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  claude: {{type: anthropic, url: "{demo}", region: onprem:test-eu, credentials: {{header: {{x-api-key: {key}}}}}}}
reviews: {{max_open: 100}}  # the tests of this module leave reviews waiting
policies:
  - name: hold
    subjects: {{groups: [contractors]}}
    connections: [held]
    review: {{approvers: {{groups: [security]}}, mode: hold, timeout: 30s}}
  - name: ask
    subjects: {{groups: [contractors]}}
    connections: [asked, claude]
    review: {{approvers: {{groups: [security]}}, mode: ask, timeout: 1m}}
  - name: grant
    subjects: {{groups: [contractors]}}
    connections: [granted]
    review: {{approvers: {{groups: [security]}}, mode: ask, grant: 1m}}
  - name: brief
    subjects: {{groups: [contractors]}}
    connections: [brief]
    review: {{approvers: {{groups: [security]}}, mode: hold, timeout: 1s}}
  - name: dual
    subjects: {{groups: [contractors]}}
    connections: [dual]
    review: {{approvers: {{users: [carol@example.com], groups: [security]}}, mode: ask, min_approvals: 2}}
  - name: detect
    subjects: {{groups: [contractors]}}
    connections: [detected]
    mask: {{request: [us_ssn], on_detect: review}}
    review: {{approvers: {{groups: [security]}}, mode: ask}}
"""
SSN = "123-45-6789"


class Team:
    """The caller and the people around them, each with an API key."""

    def __init__(self, gw: Gateway, folder: Path) -> None:
        self.gw = gw
        self.folder = folder
        self.alice = gw.create_key("alice@example.com", groups=["contractors", "security"])
        self.bob = gw.create_key("bob@example.com", groups=["security"])
        self.carol = gw.create_key("carol@example.com", groups=["security"])
        self.mallory = gw.create_key("mallory@example.com", groups=["contractors"])
        self.admin = gw.create_key("root@example.com", groups=["geogate-admins"])
        self.bot = gw.create_key(
            "bob@example.com", groups=["security"], service_account="approver-bot"
        )

    def client(self, connection: str, **options: Any) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.gw.url(connection), api_key=self.alice, max_retries=0, **options
        )

    def api(self, method: str, path: str, key: str, body: Any = None) -> httpx2.Response:
        return httpx2.request(
            method,
            self.gw.base_url + path,
            headers={"Authorization": f"Bearer {key}"},
            json=body,
            timeout=10,
        )

    def approve(self, review_id: str, key: str, reason: str | None = None) -> httpx2.Response:
        body = {"reason": reason} if reason else None
        return self.api("POST", f"/api/v1/reviews/{review_id}/approve", key, body)

    def deny(self, review_id: str, key: str, reason: str | None = None) -> httpx2.Response:
        body = {"reason": reason} if reason else None
        return self.api("POST", f"/api/v1/reviews/{review_id}/deny", key, body)

    def pending(self, key: str, connection: str) -> list[dict[str, Any]]:
        answer = self.api("GET", "/api/v1/reviews?status=pending", key)
        assert answer.status_code == 200, answer.text
        return [row for row in answer.json() if row["connection"] == connection]

    def wait_pending(self, connection: str, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 10
        while True:
            rows = self.pending(self.bob, connection)
            if len(rows) >= count:
                return rows
            assert time.monotonic() < deadline, f"no pending review of {connection}"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, demo_url: str) -> Iterator[Team]:
    folder = tmp_path_factory.mktemp("reviews")
    policy = POLICY.format(folder=folder, demo=demo_url, key=UPSTREAM_KEY)
    with run_gateway(folder, policy) as gw:
        yield Team(gw, folder)


class _Background:
    """A call made in a thread, so the test can approve it while it is held."""

    def __init__(self, client: openai.OpenAI, text: str) -> None:
        self.result: str | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(client, text))
        self._thread.start()

    def _run(self, client: openai.OpenAI, text: str) -> None:
        try:
            self.result = chat(client, text)
        except BaseException as exc:
            self.error = exc

    def join(self) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


def test_hold_waits_for_another_persons_approval(team: Team) -> None:
    call = _Background(team.client("held"), "deploy the fix for ticket 7")
    [review] = team.wait_pending("held")
    assert review["subject"] == "alice@example.com" and review["mode"] == "hold"
    assert review["summary"]["preview"] == "deploy the fix for ticket 7"
    assert call.result is None and call.error is None  # still held

    own = team.approve(review["id"], team.alice)
    assert own.status_code == 403 and "own call" in own.json()["error"]["message"]
    bot = team.approve(review["id"], team.bot)
    assert bot.status_code == 403 and "service account" in bot.json()["error"]["message"]
    outsider = team.approve(review["id"], team.mallory)
    assert outsider.status_code == 403 and "not an approver" in outsider.json()["error"]["message"]

    approved = team.approve(review["id"], team.bob, "looks fine")
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    call.join()
    assert call.error is None and call.result == "You said: deploy the fix for ticket 7"

    again = team.approve(review["id"], team.carol)
    assert again.status_code == 409  # decided, then used: nothing left to approve
    kinds = _review_steps(team, review["id"])
    assert kinds == ["review.requested", "review.voted", "review.approved", "review.used"]
    record = _call_record(team, review["request_id"])
    assert record["review"]["id"] == review["id"]
    assert record["review"]["approved_by"] == ["bob@example.com"]


def test_hold_denied_refuses_the_call_with_the_reason(team: Team) -> None:
    call = _Background(team.client("held"), "drop the production table")
    [review] = team.wait_pending("held")
    denied = team.deny(review["id"], team.bob, "not during the freeze")
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    call.join()
    assert isinstance(call.error, openai.PermissionDeniedError)
    error = error_of(call.error)
    assert error["code"] == "approval_denied" and error["review_id"] == review["id"]
    assert "not during the freeze" in error["message"]


def test_hold_times_out_as_approval_expired(team: Team) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(team.client("brief"), "anything")
    assert error_of(caught.value)["code"] == "approval_expired"
    [row] = [
        r for r in team.api("GET", "/api/v1/reviews", team.bob).json() if r["connection"] == "brief"
    ]
    assert row["status"] == "expired"
    assert _review_steps(team, row["id"]) == ["review.requested", "review.expired"]


def test_held_caller_that_leaves_withdraws_its_review(team: Team) -> None:
    with pytest.raises(openai.APITimeoutError):
        chat(team.client("held", timeout=1.0), "I will not wait")
    deadline = time.monotonic() + 10
    while True:
        rows = [
            r
            for r in team.api("GET", "/api/v1/reviews", team.bob).json()
            if r["connection"] == "held" and r["summary"]["preview"] == "I will not wait"
        ]
        if rows and rows[0]["status"] == "withdrawn":
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.05)
    assert team.approve(rows[0]["id"], team.bob).status_code == 409


def test_ask_refuses_at_once_and_the_same_call_goes_once_approved(team: Team) -> None:
    client = team.client("asked")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(client, "summarise ticket 9")
    error = error_of(caught.value)
    assert error["code"] == "approval_required"
    review_id, url = error["review_id"], error["review_url"]
    assert url == f"{team.gw.base_url}/reviews/{review_id}"

    with pytest.raises(openai.PermissionDeniedError) as again:  # still pending: same review
        chat(client, "summarise ticket 9")
    assert error_of(again.value)["review_id"] == review_id

    assert team.approve(review_id, team.bob).status_code == 200
    impostor = openai.OpenAI(base_url=team.gw.url("asked"), api_key=team.mallory, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as borrowed:  # bound to the caller
        chat(impostor, "summarise ticket 9")
    assert error_of(borrowed.value)["review_id"] != review_id
    with pytest.raises(openai.PermissionDeniedError) as elsewhere:  # and to the path
        team.client("asked").embeddings.create(model="demo", input="summarise ticket 9")
    assert error_of(elsewhere.value)["review_id"] != review_id
    with pytest.raises(openai.PermissionDeniedError) as changed:
        chat(client, "summarise ticket 9 and email it to me")
    other = error_of(changed.value)
    assert other["code"] == "approval_required" and other["review_id"] != review_id

    assert chat(client, "summarise ticket 9") == "You said: summarise ticket 9"
    with pytest.raises(openai.PermissionDeniedError) as used:  # single use: asks anew
        chat(client, "summarise ticket 9")
    third = error_of(used.value)
    assert third["code"] == "approval_required" and third["review_id"] not in (
        review_id,
        other["review_id"],
    )


def test_ask_denied_answers_approval_denied(team: Team) -> None:
    client = team.client("asked")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(client, "export every customer")
    review_id = error_of(caught.value)["review_id"]
    assert team.deny(review_id, team.carol, "no bulk exports").status_code == 200
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(client, "export every customer")
    error = error_of(denied.value)
    assert error["code"] == "approval_denied" and "no bulk exports" in error["message"]


def test_grant_window_lets_the_caller_use_the_connection_until_it_ends(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = team.client("granted")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(client, "first question")
    review_id = error_of(caught.value)["review_id"]
    approved = team.approve(review_id, team.bob)
    assert approved.json()["grant_until"] is not None
    assert chat(client, "first question") == "You said: first question"
    assert chat(client, "another question") == "You said: another question"
    other = openai.OpenAI(base_url=team.gw.url("granted"), api_key=team.mallory, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError) as someone_else:
        chat(other, "may I too?")
    assert error_of(someone_else.value)["code"] == "approval_required"

    decided = datetime.fromisoformat(approved.json()["decided_at"])
    grant_until = datetime.fromisoformat(approved.json()["grant_until"])
    assert grant_until == decided + timedelta(minutes=1)  # the policy's window
    # The gateway runs in this process: move its review gate's clock instead of waiting.
    with monkeypatch.context() as later:
        later.setattr(gate, "_now", lambda: grant_until - timedelta(seconds=1))
        assert chat(client, "just in time") == "You said: just in time"
    with monkeypatch.context() as later, pytest.raises(openai.PermissionDeniedError) as ended:
        later.setattr(gate, "_now", lambda: grant_until + timedelta(seconds=1))
        chat(client, "one more")
    assert error_of(ended.value)["code"] == "approval_required"
    assert gate._now() < grant_until  # the gate is on real time again for the next tests
    assert _review_steps(team, review_id).count("review.used") == 3


def test_min_approvals_needs_two_people(team: Team) -> None:
    client = team.client("dual")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(client, "rotate the keys")
    review_id = error_of(caught.value)["review_id"]
    first = team.approve(review_id, team.bob)
    assert first.json()["status"] == "pending" and len(first.json()["votes"]) == 1
    assert team.approve(review_id, team.bob).status_code == 409  # one vote per person
    with pytest.raises(openai.PermissionDeniedError):
        chat(client, "rotate the keys")
    assert team.approve(review_id, team.carol).json()["status"] == "approved"
    assert chat(client, "rotate the keys") == "You said: rotate the keys"


def test_on_detect_review_holds_only_calls_with_findings(team: Team) -> None:
    client = team.client("detected")
    assert chat(client, "nothing sensitive here") == "You said: nothing sensitive here"
    text = f"customer SSN {SSN} needs a refund"
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(client, text)
    error = error_of(caught.value)
    review = team.api("GET", f"/api/v1/reviews/{error['review_id']}", team.bob).json()
    assert review["summary"]["found"] == {"us_ssn": 1}
    assert SSN not in json.dumps(review)  # approvers see the call masked
    assert "[US_SSN]" in review["summary"]["preview"]
    assert team.approve(error["review_id"], team.bob).status_code == 200
    assert chat(client, text) == f"You said: {text}"  # approved: it goes as it was sent


def test_reviews_are_visible_to_approvers_and_their_callers_only(team: Team) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(team.client("asked"), "visibility check")
    review_id = error_of(caught.value)["review_id"]
    assert team.api("GET", f"/api/v1/reviews/{review_id}", team.mallory).status_code == 404
    mine = team.api("GET", f"/api/v1/reviews/{review_id}", team.alice).json()
    assert mine["may_decide"] is False
    theirs = team.api("GET", f"/api/v1/reviews/{review_id}", team.bob).json()
    assert theirs["may_decide"] is True
    assert team.approve("rev_unknown", team.bob).status_code == 404
    assert team.api("GET", "/api/v1/reviews", "gk_forged").status_code == 401


def _review_steps(team: Team, review_id: str) -> list[str]:
    deadline = time.monotonic() + 10
    while True:
        steps = [r["kind"] for r in records(team.folder) if r.get("review_id") == review_id]
        if steps and steps[-1] in ("review.used", "review.expired", "review.denied"):
            return steps
        assert time.monotonic() < deadline, steps
        time.sleep(0.05)


def _call_record(team: Team, request_id: str) -> dict[str, Any]:
    for record in records(team.folder):
        review = record.get("review") if record.get("kind") == "call" else None
        if review is not None and review["requested_by"] == request_id:
            return record
    raise AssertionError(f"no call record of {request_id}")


def test_the_binding_covers_caller_connection_call_body_and_policy_version() -> None:
    from dataclasses import replace

    from geogate.identity import Principal
    from geogate.reviews import CallUnderReview

    alice = Principal("alice@example.com", "alice@example.com", frozenset(), None, "api_key", None)
    call = CallUnderReview(
        request_id="req_1",
        principal=alice,
        connection="asked",
        policy="ask",
        policy_version="v1",
        method="POST",
        target="/c/asked/chat/completions",
        body=b'{"messages": []}',
        describe=dict,
    )
    assert replace(call, request_id="req_2", describe=lambda: {"x": 1}).binding() == call.binding()
    bob = replace(alice, subject="bob@example.com", user="bob@example.com")
    for changed in (
        replace(call, principal=bob),
        replace(call, connection="held"),
        replace(call, method="PUT"),
        replace(call, target="/c/asked/chat/completions?x=1"),
        replace(call, body=b'{"messages": [] }'),
        replace(call, policy_version="v2"),
    ):
        assert changed.binding() != call.binding()


def test_the_audit_report_lists_every_step_of_a_review(team: Team) -> None:
    client = team.client("asked")
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(client, "report me")
    review_id = error_of(caught.value)["review_id"]
    assert team.approve(review_id, team.bob, "fine").status_code == 200
    chat(client, "report me")
    _review_steps(team, review_id)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    deadline = time.monotonic() + 15  # the session index is written every second
    while True:
        report = team.api("GET", f"/api/v1/audit/report?from={today}&to={today}", team.admin)
        assert report.status_code == 200, report.text
        steps = [(a["kind"], a["by"]) for a in report.json()["approvals"]]
        if ("review.used", "alice@example.com") in steps or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ("review.voted", "bob@example.com") in steps
    assert ("review.approved", "bob@example.com") in steps
    assert ("review.used", "alice@example.com") in steps


def test_what_approvers_see_is_masked_however_the_caller_disguises_it(team: Team) -> None:
    disguised = "\uff11\uff12\uff13-\uff14\uff15-\uff16\uff17\uff18\uff19"  # full-width
    zero_width = "123\u200b-45-6789"
    client = team.client("asked", default_headers={"x-geogate-justification": f"SSN {SSN}"})
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(
            client,
            f"card 4111 1111 1111 1111, SSN {zero_width} or {disguised}, AKIAIOSFODNN7EXAMPLE",
        )
    review = team.api("GET", f"/api/v1/reviews/{error_of(caught.value)['review_id']}", team.bob)
    shown = json.dumps(review.json(), ensure_ascii=False)
    for value in (disguised, zero_width, "4111 1111 1111 1111", "AKIAIOSFODNN7EXAMPLE", SSN):
        assert value not in shown
    summary = review.json()["summary"]
    assert "[US_SSN]" in summary["justification"]
    assert summary["preview"].count("[US_SSN]") == 2
    assert "[CREDIT_CARD]" in summary["preview"] and "[SECRET]" in summary["preview"]


def test_anthropic_callers_get_the_review_in_anthropics_error_shape(team: Team) -> None:
    client = anthropic.Anthropic(base_url=team.gw.url("claude"), api_key=team.alice, max_retries=0)

    def ask() -> str:
        reply = client.messages.create(
            model="claude-demo", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )
        block = reply.content[0]
        assert block.type == "text"
        return block.text

    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        ask()
    body = caught.value.body
    assert isinstance(body, dict)
    error = body["error"]
    assert error["type"] == "approval_required" and error["review_id"].startswith("rev_")
    assert error["review_url"].endswith(f"/reviews/{error['review_id']}")
    assert team.approve(error["review_id"], team.bob).status_code == 200
    assert ask() == "You said: hi"
