"""`geogate audit verify` and `geogate audit report`, and their admin API routes.

A real gateway sends calls from the official OpenAI SDK to two demo LLMs, one proven to be in
an EU region and one in a US region: allowed calls (one of them masked), a call the policy
denies, one with a made-up key and one by a user deactivated meanwhile. The commands then run
in-process on the policy file, as an operator or an auditor would run them.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from typer.testing import CliRunner

from geogate.cli import app
from geogate.demo import DemoSettings, create_demo_app
from geogate.recording import AuditKey
from geogate.recording.report import EvidenceReport, parse_period
from tests.gateways import Gateway, run_gateway
from tests.recordings import records
from tests.servers import run_asgi

SSN = "123-45-6789"
ROGUE = "<script>alert(1)</script>"
"""A valid user name (printable, no spaces): what the HTML report must show as text."""
DAVE = "dave@example.com"
EU_HOST, US_HOST = "127.0.0.1", "127.0.0.2"

POLICY = """\
version: 1
gateway:
  region: onprem:test-eu
  state: "sqlite:///{state}"
  audit_key: "{key}"
  recordings: {{store: "file://{store}", checkpoints: {{records: 4}}}}
regions:
  onprem:test-eu: {{jurisdiction: eu, cidrs: [{eu_host}/32]}}
  onprem:test-us: {{jurisdiction: us, cidrs: [{us_host}/32]}}
connections:
  eu: {{type: openai, url: "{eu}/v1", region: onprem:test-eu, credentials: {{bearer: demo}}}}
  us: {{type: openai, url: "{us}/v1", region: onprem:test-us, credentials: {{bearer: demo}}}}
policies:
  - name: support
    subjects: {{groups: [support]}}
    connections: [eu, us]
    mask: {{request: [us_ssn], response: [us_ssn]}}
"""

runner = CliRunner()


def policy(
    state: str = "state.db",
    key: str = "audit.key",
    store: str = "recordings",
    eu: str = "http://127.0.0.1:9",
    us: str = "http://127.0.0.2:9",
) -> str:
    """Relative paths are next to the policy file, so a copied folder is a gateway of its own."""
    return POLICY.format(
        state=state, key=key, store=store, eu=eu, us=us, eu_host=EU_HOST, us_host=US_HOST
    )


@dataclass
class Recorded:
    folder: Path
    policy: str

    @property
    def config(self) -> str:
        return str(self.folder / "geogate.yaml")

    def records(self) -> list[dict[str, Any]]:
        return records(self.folder)

    def copy(self, to: Path) -> Recorded:
        shutil.copytree(self.folder, to)
        return Recorded(to, self.policy)


def wait_for_status(gw: Gateway, key: str, expected: int) -> None:
    """Gateways see a deactivation within a second; `/api/v1/me` is not a recorded call."""
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        answer = httpx2.get(gw.base_url + "/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        if answer.status_code == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"/api/v1/me never answered {expected}")


def sdk(gw: Gateway, connection: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url(connection), api_key=key, max_retries=0)


def ask(client: openai.OpenAI, text: str) -> str:
    reply = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": text}]
    )
    return reply.choices[0].message.content or ""


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """Six calls recorded by a gateway that has stopped (and so signed its whole log)."""
    folder = tmp_path_factory.mktemp("audit")
    demo = create_demo_app(DemoSettings(api_key="demo", chunk_delay=0.0))
    with run_asgi(demo, host=EU_HOST) as eu, run_asgi(demo, host=US_HOST) as us:
        text = policy(eu=eu, us=us)
        with run_gateway(folder, text) as gw:
            alice = gw.create_key("alice@example.com", groups=["support"])
            assert SSN not in ask(sdk(gw, "eu", alice), f"My SSN is {SSN}")
            ask(sdk(gw, "eu", alice), "hello")
            ask(sdk(gw, "us", alice), "hello from the US")
            rogue = gw.create_key(ROGUE, groups=["nobody"])
            with pytest.raises(openai.PermissionDeniedError):
                ask(sdk(gw, "eu", rogue), "let me in")
            with pytest.raises(openai.AuthenticationError):
                ask(sdk(gw, "eu", "gk_" + "x" * 40), "guessing")
            dave = gw.create_key(DAVE, groups=["support"])
            gw.set_active(DAVE, False)
            wait_for_status(gw, dave, 401)
            with pytest.raises(openai.AuthenticationError) as refused:
                ask(sdk(gw, "eu", dave), "still here?")
            assert refused.value.code == "identity_disabled"
    return Recorded(folder, text)


@pytest.fixture(autouse=True)
def no_outside_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GEOGATE_URL", "GEOGATE_TOKEN", "GEOGATE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEOGATE_CREDENTIALS", str(tmp_path / "credentials.json"))


def geogate(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def period() -> list[str]:
    today = datetime.now(UTC).date()
    return ["--from", str(today - timedelta(days=1)), "--to", str(today + timedelta(days=1))]


def report_json(config: str, *extra: str) -> dict[str, Any]:
    code, out, err = geogate("audit", "report", *period(), "--format", "json", "-c", config, *extra)
    assert code == 0, err
    answer: dict[str, Any] = json.loads(out)
    return answer


def tamper(folder: Path, position: int) -> None:
    """Change one byte of one record: a hex digit of its request id, so it is still JSON."""
    (segment,) = (folder / "recordings" / "logs").glob("*/*.jsonl")
    lines = segment.read_bytes().split(b"\n")
    at = lines[position].index(b'"request_id":"req_') + len(b'"request_id":"req_')
    digit = lines[position][at : at + 1]
    lines[position] = (
        lines[position][:at] + (b"0" if digit != b"0" else b"1") + lines[position][at + 1 :]
    )
    segment.write_bytes(b"\n".join(lines))


# --- verify ----------------------------------------------------------------------------------


def test_an_untouched_log_verifies(recorded: Recorded) -> None:
    count = len(recorded.records())
    code, out, err = geogate("audit", "verify", "-c", recorded.config)
    assert code == 0, out + err
    assert "ok" in out and "FAILED" not in out and "verified" in out
    code, out, _ = geogate("audit", "verify", "--json", "-c", recorded.config)
    assert code == 0
    answer = json.loads(out)
    assert answer["ok"] is True and answer["problems"] == []
    (log,) = answer["logs"]
    assert log["records"] == count == 9  # three calls and replies, three refusals
    assert log["signed"] == count and log["unsigned"] == 0 and log["deleted"] == 0
    assert log["checkpoints"] >= 2 and log["problems"] == []
    assert answer["key"] == (recorded.folder / "audit.key.pub").read_text().strip()


def test_one_changed_byte_fails_verification_and_names_its_record(
    recorded: Recorded, tmp_path: Path
) -> None:
    copy = recorded.copy(tmp_path / "copy")
    tamper(copy.folder, 2)
    code, out, err = geogate("audit", "verify", "-c", copy.config)
    assert code == 1, out + err
    assert "changed at record 2" in out and "FAILED" in out
    code, out, _ = geogate("audit", "verify", "--json", "-c", copy.config)
    assert code == 1
    problems = json.loads(out)["logs"][0]["problems"]
    assert problems[0]["kind"] == "changed" and problems[0]["position"] == 2
    report = report_json(copy.config)
    assert report["verification"]["ok"] is False
    code, page, err = geogate("audit", "report", *period(), "-c", copy.config)
    assert code == 0 and "FAILED verification" in err
    assert "Log FAILED verification" in page and "changed" in page


def test_an_auditor_verifies_with_the_public_key_only(recorded: Recorded, tmp_path: Path) -> None:
    """No private key, no state database: the checkpoints' signatures carry the proof."""
    folder = recorded.folder
    pub = tmp_path / "geogate-audit.pub"
    shutil.copy(folder / "audit.key.pub", pub)
    config = tmp_path / "auditor.yaml"
    config.write_text(
        policy(state=str(tmp_path / "none.db"), key="absent.key", store=str(folder / "recordings"))
    )
    code, _, err = geogate("audit", "verify", "-c", str(config))
    assert code == 2 and "--key" in err and "absent.key" in err
    code, out, err = geogate("audit", "verify", "--key", str(pub), "-c", str(config))
    assert code == 0, out + err
    assert "No session index" in err and not (tmp_path / "none.db").exists()

    other = AuditKey.load(tmp_path / "other.key")  # someone else's key signed nothing here
    code, out, _ = geogate(
        "audit", "verify", "--key", str(tmp_path / "other.key.pub"), "-c", str(config)
    )
    assert code == 1 and f"no signature by {other.verifier().name}" in out

    garbage = tmp_path / "garbage.pub"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\n")
    code, _, err = geogate("audit", "verify", "--key", str(garbage), "-c", str(config))
    assert code == 2 and "not a public audit key" in err
    code, _, err = geogate(
        "audit", "verify", "--key", str(tmp_path / "nope.pub"), "-c", str(config)
    )
    assert code == 2 and "Cannot read the public key" in err

    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(policy(store=str(tmp_path / "empty")))
    code, _, err = geogate("audit", "verify", "--key", str(pub), "-c", str(elsewhere))
    assert code == 2 and "holds no logs" in err


# --- report ----------------------------------------------------------------------------------


def test_the_report_counts_the_period(recorded: Recorded) -> None:
    records = recorded.records()
    report = report_json(recorded.config)
    assert report["gateway_region"] == "onprem:test-eu"
    totals = report["totals"]
    assert (totals["calls"], totals["allowed"], totals["denied"], totals["errors"]) == (6, 3, 3, 0)
    assert totals["callers"] == 3  # alice, the rogue user and dave; the made-up key is nobody
    assert {row["region"]: row["calls"] for row in report["regions"]} == {
        "onprem:test-eu": 2,
        "onprem:test-us": 1,
    }
    by_jurisdiction = {row["jurisdiction"]: row["calls"] for row in report["jurisdictions"]}
    assert by_jurisdiction["eu"] == 2 and by_jurisdiction["us"] == 1

    refusals = {r["code"]: r for r in records if r["kind"] == "refused"}
    blocked = {row["code"]: row for row in report["blocked"]}
    assert blocked.keys() == {"connection_not_allowed", "unauthenticated", "identity_disabled"}
    assert blocked["connection_not_allowed"]["caller"] == ROGUE
    assert blocked["unauthenticated"]["caller"] is None
    assert blocked["identity_disabled"]["caller"] == DAVE
    for code, row in blocked.items():
        assert row["reason"] == refusals[code]["message"] and row["connection"] == "eu"
        assert records[row["position"]]["request_id"] == refusals[code]["request_id"]

    masked_reply = next(r for r in records if r["kind"] == "reply" and r["masked"])
    assert report["masked"] == masked_reply["masked"] == {"us_ssn": 1}
    assert report["approvals"] == []
    (disabled,) = report["disabled"]
    assert (disabled["user"], disabled["attempts"], disabled["connections"]) == (DAVE, 1, ["eu"])

    assert report["verification"]["ok"] is True and report["unsigned"] == []
    last = report["checkpoints"][-1]
    note = recorded.folder / "recordings" / "checkpoints" / last["log"] / f"{last['size']:016d}"
    root = base64.b64decode(note.read_text().splitlines()[2]).hex()
    assert last["size"] == len(records) and last["root"] == root
    assert EvidenceReport.model_validate(report).to_json() == report


def test_a_period_without_calls_still_has_every_section(recorded: Recorded) -> None:
    code, out, err = geogate(
        "audit", "report", "--from", "2020-01-01", "--to", "2020-01-01", "--format", "json",
        "-c", recorded.config,
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["totals"]["calls"] == 0 and report["blocked"] == [] and report["masked"] == {}
    assert report["since"] == "2020-01-01T00:00:00Z" and report["until"] == "2020-01-02T00:00:00Z"
    assert report["verification"]["ok"] is True and report["checkpoints"] == []
    code, page, _ = geogate("audit", "report", "--from", "2020-01-01", "--to", "2020-01-01",
                            "-c", recorded.config)  # fmt: skip
    assert code == 0 and "No approvals in this period." in page


def test_the_html_report_is_one_inert_page(recorded: Recorded, tmp_path: Path) -> None:
    target = tmp_path / "evidence.html"
    code, _, err = geogate("audit", "report", *period(), "-o", str(target), "-c", recorded.config)
    assert code == 0, err
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script" not in page.lower()
    assert not re.search(r"<[^>]*\b(src|href|action)\s*=|url\(|@import", page, re.IGNORECASE)
    assert "Content-Security-Policy" in page
    for expected in (
        "onprem:test-eu",
        "onprem:test-us",
        "Log verified",
        "No approvals in this period.",
        "us_ssn",
        "identity_disabled",
        DAVE,
        "connection_not_allowed",
        "Period",
        "Generated at",
    ):
        assert expected in page, expected


def test_every_value_in_the_html_is_escaped(recorded: Recorded) -> None:
    """Whatever a caller managed to get into the log shows as text, never as markup."""
    payload = "\"'><img src=x onerror=alert(1)><script>alert(2)</script>"
    report = report_json(recorded.config)
    report["gateway_region"] = payload
    report["masked"] = {payload: 1}
    report["verification"]["key"] = payload
    report["verification"]["problems"] = [{"kind": payload, "position": 1, "message": payload}]
    for row in report["blocked"]:
        row.update(caller=payload, connection=payload, code=payload, reason=payload, log=payload)
    for row in report["regions"]:
        row.update(region=payload, jurisdictions=[payload])
    report["approvals"] = [
        {"at": "2026-12-01T00:00:00Z", "kind": payload, "request_id": payload, "by": payload,
         "decision": payload, "log": payload, "position": 0},
    ]  # fmt: skip
    page = EvidenceReport.model_validate(report).to_html()
    assert "<img" not in page and "<script" not in page
    assert not re.search(r"<[^>]*\son\w+\s*=|<[^>]*\bsrc\s*=", page)
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") >= 10


def test_periods(recorded: Recorded) -> None:
    assert parse_period("2026-12-01", "2026-12-02") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2026, 12, 3, tzinfo=UTC),
    )
    assert parse_period("2026-12-01T08:00:00+01:00", "2026-12-01T09:00:00") == (
        datetime(2026, 12, 1, 7, tzinfo=UTC),
        datetime(2026, 12, 1, 9, tzinfo=UTC),
    )
    for start, end in (("2026-12-02", "2026-12-01"), ("yesterday", "2026-12-01")):
        with pytest.raises(ValueError):
            parse_period(start, end)
    code, _, err = geogate(
        "audit", "report", "--from", "2026-13-01", "--to", "2026-12-01", "-c", recorded.config
    )
    assert code == 2 and "not a date" in err


# --- admin API and --gateway -------------------------------------------------------------------


@pytest.fixture
def served(recorded: Recorded, tmp_path: Path) -> Iterator[Gateway]:
    """The recorded gateway started again on a copy of its folder (no upstream is called)."""
    copy = recorded.copy(tmp_path / "served")
    with run_gateway(copy.folder, copy.policy) as gw:
        yield gw


def test_the_admin_api_verifies_and_reports(served: Gateway, recorded: Recorded) -> None:
    admin = served.create_key("root@example.com", groups=["geogate-admins"])
    ann = served.create_key("ann@example.com", groups=["support"])
    base = served.base_url + "/api/v1/audit"
    today = datetime.now(UTC).date()
    query = {"from": f"{today - timedelta(days=1)}T00:00:00Z", "to": str(today)}

    def get(path: str, key: str | None, **params: str) -> httpx2.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx2.get(base + path, headers=headers, params=params)

    verified = get("/verify", admin)
    assert verified.status_code == 200 and verified.json()["ok"] is True
    assert verified.json()["logs"][0]["records"] == len(recorded.records())
    report = get("/report", admin, **query)
    assert report.status_code == 200
    assert report.json()["totals"]["calls"] == 6 and report.json()["verification"]["ok"]
    page = get("/report", admin, **query, format="html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text and "<script" not in page.text

    for path, params in (("/verify", {}), ("/report", query)):
        assert get(path, ann, **params).status_code == 403
        assert get(path, None, **params).status_code == 401
    for bad in ({"from": "garbage", "to": "2026-12-01"}, {**query, "format": "xml"}, {"to": "x"}):
        refused = get("/report", admin, **bad)
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "bad_request"
    assert "not a date" in get("/report", admin, **{**query, "from": "garbage"}).text

    remote = ("--gateway", served.base_url, "--token", admin)
    code, out, err = geogate("audit", "verify", *remote)
    assert code == 0, err
    code, out, err = geogate("audit", "report", *period(), "--format", "json", *remote)
    assert code == 0, err
    assert json.loads(out)["totals"] == report_json(recorded.config)["totals"]
    code, out, _ = geogate("audit", "report", *period(), *remote)
    assert code == 0 and out.startswith("<!DOCTYPE html>")
    code, _, err = geogate("audit", "verify", "--gateway", served.base_url, "--token", ann)
    assert code == 2 and err.strip()
    code, _, err = geogate("audit", "verify", "--key", "x.pub", *remote)
    assert code == 2 and "--key" in err
