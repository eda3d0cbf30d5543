"""The review page (`/reviews/{id}`) that Slack messages and `approval_required` errors link to.

A real gateway and the official `openai` SDK make the reviews; approvers use the page with a
console session cookie (made in the store, as a sign-in would) or an API key. Covered: what
the page shows (escaped and masked), who sees it, who decides, CSRF and clickjacking defences,
and malformed or oversized decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.gateways import Gateway, run_gateway
from tests.reviewing import chat, error_of, refused

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
  asked: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  detected: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
reviews: {{max_open: 100}}  # every test here leaves a review of alice's waiting
policies:
  - name: ask
    subjects: {{groups: [contractors]}}
    connections: [asked]
    review: {{approvers: {{groups: [security]}}, mode: ask, timeout: 1m}}
  - name: detect
    subjects: {{groups: [contractors]}}
    connections: [detected]
    mask: {{request: [us_ssn], on_detect: review}}
    review: {{approvers: {{groups: [security]}}, mode: ask}}
"""
SSN = "123-45-6789"
ATTACK = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'&"


class Team:
    """The caller (alice, herself in `security`) and the people around her."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.alice_key = gw.create_key("alice@example.com", groups=["contractors", "security"])
        self.bob_key = gw.create_key("bob@example.com", groups=["security"])
        self.bot_key = gw.create_key(
            "bob@example.com", groups=["security"], service_account="approver-bot"
        )
        self.alice = self.session("alice@example.com", ["contractors", "security"])
        self.bob = self.session("bob@example.com", ["security"])
        self.carol = self.session("carol@example.com", ["security"])
        self.mallory = self.session("mallory@example.com", ["contractors"])
        self.ann = self.session("ann@example.com", ["geogate-admins"])

    def session(self, user: str, groups: list[str]) -> str:
        """A console session as a sign-in makes it; returns its cookie's value."""
        return self.gw.on_store(
            lambda store: store.create_session(user, groups, method="oidc", lifetime=3600)
        )

    def ask(self, text: str, connection: str = "asked", justification: str | None = None) -> str:
        """Make a call that needs an approval; returns its review's id."""
        client = openai.OpenAI(
            base_url=self.gw.url(connection), api_key=self.alice_key, max_retries=0
        )
        headers = {} if justification is None else {"x-geogate-justification": justification}
        error = refused(client, text, headers)
        assert error["code"] == "approval_required"
        assert error["review_url"] == f"{self.gw.base_url}/reviews/{error['review_id']}"
        return str(error["review_id"])

    def retry(self, text: str) -> str:
        client = openai.OpenAI(base_url=self.gw.url("asked"), api_key=self.alice_key, max_retries=0)
        return chat(client, text)

    def page(self, path: str, session: str | None) -> httpx2.Response:
        cookies = {} if session is None else {"Cookie": f"geogate_session={session}"}
        return httpx2.get(self.gw.base_url + path, headers=cookies, timeout=10)

    def post(
        self,
        path: str,
        *,
        session: str | None = None,
        origin: str | None = "same",
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
    ) -> httpx2.Response:
        sent = dict(headers or {})
        if session is not None:
            sent["Cookie"] = f"geogate_session={session}"
        if origin is not None:
            sent["Origin"] = self.gw.base_url if origin == "same" else origin
        return httpx2.post(
            self.gw.base_url + path, headers=sent, data=data, content=content, timeout=10
        )

    def review(self, review_id: str) -> dict[str, Any]:
        """The review as the admin API shows it to bob."""
        answer = httpx2.get(
            f"{self.gw.base_url}/api/v1/reviews/{review_id}",
            headers={"Authorization": f"Bearer {self.bob_key}"},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, demo_url: str) -> Iterator[Team]:
    folder = tmp_path_factory.mktemp("console-reviews")
    policy = POLICY.format(folder=folder, demo=demo_url, key=UPSTREAM_KEY)
    with run_gateway(folder, policy) as gw:
        yield Team(gw)


def _inert(answer: httpx2.Response) -> None:
    """The headers every console page carries: nothing loads or runs, nobody frames it."""
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["x-frame-options"] == "DENY"
    csp = answer.headers["content-security-policy"]
    for directive in ("default-src 'none'", "form-action 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["cache-control"] == "no-store"


def test_a_signed_out_visit_goes_to_the_sign_in_page(team: Team) -> None:
    review_id = team.ask("signed out visit")
    for session in (None, "forged-session-key"):
        visit = team.page(f"/reviews/{review_id}", session)
        back = f"/login?next=%2Freviews%2F{review_id}"  # the sign-in returns to the review
        assert (visit.status_code, visit.headers["location"]) == (303, back), session
        assert "signed out visit" not in visit.text


def test_the_page_shows_the_review_with_everything_escaped(team: Team) -> None:
    review_id = team.ask(f"summarise {ATTACK}", justification=f"ticket 42 {ATTACK}")
    page = team.page(f"/reviews/{review_id}", team.bob)
    assert page.status_code == 200, page.text
    _inert(page)
    text = page.text
    for raw in ("<script", "<img", "onerror=alert(2)>"):
        assert raw not in text.lower()
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
    assert f"summarise {escaped}" in text  # the masked preview
    assert f"ticket 42 {escaped}" in text  # the justification
    for shown in (
        review_id,
        "pending",
        "alice@example.com",
        "asked",
        "ask (version",
        "POST /c/asked/chat/completions",
        "groups security",
        "Approvals needed</th><td>1<",
        "Deadline",
        "this one call, once",
        "No votes yet.",
    ):
        assert shown in text, shown
    assert f'<form method="post" action="/reviews/{review_id}">' in text
    assert 'name="decision" value="approve"' in text and 'name="decision" value="deny"' in text
    assert '<textarea name="reason"' in text


def test_found_entities_are_listed_and_the_preview_is_masked(team: Team) -> None:
    review_id = team.ask(f"customer SSN {SSN} wants a refund", connection="detected")
    page = team.page(f"/reviews/{review_id}", team.carol)
    assert page.status_code == 200, page.text
    assert "us_ssn: 1" in page.text and "[US_SSN]" in page.text
    assert SSN not in page.text


def test_an_approver_approves_from_the_page_and_the_call_goes(team: Team) -> None:
    review_id = team.ask("approve me from the page")
    decided = team.post(
        f"/reviews/{review_id}",
        session=team.bob,
        data={"decision": "approve", "reason": "checked ticket 7, Grüße"},
    )
    assert (decided.status_code, decided.headers["location"]) == (303, f"/reviews/{review_id}")
    assert team.review(review_id)["status"] == "approved"
    page = team.page(f"/reviews/{review_id}", team.bob)
    assert "bob@example.com: approve at" in page.text and "checked ticket 7, Grüße" in page.text
    assert "<form" not in page.text and "there is nothing left to decide" in page.text
    assert team.retry("approve me from the page") == "You said: approve me from the page"
    again = team.post(f"/reviews/{review_id}", session=team.carol, data={"decision": "approve"})
    assert again.status_code == 409 and "already used" in again.text
    _inert(again)


@pytest.mark.parametrize(
    "origin",
    [None, "https://evil.example", "null", "http://127.0.0.1:1", "http://localhost"],
)
def test_a_cookie_decision_from_another_site_is_refused(team: Team, origin: str | None) -> None:
    review_id = team.ask(f"forged decision from {origin}")
    forged = team.post(
        f"/reviews/{review_id}", session=team.bob, origin=origin, data={"decision": "approve"}
    )
    assert forged.status_code == 401 and "cross-site" in forged.text
    _inert(forged)
    assert team.review(review_id)["status"] == "pending"


def test_the_caller_cannot_approve_their_own_call(team: Team) -> None:
    review_id = team.ask("let me approve myself")
    page = team.page(f"/reviews/{review_id}", team.alice)
    assert page.status_code == 200
    assert "You asked for this call; someone else must approve it." in page.text
    assert "<form" not in page.text
    own = team.post(f"/reviews/{review_id}", session=team.alice, data={"decision": "approve"})
    assert own.status_code == 403 and "nobody approves their own call" in own.text
    by_key = team.post(
        f"/reviews/{review_id}",
        origin=None,
        headers={"Authorization": f"Bearer {team.alice_key}"},
        data={"decision": "approve"},
    )
    assert by_key.status_code == 403
    assert team.review(review_id)["status"] == "pending"


def test_a_denial_with_a_reason_reaches_the_caller(team: Team) -> None:
    review_id = team.ask("export every customer")
    denied = team.post(
        f"/reviews/{review_id}",
        session=team.carol,
        data={"decision": "deny", "reason": f"  no bulk exports {ATTACK}  "},
    )
    assert denied.status_code == 303
    with pytest.raises(openai.PermissionDeniedError) as caught:
        team.retry("export every customer")
    error = error_of(caught.value)
    assert error["code"] == "approval_denied" and f"no bulk exports {ATTACK}" in error["message"]
    page = team.page(f"/reviews/{review_id}", team.bob)
    assert "carol@example.com: deny at" in page.text and "<script" not in page.text
    assert "no bulk exports &lt;script&gt;" in page.text


def test_unknown_and_hidden_reviews_are_not_found(team: Team) -> None:
    review_id = team.ask("not for mallory")
    for path, session in (
        ("/reviews/rev_unknown", team.bob),
        (f"/reviews/{review_id}", team.mallory),
        ("/reviews/%3Cscript%3Ealert(1)", team.bob),
    ):
        missing = team.page(path, session)
        assert missing.status_code == 404, path
        assert "that you may see" in missing.text and "<script" not in missing.text
        _inert(missing)
    nested = team.page(f"/reviews/{review_id}/%3Cscript%3E", team.bob)
    assert nested.status_code == 404 and "<script" not in nested.text
    _inert(nested)
    hidden = team.post(f"/reviews/{review_id}", session=team.mallory, data={"decision": "deny"})
    assert hidden.status_code == 404
    unknown = team.post("/reviews/rev_unknown", session=team.bob, data={"decision": "deny"})
    assert unknown.status_code == 404
    assert team.review(review_id)["status"] == "pending"


def test_an_admin_sees_a_review_but_decides_only_as_an_approver(team: Team) -> None:
    review_id = team.ask("an admin looks")
    page = team.page(f"/reviews/{review_id}", team.ann)
    assert page.status_code == 200 and "an admin looks" in page.text
    assert "ann@example.com is not an approver" in page.text and "<form" not in page.text


def test_a_vote_is_counted_once(team: Team) -> None:
    review_id = team.ask("vote twice")
    first = team.post(f"/reviews/{review_id}", session=team.bob, data={"decision": "deny"})
    assert first.status_code == 303
    second = team.post(f"/reviews/{review_id}", session=team.bob, data={"decision": "approve"})
    assert second.status_code == 409 and "already denied" in second.text
    assert team.review(review_id)["status"] == "denied"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"decision=maybe", "application/x-www-form-urlencoded", 400),
        (b"reason=no+decision", "application/x-www-form-urlencoded", 400),
        (b"decision=approve&decision=deny", "application/x-www-form-urlencoded", 400),
        (b"decision=approve&reason=a&reason=b", "application/x-www-form-urlencoded", 400),
        (b"decision=approve&reason=" + b"x" * 1001, "application/x-www-form-urlencoded", 400),
        (b"decision=approve&reason=%ff", "application/x-www-form-urlencoded", 400),
        (b"decision=approve&" + b"a=1&" * 20, "application/x-www-form-urlencoded", 400),
        (b"decision=approve&reason=" + b"x" * 17000, "application/x-www-form-urlencoded", 413),
        (b'{"decision": "approve"}', "application/json", 415),
        (b"decision=approve", "text/plain", 415),
    ],
)
def test_malformed_decisions_are_refused(
    team: Team, body: bytes, content_type: str, status: int
) -> None:
    review_id = team.ask(f"malformed {body[:40]!r} {content_type}")
    refused = team.post(
        f"/reviews/{review_id}",
        session=team.bob,
        content=body,
        headers={"Content-Type": content_type},
    )
    assert refused.status_code == status, refused.text
    assert f'href="/reviews/{review_id}"' in refused.text
    assert team.review(review_id)["status"] == "pending"


def test_a_chunked_body_over_the_limit_is_refused(team: Team) -> None:
    review_id = team.ask("chunked decision")

    def chunks() -> Iterator[bytes]:
        yield b"decision=approve&reason="
        for _ in range(40):
            yield b"x" * 1024

    refused = httpx2.post(
        f"{team.gw.base_url}/reviews/{review_id}",
        headers={
            "Cookie": f"geogate_session={team.bob}",
            "Origin": team.gw.base_url,
            "Content-Type": "application/x-www-form-urlencoded",
        },
        content=chunks(),
        timeout=10,
    )
    assert refused.status_code == 413
    assert team.review(review_id)["status"] == "pending"


def test_an_api_key_decides_without_an_origin(team: Team) -> None:
    review_id = team.ask("decided by a script")
    bot = team.post(
        f"/reviews/{review_id}",
        origin=None,
        headers={"Authorization": f"Bearer {team.bot_key}"},
        data={"decision": "approve"},
    )
    assert bot.status_code == 404  # a service account neither sees nor decides reviews
    decided = team.post(
        f"/reviews/{review_id}",
        origin=None,
        headers={"Authorization": f"Bearer {team.bob_key}"},
        data={"decision": "approve"},
    )
    assert decided.status_code == 303
    assert team.review(review_id)["status"] == "approved"


def test_a_post_without_credentials_is_refused(team: Team) -> None:
    review_id = team.ask("nobody signed in")
    anonymous = team.post(f"/reviews/{review_id}", data={"decision": "approve"})
    assert anonymous.status_code == 401 and "/login" in anonymous.text
    forged = team.post(
        f"/reviews/{review_id}",
        origin=None,
        headers={"Authorization": "Bearer gk_forged"},
        data={"decision": "approve"},
    )
    assert forged.status_code == 401
    assert team.review(review_id)["status"] == "pending"


def test_the_home_page_lists_the_reviews_waiting_for_the_signed_in_person(team: Team) -> None:
    review_id = team.ask("waiting <b>for</b> bob")
    home = team.page("/", team.bob)
    assert home.status_code == 200
    assert f'<a href="/reviews/{review_id}">{review_id}</a>' in home.text
    assert "alice@example.com on asked" in home.text
    assert review_id not in team.page("/", team.alice).text  # her own call: not hers to decide
    assert review_id not in team.page("/", team.mallory).text
    assert (
        team.post(f"/reviews/{review_id}", session=team.bob, data={"decision": "deny"}).status_code
        == 303
    )
    assert review_id not in team.page("/", team.bob).text
