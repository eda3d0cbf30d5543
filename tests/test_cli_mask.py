"""`geogate mask`: the engine on stdin, as a user tries their data and policies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from geogate.cli import app

runner = CliRunner()

POLICY = """\
version: 1
masking:
  key: mask.key
  custom:
    employee_id: {pattern: "EMP-[0-9]{6}"}
  sets:
    hr: [us_ssn, employee_id]
policies:
  - name: strict
    subjects: {groups: [hr]}
    connections: [llm]
    mask: {request: [hr], on_detect: block}
connections:
  llm: {type: openai, url: "https://api.openai.com/v1"}
"""


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "geogate.yaml"
    path.write_text(POLICY)
    return path


def mask(policy: Path, text: str, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["mask", "--config", str(policy), *args], input=text)
    return result.exit_code, result.stdout, result.stderr


def test_masks_stdin_with_every_entity_by_default(policy: Path) -> None:
    code, out, _ = mask(policy, "SSN 123-45-6789 of EMP-123456, mail a@example.com\n")
    assert (code, out) == (0, "SSN [US_SSN] of [EMPLOYEE_ID], mail [EMAIL]\n")


def test_json_findings_have_offsets_into_the_input(policy: Path) -> None:
    text = "SSN \uff11\uff12\uff13-45-6789 \u200b and 4111 1111 1111 1111"
    code, out, _ = mask(policy, text, "--json")
    document = json.loads(out)
    assert code == 0
    assert document["text"] == "SSN [US_SSN] \u200b and [CREDIT_CARD]"
    spans = [(f["entity"], text[f["start"] : f["end"]]) for f in document["findings"]]
    assert spans == [
        ("us_ssn", "\uff11\uff12\uff13-45-6789"),
        ("credit_card", "4111 1111 1111 1111"),
    ]


def test_styles_entities_and_sets(policy: Path) -> None:
    assert mask(policy, "SSN 123-45-6789", "--style", "partial")[1] == "SSN ***-**-6789"
    assert mask(policy, "a@example.com EMP-123456", "--entities", "hr")[1] == (
        "a@example.com [EMPLOYEE_ID]"
    )
    first = mask(policy, "123-45-6789", "--style", "hash")[1]
    assert first.startswith("[US_SSN:") and mask(policy, "123 45 6789", "--style", "hash")[1] == (
        first
    )
    assert (policy.parent / "mask.key").stat().st_mode & 0o777 == 0o600


def test_policy_option_blocks_like_the_policy(policy: Path) -> None:
    code, _, err = mask(policy, "EMP-123456", "--policy", "strict")
    assert code == 3 and "data_blocked" in err and "employee_id" in err
    assert mask(policy, "nothing here", "--policy", "strict")[:2] == (0, "nothing here")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--entities", "ssn"], "Unknown entities or sets: ssn"),
        (["--style", "shred"], "--style must be"),
        (["--policy", "nope"], "No policy named 'nope'"),
    ],
)
def test_mistakes_are_explained(policy: Path, args: list[str], message: str) -> None:
    code, _, err = mask(policy, "x", *args)
    assert code == 1 and message in err


def test_unbounded_custom_pattern_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "geogate.yaml"
    path.write_text(POLICY.replace("EMP-[0-9]{6}", "EMP-[0-9]+"))
    code, _, err = mask(path, "x")
    assert code == 1
    assert f"{path}:5: masking.custom.employee_id.pattern: " in err and "any length" in err
