"""`geogate policy check` and `geogate policy explain`, run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geogate.cli.policy import app
from geogate.config import quickstart_path

runner = CliRunner()

POLICY = """\
version: 1
gateway:
  region: onprem:eu-dc1
regions:
  onprem:eu-dc1: {jurisdiction: eu}
  onprem:us-dc1: {jurisdiction: us}
connections:
  eu-llm: {type: openai, url: "https://llm.eu.example.com/v1", region: onprem:eu-dc1}
  us-llm: {type: openai, url: "https://llm.us.example.com/v1", region: onprem:us-dc1}
  masked-llm: {type: openai, url: "https://llm.eu.example.com/v1", region: onprem:eu-dc1}
policies:
  - name: masked
    subjects: {groups: [support-eu]}
    connections: [masked-llm]
    mask: {request: [us_ssn], on_detect: block}
  - name: support-eu
    subjects: {groups: [support-eu]}
    connections: [eu-llm, "us-*"]   # a glob: the region check of us-llm happens per call
    regions: [eu]
  - name: ci
    subjects: {service_accounts: [ci-bot]}
    connections: [eu-llm]
"""


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "geogate.yaml"
    path.write_text(POLICY)
    return path


def test_check_ok_prints_counts_and_notes(policy_file: Path) -> None:
    result = runner.invoke(app, ["check", "--config", str(policy_file)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"OK: 3 connections, 3 policies ({policy_file})"
    assert "note:" not in result.stdout  # reviews and masking are enforced: nothing to note
    assert "regions" not in result.stdout  # residency is enforced in full: no note about it


def test_check_failing_prints_file_line_on_stderr(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(POLICY.replace("type: openai, url", "type: openia, url", 1).replace(
        "connections: [eu-llm]", "connections: [eu-lm]"
    ))  # fmt: skip
    result = runner.invoke(app, ["check", "--config", str(path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:8: connections.eu-llm.type: 'openia' is not one of openai, anthropic, bedrock, "
        "azure-openai, vertex, mistral, http, mcp (did you mean 'openai'?)"
    ]


def test_check_reports_every_reference_problem(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(POLICY.replace("connections: [eu-llm]", "connections: [eu-lm]").replace(
        "regions: [eu]", "regions: [eu, atlantis]"
    ))  # fmt: skip
    result = runner.invoke(app, ["check", "--config", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}:19: policies[1].regions[1]: 'atlantis' is neither a region id nor a jurisdiction",
        f"{path}:22: policies[2].connections[0]: unknown connection 'eu-lm' "
        "(did you mean 'eu-llm'?)",
    ]


def test_check_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1
    assert "nope.yaml:0: cannot read the policy file" in result.stderr


def test_check_json(policy_file: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", "--json", "--config", str(policy_file)])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (report["ok"], report["connections"], report["policies"]) == (True, 3, 3)
    assert report["errors"] == []
    assert report["notes"] == []
    broken = tmp_path / "broken.yaml"
    broken.write_text("version: 2\n")
    result = runner.invoke(app, ["check", "--json", "--config", str(broken)])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["errors"] == [
        {"file": str(broken), "line": 1, "message": "version: must be 1, not 2"}
    ]


def test_check_defaults_to_the_quickstart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GEOGATE_CONFIG", raising=False)
    result = runner.invoke(app, ["check"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"OK: 3 connections, 3 policies ({quickstart_path()})")


def test_explain_allowed(policy_file: Path) -> None:
    result = runner.invoke(
        app,
        ["explain", "--user", "alice@example.com", "--groups", "support-eu, other",
         "--connection", "eu-llm", "--config", str(policy_file)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "ALLOWED: allowed by policy 'support-eu'"
    assert lines[1] == "policy: support-eu"
    assert "  - policy 'support-eu' matches alice@example.com (groups: other, support-eu)" in lines
    hops = lines[lines.index("hops:") + 1 :]
    assert [hop.split() for hop in hops] == [
        ["gateway", "onprem:eu-dc1", "inside"],
        ["target", "onprem:eu-dc1", "inside"],
        ["recording", "store", "onprem:eu-dc1", "inside"],
    ]


def test_explain_denied_by_region(policy_file: Path) -> None:
    result = runner.invoke(
        app,
        ["explain", "--user", "alice@example.com", "--groups", "support-eu",
         "--connection", "us-llm", "--config", str(policy_file)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("DENIED (region_not_allowed): ")
    assert ["target", "onprem:us-dc1", "OUTSIDE"] in [
        line.split() for line in result.stdout.splitlines()
    ]


def test_explain_denied_lists_each_policy_considered(policy_file: Path) -> None:
    result = runner.invoke(
        app,
        ["explain", "--user", "mallory@example.com", "--groups", "contractors",
         "--connection", "eu-llm", "--config", str(policy_file)],
    )  # fmt: skip
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].startswith("DENIED (connection_not_allowed): ")
    assert lines[1] == "policy: -"
    assert lines[2:] == [
        "why:",
        "  - policy 'support-eu': subjects need groups support-eu",
        "  - policy 'ci': subjects need service accounts ci-bot",
    ]


def test_explain_service_account_json(policy_file: Path) -> None:
    result = runner.invoke(
        app,
        ["explain", "--user", "ops@example.com", "--service-account", "ci-bot",
         "--connection", "eu-llm", "--json", "--config", str(policy_file)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    decision = json.loads(result.stdout)
    assert decision["allowed"] is True
    assert decision["policy"] == "ci"
    assert decision["code"] is None
    assert any("sa:ci-bot" in reason for reason in decision["reasons"])


def test_explain_unknown_connection_is_an_answer(policy_file: Path) -> None:
    result = runner.invoke(
        app,
        ["explain", "--user", "alice@example.com", "--connection", "nope", "--json",
         "--config", str(policy_file)],
    )  # fmt: skip
    assert result.exit_code == 0
    decision = json.loads(result.stdout)
    assert (decision["allowed"], decision["code"]) == (False, "unknown_connection")


def test_explain_quickstart_as_in_the_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GEOGATE_CONFIG", raising=False)
    result = runner.invoke(
        app,
        ["explain", "--user", "alice@example.com", "--groups", "support-eu",
         "--connection", "demo-openai"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ALLOWED: allowed by policy 'support-eu'")
    assert "mask: request customer-pii, secret; response -; style redact; on_detect mask" in (
        result.stdout
    )
    as_json = runner.invoke(
        app,
        ["explain", "--json", "--user", "alice@example.com", "--groups", "support-eu",
         "--connection", "demo-openai"],
    )  # fmt: skip
    assert json.loads(as_json.stdout)["mask"] == {
        "request": ["customer-pii", "secret"],
        "response": [],
        "style": "redact",
        "on_detect": "mask",
    }


def test_explain_broken_policy_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nconnections: [x]\n")
    result = runner.invoke(
        app, ["explain", "--user", "a", "--connection", "x", "--config", str(path)]
    )
    assert result.exit_code == 2
    assert f"{path}:2: connections: expected a mapping, got a list" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["explain", "--connection", "eu-llm"],
        ["explain", "--user", "a"],
        ["explain", "--user", " ", "--connection", "eu-llm"],
        ["explain", "--user", "a", "--service-account", "", "--connection", "eu-llm"],
    ],
)
def test_explain_usage_errors_exit_2(args: list[str], policy_file: Path) -> None:
    result = runner.invoke(app, [*args, "--config", str(policy_file)])
    assert result.exit_code == 2


def test_explain_says_who_must_approve(policy_file: Path) -> None:
    policy_file.write_text(
        POLICY.replace(
            "    mask: {request: [us_ssn], on_detect: block}\n",
            "    mask: {request: [us_ssn], on_detect: review}\n"
            "    review: {approvers: {users: [sam@example.com], groups: [security]}, grant: 1h}\n",
        )
    )
    arguments = ["explain", "--user", "alice@example.com", "--groups", "support-eu",
                 "--connection", "masked-llm", "--config", str(policy_file)]  # fmt: skip
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert (
        "review: hold, 1 approval(s) from sam@example.com, group security; timeout 600s; "
        "grant 3600s; only requests with findings"
    ) in result.stdout.splitlines()
    review = json.loads(runner.invoke(app, [*arguments, "--json"]).stdout)["review"]
    assert review["approvers"] == {"users": ["sam@example.com"], "groups": ["security"]}
    assert (review["mode"], review["grant"]) == ("hold", 3600.0)
