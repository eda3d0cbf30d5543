"""`geogate reviews` against a real gateway: callers are refused by an `ask` review through the
official `openai` SDK, and approvers decide with the CLI as themselves."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from geogate.cli import app
from geogate.store import ReviewRow, open_store
from tests.conftest import UPSTREAM_KEY
from tests.gateways import Gateway, run_gateway
from tests.reviewing import chat, refused
from tests.servers import free_port

POLICY = """\
version: 1
gateway:
  region: onprem:test-eu
  listen: "{listen}"
  state: "sqlite:///{folder}/state.db"
  audit_key: "{folder}/audit.key"
  recordings: {{store: "file://{folder}/recordings"}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
connections:
  asked: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
  dual: {{type: openai, url: "{demo}/v1", region: onprem:test-eu, credentials: {{bearer: {key}}}}}
policies:
  - name: ask
    subjects: {{groups: [contractors]}}
    connections: [asked]
    review: {{approvers: {{groups: [security]}}, mode: ask, timeout: 1m}}
  - name: dual
    subjects: {{groups: [contractors]}}
    connections: [dual]
    review: {{approvers: {{groups: [security]}}, mode: ask, min_approvals: 2}}
"""
ALICE = "alice@example.com"
runner = CliRunner()


@dataclass
class Team:
    gw: Gateway
    folder: Path
    port: int
    alice: str
    bob: str
    carol: str
    bot: str
    """A key of bob's service account: in the approvers' group, but not a person."""

    @property
    def policy(self) -> str:
        return str(self.folder / "geogate.yaml")

    def ask(self, text: str, connection: str = "asked") -> str:
        """Make a call the gateway refuses until it is approved; its review id."""
        error = refused(self.client(connection), text)
        assert error["code"] == "approval_required"
        return str(error["review_id"])

    def client(self, connection: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.gw.url(connection), api_key=self.alice, max_retries=0)


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory, demo_url: str) -> Iterator[Team]:
    folder = tmp_path_factory.mktemp("cli-reviews")
    port = free_port()
    policy = POLICY.format(
        listen=f"127.0.0.1:{port}", folder=folder, demo=demo_url, key=UPSTREAM_KEY
    )
    with run_gateway(folder, policy, port) as gw:
        yield Team(
            gw,
            folder,
            port,
            alice=gw.create_key(ALICE, groups=["contractors"]),
            bob=gw.create_key("bob@example.com", groups=["security"]),
            carol=gw.create_key("carol@example.com", groups=["security"]),
            bot=gw.create_key("bob@example.com", groups=["security"], service_account="bot"),
        )


@pytest.fixture(autouse=True)
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sign-ins go to a file of the test's own; no GEOGATE_* setting leaks in from outside."""
    for name in ("GEOGATE_URL", "GEOGATE_TOKEN", "GEOGATE_CONFIG", "XDG_CONFIG_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)  # tables are compared as plain text
    path = tmp_path / "credentials.json"
    monkeypatch.setenv("GEOGATE_CREDENTIALS", str(path))
    return path


def geogate(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["reviews", *args])
    return result.exit_code, result.stdout, result.stderr


def remote(team: Team, token: str, *args: str) -> tuple[int, str, str]:
    return geogate(*args, "--gateway", team.gw.base_url, "--token", token)


def listed(*args: str) -> list[dict[str, Any]]:
    code, out, err = geogate("list", "--json", *args)
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


def one(rows: list[dict[str, Any]], review_id: str) -> dict[str, Any]:
    [row] = [row for row in rows if row["id"] == review_id]
    return row


def line_of(table: str, review_id: str) -> str:
    [line] = [line for line in table.splitlines() if review_id in line]
    return line


def test_list_here_and_through_the_gateway(team: Team) -> None:
    review_id = team.ask("summarise ticket 9\nand its history")

    code, table, err = geogate("list", "--config", team.policy)
    assert code == 0, err
    row = line_of(table, review_id)
    for shown in ("pending", ALICE, "asked", "ask", "summarise ticket 9 and its history"):
        assert shown in row

    local = one(listed("--config", team.policy), review_id)
    assert (local["status"], local["subject"], local["connection"]) == ("pending", ALICE, "asked")
    assert local["votes"] == [] and local["url"] == f"{team.gw.base_url}/reviews/{review_id}"
    requested = datetime.fromisoformat(local["requested_at"])
    assert datetime.fromisoformat(local["deadline"]) - requested == timedelta(minutes=1)

    code, table, err = remote(team, team.bob, "list")
    assert code == 0, err
    assert "pending" in line_of(table, review_id)
    over_api = one(listed("--gateway", team.gw.base_url, "--token", team.bob), review_id)
    assert over_api.pop("may_decide") is True  # bob is an approver
    assert local.pop("may_decide") is False  # the operator here is nobody who may decide
    assert local == over_api

    pending = listed("--config", team.policy, "--status", "pending")
    assert review_id in [row["id"] for row in pending]
    denied = listed("--config", team.policy, "--status", "denied")
    assert review_id not in [row["id"] for row in denied]
    remote_denied = listed("--status", "denied", "--gateway", team.gw.base_url, "--token", team.bob)
    assert review_id not in [row["id"] for row in remote_denied]


def test_approve_lets_the_callers_retry_go(team: Team) -> None:
    review_id = team.ask("deploy the fix for ticket 7")
    code, out, err = remote(team, team.bob, "approve", review_id, "--reason", "looks fine")
    assert code == 0, err
    assert out == f"Approved {review_id} (approved: the call may go once it is sent again).\n"
    client = team.client("asked")
    assert chat(client, "deploy the fix for ticket 7") == "You said: deploy the fix for ticket 7"

    code, _, err = remote(team, team.carol, "approve", review_id)  # used: nothing to approve
    assert code == 1 and f"Review {review_id} is already used" in err
    row = one(listed("--config", team.policy, "--status", "used"), review_id)
    assert [(v["by"], v["decision"], v["reason"]) for v in row["votes"]] == [
        ("bob@example.com", "approve", "looks fine")
    ]
    code, table, _ = geogate("list", "--config", team.policy)
    assert "bob@example.com approve: looks fine" in line_of(table, review_id)


def test_deny_tells_the_caller_the_reason(team: Team) -> None:
    review_id = team.ask("export every customer")
    code, out, err = remote(team, team.carol, "deny", review_id, "--reason", "no bulk exports")
    assert code == 0, err
    assert out == f"Denied {review_id} ({ALICE} is told: no bulk exports).\n"
    error = refused(team.client("asked"), "export every customer")
    assert error["code"] == "approval_denied" and error["review_id"] == review_id
    assert "no bulk exports" in error["message"]
    assert one(listed("--config", team.policy), review_id)["status"] == "denied"


def test_a_second_approval_is_needed_when_the_policy_asks_for_two(team: Team) -> None:
    review_id = team.ask("rotate the keys", "dual")
    code, out, err = remote(team, team.bob, "approve", review_id)
    assert code == 0, err
    assert out == f"Approved {review_id}; it is still pending: 1 of 2 approvals.\n"
    code, _, err = remote(team, team.bob, "approve", review_id)
    assert code == 1 and "has already voted" in err
    code, out, err = remote(team, team.carol, "approve", review_id)
    assert code == 0 and out.startswith(f"Approved {review_id} (approved:"), err
    assert chat(team.client("dual"), "rotate the keys") == "You said: rotate the keys"


def test_nobody_decides_their_own_call_nor_a_service_account(team: Team) -> None:
    review_id = team.ask("let me approve myself")
    code, out, err = remote(team, team.alice, "approve", review_id)
    assert code == 1 and out == ""
    assert f"{ALICE} asked for this call, and nobody approves their own call." in err
    code, _, err = remote(team, team.bot, "approve", review_id)
    assert code == 1 and "not a service account" in err
    code, _, err = remote(team, team.alice, "deny", review_id)
    assert code == 1 and "own call" in err
    row = one(listed("--config", team.policy), review_id)
    assert row["status"] == "pending" and row["votes"] == []


def test_unknown_or_malformed_reviews_are_refused(team: Team) -> None:
    code, _, err = remote(team, team.bob, "approve", "rev_unknown")
    assert code == 1 and "No review 'rev_unknown'." in err
    for crafted in ("../../users/bob@example.com/deactivate", "rev_x?reason=x", "rev_x/deny"):
        code, out, err = remote(team, team.bob, "approve", crafted)
        assert code == 1 and out == "" and "is not a review id" in err, crafted
    review_id = team.ask("a reason too long to keep")
    code, _, err = remote(team, team.bob, "deny", review_id, "--reason", "x" * 1001)
    assert code == 1 and "The request is not valid" in err
    assert one(listed("--config", team.policy), review_id)["status"] == "pending"


def test_without_gateway_the_policy_files_own_gateway_decides(
    team: Team, credentials: Path, tmp_path: Path
) -> None:
    first = team.ask("first call for the local gateway")
    code, out, err = geogate("approve", first, "--config", team.policy, "--token", team.bob)
    assert code == 0 and out.startswith(f"Approved {first} (approved:"), err

    # no --token: the sign-in `geogate login` saved for http://127.0.0.1:PORT
    credentials.write_text(json.dumps({team.gw.base_url: {"id_token": team.carol}}))
    second = team.ask("second call for the local gateway")
    code, out, err = geogate("deny", second, "--config", team.policy)
    assert code == 0 and out == f"Denied {second}.\n", err
    [vote] = one(listed("--config", team.policy), second)["votes"]
    assert vote["by"] == "carol@example.com"

    # a gateway listening on every interface is reached at loopback
    everywhere = (team.folder / "geogate.yaml").read_text()
    everywhere = everywhere.replace(f"127.0.0.1:{team.port}", f"0.0.0.0:{team.port}")
    (tmp_path / "geogate.yaml").write_text(everywhere)
    third = team.ask("third call for the local gateway")
    code, out, err = geogate(
        "approve", third, "--config", str(tmp_path / "geogate.yaml"), "--token", team.bob
    )
    assert code == 0 and out.startswith(f"Approved {third}"), err


def test_sign_in_problems_exit_1_saying_what_to_do(team: Team, credentials: Path) -> None:
    review_id = team.ask("who may decide this")
    code, out, err = remote(team, "gk_forged", "approve", review_id)
    assert code == 1 and out == ""
    assert f"geogate login --gateway {team.gw.base_url}" in err

    code, _, err = geogate("approve", review_id, "--gateway", team.gw.base_url)
    assert code == 1 and f"Not signed in to {team.gw.base_url}" in err
    assert not credentials.exists()

    nobody = f"http://127.0.0.1:{free_port()}"
    code, _, err = geogate("approve", review_id, "--gateway", nobody, "--token", team.bob)
    assert code == 1 and f"Cannot reach the gateway at {nobody}" in err

    code, _, err = geogate("list", "--gateway", "http://gw.example.com", "--token", team.bob)
    assert code == 1 and "plain http" in err  # the token is not sent in clear

    assert one(listed("--config", team.policy), review_id)["status"] == "pending"


def test_callers_and_approvers_text_cannot_drive_the_terminal(team: Team) -> None:
    review_id = team.ask("\x1b[2J\x1b]0;owned\x07[bold red]wipe[/] and \r\x1b[Fmore")
    reason = "\x1b[31mfake\x1b[0m [link=https://evil.example]ok[/link]\x9b2J"
    code, out, err = remote(team, team.bob, "deny", review_id, "--reason", reason)
    assert code == 0, err
    assert out == (
        f"Denied {review_id} ({ALICE} is told: \\x1b[31mfake\\x1b[0m "
        "[link=https://evil.example]ok[/link]\\x9b2J).\n"
    )
    for code, table, err in (
        geogate("list", "--config", team.policy),
        remote(team, team.bob, "list"),
    ):
        assert code == 0, err
        assert not any(char in table for char in "\x1b\x07\x9b\r")
        row = line_of(table, review_id)
        assert "\\x1b[2J\\x1b]0;owned\\x07[bold red]wipe[/] and \\x0d\\x1b[Fmore" in row
        assert "deny: \\x1b[31mfake\\x1b[0m [link=https://evil.example]ok[/link]\\x9b2J" in row
    assert one(listed("--config", team.policy), review_id)["votes"][0]["reason"] == reason


def _review(review_id: str, requested: datetime, timeout: timedelta) -> ReviewRow:
    return ReviewRow(
        id=review_id,
        binding=review_id,
        status="pending",
        mode="ask",
        request_id="req_" + review_id,
        subject=ALICE,
        user=ALICE,
        connection="asked",
        policy="ask",
        policy_version="v1",
        summary={"method": "POST", "target": "/v1/chat/completions", "preview": "hello"},
        approvers={"users": [], "groups": ["security"]},
        min_approvals=1,
        votes=[],
        grant=0.0,
        timeout=timeout.total_seconds(),
        requested_at=requested,
        deadline=requested + timeout,
    )


def test_here_a_review_past_its_deadline_shows_as_expired(tmp_path: Path) -> None:
    """No gateway sweeps this store: the CLI works out the expiry and writes nothing."""
    state = f"sqlite:///{tmp_path / 'state.db'}"
    policy = tmp_path / "geogate.yaml"
    policy.write_text(f'version: 1\ngateway:\n  state: "{state}"\n')
    now = datetime.now(UTC)
    overdue = _review("rev_overdue", now - timedelta(minutes=10), timedelta(minutes=1))
    waiting = _review("rev_waiting", now - timedelta(minutes=20), timedelta(hours=1))

    async def add() -> None:
        async with await open_store(state) as store:
            await store.reviews.add(waiting)
            await store.reviews.add(overdue)

    asyncio.run(add())
    config = ("--config", str(policy))
    everything = listed(*config)
    assert [(r["id"], r["status"]) for r in everything] == [
        ("rev_overdue", "expired"),
        ("rev_waiting", "pending"),
    ]
    assert datetime.fromisoformat(everything[0]["decided_at"]) == overdue.deadline
    # the newest stored pending review is overdue: the one page grows to find a pending one
    assert [r["id"] for r in listed(*config, "--status", "pending", "--limit", "1")] == [
        "rev_waiting"
    ]
    assert [r["id"] for r in listed(*config, "--status", "expired")] == ["rev_overdue"]
    code, table, err = geogate("list", *config)
    assert code == 0, err
    assert "expired" in line_of(table, "rev_overdue") and "pending" in line_of(table, "rev_waiting")
    deadline = overdue.deadline.strftime("%Y-%m-%d %H:%M")
    assert deadline in line_of(table, "rev_overdue")
    code, out, _ = geogate("list", *config, "--status", "denied")
    assert code == 0 and out == "No review matches.\n"

    async def stored() -> str | None:
        async with await open_store(state) as store:
            row = await store.reviews.get("rev_overdue")
            return None if row is None else row.status

    assert asyncio.run(stored()) == "pending"
