"""How the gateway talks to targets: pooled connections, no redirects, no proxies, clean headers."""

from __future__ import annotations

import io
import json

import httpx2
import pytest

from geogate.gateway.observe import BatchedLines, CallLog
from tests.gateways import Gateway
from tests.upstreams import EndlessStream


@pytest.fixture(scope="module")
def key(gateway: Gateway) -> str:
    return gateway.create_key("alice@example.com", groups=["support-eu"])


def test_upstream_connections_are_reused(gateway: Gateway, key: str) -> None:
    with httpx2.Client(headers={"x-api-key": key}) as client:
        ports = {client.get(gateway.url("whoami") + "/x").json()["client_port"] for _ in range(5)}
    assert len(ports) == 1


def test_redirects_are_passed_back_not_followed(gateway: Gateway, key: str) -> None:
    response = httpx2.get(gateway.url("whoami") + "/redirect", headers={"x-api-key": key})
    assert response.status_code == 302
    assert response.headers["location"] == "http://127.0.0.1:9/elsewhere"


def test_proxy_environment_is_ignored(
    gateway: Gateway, key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy variable pointing nowhere would break the call if the gateway honoured it."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with httpx2.Client(headers={"x-api-key": key}, trust_env=False) as client:
        assert client.get(gateway.url("whoami") + "/fresh-call").status_code == 200


def test_target_cannot_forge_gateway_headers_or_pass_hop_headers(
    gateway: Gateway, key: str
) -> None:
    response = httpx2.get(gateway.url("whoami") + "/x", headers={"x-api-key": key})
    assert response.headers["x-geogate-region"].startswith("onprem:test-eu; by=cidr; ")
    assert "x-private" not in response.headers
    assert response.headers["x-target"] == "kept"


def test_query_string_is_kept(gateway: Gateway, key: str) -> None:
    response = httpx2.get(
        gateway.url("raw") + "/debug/echo-headers?limit=2&after=abc", headers={"x-api-key": key}
    )
    assert response.json()["query"] == "limit=2&after=abc"


def test_one_json_log_line_per_call(gateway: Gateway, key: str) -> None:
    allowed = httpx2.get(gateway.url("whoami") + "/x", headers={"x-api-key": key})
    denied = httpx2.get(gateway.url("finance-llm") + "/models", headers={"x-api-key": key})
    lines = [json.loads(line) for line in gateway.access_lines]
    ids = [line["request_id"] for line in lines]
    for response in (allowed, denied):
        assert ids.count(response.headers["x-geogate-request-id"]) == 1
    by_id = {line["request_id"]: line for line in lines}
    ok = by_id[allowed.headers["x-geogate-request-id"]]
    assert ok["decision"] == "allow"
    assert ok["subject"] == "alice@example.com"
    assert ok["connection"] == "whoami"
    assert ok["region"] == "onprem:test-eu"
    assert ok["status"] == 200
    assert ok["added_ms"] > 0
    no = by_id[denied.headers["x-geogate-request-id"]]
    assert (no["decision"], no["code"], no["status"]) == ("deny", "connection_not_allowed", 403)
    assert key not in "\n".join(gateway.access_lines)


def test_health_ready_and_metrics(gateway: Gateway, key: str) -> None:
    assert httpx2.get(gateway.base_url + "/healthz").json() == {"status": "ok"}
    assert httpx2.get(gateway.base_url + "/readyz").status_code == 200
    httpx2.get(gateway.url("whoami") + "/x", headers={"x-api-key": key})
    httpx2.get(gateway.url("no-such-connection-" + "x" * 20) + "/x", headers={"x-api-key": key})
    metrics = httpx2.get(gateway.base_url + "/metrics").text
    assert 'geogate_requests_total{connection="whoami",decision="allow",status="200"}' in metrics
    assert "geogate_added_latency_seconds_bucket" in metrics
    assert "no-such-connection" not in metrics  # unknown names must not explode label cardinality


def test_unknown_paths_outside_the_data_path(gateway: Gateway) -> None:
    response = httpx2.get(gateway.base_url + "/v1/chat/completions")
    assert response.status_code == 404
    assert "/c/CONNECTION" in response.json()["error"]["message"]


def test_caller_leaving_a_stream_stops_the_target(
    gateway: Gateway, key: str, endless: EndlessStream
) -> None:
    with httpx2.stream(
        "GET", gateway.url("endless") + "/s", headers={"x-api-key": key}
    ) as response:
        first = next(response.iter_bytes())
    assert first.startswith(b"data: 0")
    assert endless.caller_left.wait(10), "the gateway kept reading after its caller left"


def test_batched_access_log_writes_every_line_in_order() -> None:
    stream = io.StringIO()
    log = BatchedLines(stream, interval=3600)  # only explicit flushes in this test
    for index in range(1000):
        log(f'{{"n":{index}}}')
    log.flush()
    log("last")
    log.flush()
    assert stream.getvalue().splitlines() == [f'{{"n":{i}}}' for i in range(1000)] + ["last"]


@pytest.mark.parametrize(
    "subject", ["alice@example.com", "zoë@example.com", "a\u2028b@example.com", 'x"\n{"forged":1}']
)
def test_an_access_log_line_is_one_line_of_json_whatever_the_subject(subject: str) -> None:
    lines: list[str] = []
    CallLog("req_1", "req_1", "POST", "llm", subject, masked={"email": 1}).emit(True, lines.append)
    assert len(lines) == 1 and lines[0].isascii()
    assert lines[0].splitlines() == lines  # U+2028 would split it for str.splitlines
    assert json.loads(lines[0]) | {"subject": subject} == json.loads(lines[0])
    assert json.loads(lines[0])["masked"] == {"email": 1}
