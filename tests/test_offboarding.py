"""The offboarded contractor, end to end: the mission's opening case.

A contractor, provisioned by the IdP through SCIM, owns a service account whose API key a
nightly CI job uses, and also calls with an OIDC token of their own. The IdP deprovisions them
(SCIM `PATCH active=false`); the very next call with either credential fails
`identity_disabled` on every worker of a two-worker `geogate up`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.gateways import geogate_up
from tests.oidc_idp import OidcIdp, running_idp
from tests.test_cli_up import geogate

SCIM_TOKEN = "scim-" + "s3cr3t" * 8
CONTRACTOR = "contractor@example.eu"

POLICY = """
version: 1
gateway:
  region: onprem:lab
  state: sqlite:///state.db
regions:
  onprem:lab: {{jurisdiction: eu, cidrs: [127.0.0.0/8]}}
identity:
  oidc:
    - {{issuer: "{issuer}", audience: geogate}}
  scim: {{token: "{scim}"}}
connections:
  llm: {{type: openai, url: "{demo}/v1", region: onprem:lab, credentials: {{bearer: {key}}}}}
policies:
  - name: support
    subjects: {{groups: [support-eu]}}
    connections: [llm]
"""


@pytest.fixture
def idp(tmp_path: Path) -> Iterator[OidcIdp]:
    with running_idp(tmp_path / "idp") as provider:
        yield provider


@pytest.fixture
def gateway(tmp_path: Path, demo_url: str, idp: OidcIdp) -> Iterator[str]:
    (tmp_path / "geogate.yaml").write_text(
        POLICY.format(demo=demo_url, key=UPSTREAM_KEY, issuer=idp.issuer, scim=SCIM_TOKEN)
    )
    with geogate_up(tmp_path) as up:
        yield up.base_url
    assert "Traceback" not in up.output, up.output


def ci_job_call(base: str, credential: str) -> tuple[int, str | None]:
    """One call as a CI job makes it: a new client, so a new connection to either worker."""
    client = openai.OpenAI(base_url=base + "/c/llm", api_key=credential, max_retries=0)
    try:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "summarise ticket 4711"}]
        )
    except openai.APIStatusError as exc:
        return exc.status_code, exc.code
    finally:
        client.close()
    return 200, None


def scim(base: str, method: str, path: str, body: object | None = None) -> httpx2.Response:
    return httpx2.request(
        method,
        f"{base}/scim/v2{path}",
        headers={
            "Authorization": f"Bearer {SCIM_TOKEN}",
            "Content-Type": "application/scim+json",
        },
        content=None if body is None else json.dumps(body),
    )


def test_the_offboarded_contractor_is_stopped_on_the_very_next_call(
    gateway: str, idp: OidcIdp, tmp_path: Path
) -> None:
    created = scim(
        gateway,
        "POST",
        "/Users",
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": CONTRACTOR,
            "active": True,
        },
    )
    assert created.status_code == 201, created.text
    scim_id = created.json()["id"]

    made = geogate(
        "keys",
        "create",
        "--owner",
        CONTRACTOR,
        "--service-account",
        "nightly-ticket-summaries",
        "--groups",
        "support-eu",
        "--expires",
        "30d",
        "--json",
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    ci_key = json.loads(made.stdout)["key"]
    own_token = idp.machine_token(CONTRACTOR, ["support-eu"])

    assert [ci_job_call(gateway, ci_key) for _ in range(6)] == [(200, None)] * 6
    assert [ci_job_call(gateway, own_token) for _ in range(4)] == [(200, None)] * 4

    deprovisioned = scim(
        gateway,
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": False}}],
        },
    )
    assert deprovisioned.status_code == 200, deprovisioned.text
    assert deprovisioned.json()["active"] is False

    # No waiting: the very next calls, on whichever worker, are refused.
    assert [ci_job_call(gateway, ci_key) for _ in range(10)] == [(401, "identity_disabled")] * 10
    assert [ci_job_call(gateway, own_token) for _ in range(6)] == [(401, "identity_disabled")] * 6

    # The key still exists and is not expired: deactivation, not revocation, stopped it.
    listed = json.loads(geogate("keys", "list", "--json", cwd=tmp_path).stdout)
    assert [(key["owner"], key["revoked_at"]) for key in listed] == [(CONTRACTOR, None)]

    admin = {"Authorization": f"Bearer {admin_key(tmp_path)}"}
    answer = httpx2.get(f"{gateway}/api/v1/events", headers=admin)
    assert answer.status_code == 200, answer.text
    events = answer.json()
    kinds = [(event["kind"], event["actor"], event["subject"]) for event in events]
    assert ("user.deactivated", "scim", CONTRACTOR) in kinds
    deadline = time.monotonic() + 5
    while not any(
        event["kind"] == "call.refused" and event["detail"]["code"] == "identity_disabled"
        for event in events
    ):
        assert time.monotonic() < deadline, "refused calls were not recorded as audit events"
        time.sleep(0.2)
        events = httpx2.get(f"{gateway}/api/v1/events?kind=call.refused", headers=admin).json()

    reactivated = scim(
        gateway,
        "PATCH",
        f"/Users/{scim_id}",
        {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Replace", "path": "active", "value": "True"}],
        },
    )
    assert reactivated.status_code == 200, reactivated.text
    assert [ci_job_call(gateway, ci_key) for _ in range(4)] == [(200, None)] * 4


def admin_key(folder: Path) -> str:
    made = geogate(
        "keys",
        "create",
        "--owner",
        "root@example.eu",
        "--groups",
        "geogate-admins",
        "--json",
        cwd=folder,
    )
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["key"])
