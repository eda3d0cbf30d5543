"""Verified destinations: every address a target resolves to is proven to be in its region.

Public-looking names are mapped to loopback servers with `gateway.resolve`, and the policy's
regions put those addresses "inside" (127.0.0.1) or "outside" (127.0.0.2) the connection's
region. The servers speak TLS with certificates from a test CA, so the evidence carries a real
certificate fingerprint and a wrong certificate is refused.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from geogate.agent import LocalExecutor, UpstreamError, UpstreamRequest
from geogate.config import Timeouts
from geogate.residency import (
    Attribution,
    DestinationCheck,
    Match,
    RegionUnverified,
    catalog_for,
)
from geogate.residency.catalog import UserRegion
from tests.gateways import Gateway, run_gateway
from tests.servers import free_port, run_asgi
from tests.tls import CertificateAuthority, fingerprint
from tests.upstreams import Target

INSIDE, OUTSIDE = "127.0.0.1", "127.0.0.2"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    ca = CertificateAuthority.create(folder)
    cert, key = ca.issue(folder, "llm.eu.example", "llm.lying.example", "llm.mixed.example")
    return ca, cert, key


@pytest.fixture(scope="module")
def targets(tls: tuple[CertificateAuthority, Path, Path]) -> Iterator[tuple[int, Target, Target]]:
    """The same port on an address inside the region and on one outside it."""
    _, cert, key = tls
    inside, outside = Target("inside"), Target("outside")
    port = free_port()
    with (
        run_asgi(inside, port, host=INSIDE, certfile=cert, keyfile=key),
        run_asgi(outside, port, host=OUTSIDE, certfile=cert, keyfile=key),
    ):
        yield port, inside, outside


POLICY = """
version: 1
gateway:
  state: sqlite:///state.db
  region: onprem:eu-dc
  resolve:
    llm.eu.example: [{inside}]
    llm.lying.example: [{outside}]
    llm.mixed.example: [{inside}, {outside}]
    llm.wrongname.example: [{inside}]
regions:
  onprem:eu-dc: {{jurisdiction: eu, cidrs: ["{inside}/32"]}}
  onprem:us-dc: {{jurisdiction: us, cidrs: ["{outside}/32"]}}
connections:
  eu-llm: {{type: openai, url: "https://llm.eu.example:{port}/v1", region: onprem:eu-dc, tls: {{ca_file: "{ca}"}}}}
  lying: {{type: openai, url: "https://llm.lying.example:{port}/v1", region: onprem:eu-dc, tls: {{ca_file: "{ca}"}}}}
  mixed: {{type: openai, url: "https://llm.mixed.example:{port}/v1", region: onprem:eu-dc, tls: {{ca_file: "{ca}"}}}}
  wrong-name: {{type: openai, url: "https://llm.wrongname.example:{port}/v1", region: onprem:eu-dc, tls: {{ca_file: "{ca}"}}}}
policies:
  - name: eu-only
    subjects: {{groups: [support-eu]}}
    connections: ["*"]
    regions: [eu]
"""


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory,
    tls: tuple[CertificateAuthority, Path, Path],
    targets: tuple[int, Target, Target],
) -> Iterator[Gateway]:
    ca, _, _ = tls
    port, _, _ = targets
    policy = POLICY.format(inside=INSIDE, outside=OUTSIDE, port=port, ca=ca.path)
    with run_gateway(tmp_path_factory.mktemp("gw"), policy) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def key(gw: Gateway) -> str:
    return gw.create_key("ann@example.eu", groups=["support-eu"])


def call(gw: Gateway, connection: str, key: str) -> httpx2.Response:
    return httpx2.post(
        gw.url(connection) + "/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "demo", "messages": [{"role": "user", "content": "hi"}]},
    )


def test_an_address_inside_the_region_is_proven_with_evidence(
    gw: Gateway,
    key: str,
    tls: tuple[CertificateAuthority, Path, Path],
    targets: tuple[int, Target, Target],
) -> None:
    _, cert, _ = tls
    _, inside, _ = targets
    client = openai.OpenAI(base_url=gw.url("eu-llm"), api_key=key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="demo", messages=[{"role": "user", "content": "hi"}]
    )
    assert raw.parse().choices[0].message.content == "from inside"
    region = raw.headers["x-geogate-region"]
    assert region.split("; ") == [
        "onprem:eu-dc",
        "by=cidr",
        f"address={INSIDE}",
        f"range={INSIDE}/32",
        'source="policy file"',
        f"cert=sha256:{fingerprint(cert)}",
    ]
    assert inside.calls
    logged = json.loads(gw.access_lines[-1])
    assert (logged["region"], logged["evidence"]) == ("onprem:eu-dc", region)


@pytest.mark.parametrize("connection", ["lying", "mixed"])
def test_an_address_outside_the_region_is_never_sent_to(
    gw: Gateway, key: str, targets: tuple[int, Target, Target], connection: str
) -> None:
    _, _, outside = targets
    before = len(outside.calls)
    refused = call(gw, connection, key)
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["code"] == "region_unverified"
    assert f"resolved to {OUTSIDE}, which is outside onprem:eu-dc" in error["message"]
    assert len(outside.calls) == before
    assert "x-geogate-region" not in refused.headers


def test_tls_is_checked_against_the_host_name(gw: Gateway, key: str) -> None:
    """The checked address serves a certificate for other names: the call fails, unsent."""
    refused = call(gw, "wrong-name", key)
    assert refused.status_code == 502
    assert "certificate" in refused.json()["error"]["message"]


async def test_a_dns_answer_that_changes_cannot_divert_the_call(
    tls: tuple[CertificateAuthority, Path, Path],
    targets: tuple[int, Target, Target],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rebinding: the second answer points outside the region; nothing is sent there."""
    ca, _, _ = tls
    port, inside, outside = targets
    catalog = catalog_for(
        {"onprem:eu-dc": UserRegion("eu", None, (ipaddress.ip_network(f"{INSIDE}/32"),))}, {}
    )
    answers = {"llm.eu.example": [ipaddress.ip_address(INSIDE)]}
    executor = LocalExecutor(answers, DestinationCheck(catalog, EmptyBook()))
    request = UpstreamRequest(
        connection="eu-llm",
        method="POST",
        url=f"https://llm.eu.example:{port}/v1/chat/completions",
        headers=[("content-type", "application/json")],
        body=b"{}",
        timeouts=Timeouts(),
        ca_file=str(ca.path),
        region="onprem:eu-dc",
    )
    try:
        first = await executor.send(request)
        assert first.evidence is not None and first.evidence.address == INSIDE
        first.close()
        session, verifying = executor._pools["onprem:eu-dc"]
        assert verifying is not None
        # The name now rebinds to an address outside the region, and the cached answer expires.
        verifying._inner._answers["llm.eu.example"] = [ipaddress.ip_address(OUTSIDE)]  # type: ignore[attr-defined]
        session.connector.clear_dns_cache()  # type: ignore[union-attr]
        before = (len(inside.calls), len(outside.calls))
        with pytest.raises(UpstreamError) as caught:
            await executor.send(request)
        assert caught.value.code == "region_unverified"
        assert (len(inside.calls), len(outside.calls)) == before
    finally:
        await executor.close()


class EmptyBook:
    """No published ranges at all: only the policy file's own ranges prove anything."""

    def __init__(self, matches: dict[str, tuple[Match, ...]] | None = None) -> None:
        self._matches = matches or {}

    @property
    def version(self) -> str:
        return "test ranges"

    def lookup(self, address: Any) -> tuple[Match, ...]:
        return self._matches.get(str(address), ())


def attested(host: str) -> Attribution | None:
    if host == "api.openai.com":
        return Attribution("openai:global", "OpenAI's global host", False)
    if host == "eu.api.openai.com":
        return Attribution("openai:eu", "OpenAI's EU data-residency host", True)
    if host == "bedrock-runtime.eu-central-1.amazonaws.com":
        return Attribution("aws:eu-central-1", "Bedrock's eu-central-1 endpoint", True)
    return None


@pytest.mark.parametrize(
    ("region", "host", "address", "outcome"),
    [
        ("aws:eu-central-1", "bedrock-runtime.eu-central-1.amazonaws.com", "3.120.0.9", "ip-range"),
        (
            "aws:eu-central-1",
            "bedrock-runtime.eu-central-1.amazonaws.com",
            "52.94.0.9",
            "aws:us-east-1",
        ),
        (
            "aws:eu-central-1",
            "bedrock-runtime.eu-central-1.amazonaws.com",
            "192.0.2.9",
            "endpoint",
        ),
        ("aws:eu-central-1", "llm.example", "192.0.2.9", "no published range"),
        ("openai:eu", "eu.api.openai.com", "104.18.0.9", "endpoint"),
        ("openai:eu", "api.openai.com", "104.18.0.9", "no published range"),
        ("openai:global", "api.openai.com", "104.18.0.9", "endpoint"),
        ("openai:global", "eu.api.openai.com", "104.18.0.9", "no published range"),
        ("openai:us", "eu.api.openai.com", "104.18.0.9", "no published range"),
        ("aws:eu-central-1", "anything.example", "10.30.1.1", "cidr"),
        ("onprem:dc1", "llm.corp.example", "10.20.0.5", "cidr"),
        ("onprem:dc1", "llm.corp.example", "3.120.0.9", "outside onprem:dc1"),
        ("aws:nowhere-9", "x.example", "3.120.0.9", "not a region"),
    ],
)
def test_destination_check_branches(region: str, host: str, address: str, outcome: str) -> None:
    catalog = catalog_for(
        {
            "onprem:dc1": UserRegion("eu", None, (ipaddress.ip_network("10.20.0.0/16"),)),
            "aws:eu-central-1": UserRegion(None, None, (ipaddress.ip_network("10.30.0.0/16"),)),
        },
        {},
    )
    book = EmptyBook(
        {
            "3.120.0.9": (Match("aws", "aws:eu-central-1", "3.120.0.0/14", "AMAZON"),),
            "52.94.0.9": (Match("aws", "aws:us-east-1", "52.94.0.0/22", "AMAZON"),),
            "104.18.0.9": (Match("cloudflare", None, "104.16.0.0/13", None),),
        }
    )
    check = DestinationCheck(catalog, book, attested)
    ip = ipaddress.ip_address(address)
    if outcome in ("ip-range", "endpoint", "cidr"):
        evidence = check.verify(region, host, ip)
        assert (evidence.region, evidence.method, evidence.address) == (region, outcome, address)
    else:
        with pytest.raises(RegionUnverified, match=outcome):
            check.verify(region, host, ip)


def test_a_multi_region_is_proven_by_its_members_addresses() -> None:
    """gcp:eu is served from EU member regions; a Swiss region's address is not inside it."""
    book = EmptyBook(
        {
            "34.76.0.9": (Match("gcp", "gcp:europe-west1", "34.76.0.0/14", None),),
            "34.65.0.9": (Match("gcp", "gcp:europe-west6", "34.65.0.0/16", None),),
        }
    )
    check = DestinationCheck(catalog_for({}, {}), book, lambda host: None)
    host = "aiplatform.eu.rep.googleapis.com"
    assert check.verify("gcp:eu", host, ipaddress.ip_address("34.76.0.9")).method == "ip-range"
    with pytest.raises(RegionUnverified, match="gcp:europe-west6's published range"):
        check.verify("gcp:eu", host, ipaddress.ip_address("34.65.0.9"))
    with pytest.raises(RegionUnverified, match="gcp:europe-west1's published range"):
        check.verify("gcp:europe-west4", host, ipaddress.ip_address("34.76.0.9"))


def test_an_ip_literal_url_is_named_as_an_address() -> None:
    catalog = catalog_for({"onprem:dc1": UserRegion("eu", None, ())}, {})
    check = DestinationCheck(catalog, EmptyBook(), lambda host: None)
    with pytest.raises(RegionUnverified, match=r"^the address 10\.0\.0\.1 is outside onprem:dc1"):
        check.verify("onprem:dc1", "10.0.0.1", ipaddress.ip_address("10.0.0.1"))
