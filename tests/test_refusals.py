"""Every refusal this version can give, as the official SDKs show it, and hostile input."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx2
import openai
import pytest

from tests.gateways import Gateway

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def alice(gateway: Gateway) -> str:
    return gateway.create_key("alice@example.com", groups=["support-eu"])


def oai(gateway: Gateway, connection: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url(connection), api_key=key, max_retries=0)


def refusal(exc: openai.APIStatusError) -> dict[str, Any]:
    assert isinstance(exc.body, dict)
    assert exc.body["type"] == "geogate"
    assert exc.body["request_id"] == exc.response.headers["x-geogate-request-id"]
    assert exc.request_id == exc.body["request_id"]  # the SDK reads our x-request-id
    return exc.body


def chat(client: openai.OpenAI) -> None:
    client.chat.completions.create(model="demo", messages=MESSAGES)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("garbage", "not a GeoGate API key"),
        ("gk_" + "A" * 43, "unknown"),
    ],
)
def test_bad_keys_are_unauthenticated(gateway: Gateway, key: str, fragment: str) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(oai(gateway, "oai", key))
    body = refusal(caught.value)
    assert body["code"] == "unauthenticated"
    assert caught.value.code == "unauthenticated"
    assert caught.value.response.headers["www-authenticate"].startswith("Bearer")


def test_no_credentials_at_all(gateway: Gateway) -> None:
    response = httpx2.post(gateway.url("oai") + "/chat/completions", json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_revoked_key(gateway: Gateway) -> None:
    key = gateway.create_key("rita@example.com", groups=["support-eu"])
    client = oai(gateway, "oai", key)
    chat(client)
    keys = gateway.key_ids("rita@example.com")
    gateway.revoke(keys[0])
    _eventually_refused(client, openai.AuthenticationError, "unauthenticated")


def test_expired_key(gateway: Gateway) -> None:
    key = gateway.create_key("eve@example.com", groups=["support-eu"], expires_in=0.001)
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(oai(gateway, "oai", key))
    assert refusal(caught.value)["code"] == "unauthenticated"
    assert "expired" in caught.value.message


def test_deactivated_owner_stops_keys_and_service_accounts(gateway: Gateway) -> None:
    own = gateway.create_key("carl@example.com", groups=["support-eu"])
    bot = gateway.create_key("carl@example.com", groups=["support-eu"], service_account="carl-ci")
    for key in (own, bot):
        chat(oai(gateway, "oai", key))
    gateway.set_active("carl@example.com", False)
    for key in (own, bot):
        _eventually_refused(
            oai(gateway, "oai", key), openai.AuthenticationError, "identity_disabled"
        )
    gateway.set_active("carl@example.com", True)
    for key in (own, bot):
        _eventually_allowed(oai(gateway, "oai", key))


def test_unknown_connection(gateway: Gateway, alice: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        chat(oai(gateway, "nope", alice))
    assert refusal(caught.value)["code"] == "unknown_connection"


def test_connection_not_allowed(gateway: Gateway, alice: str) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(oai(gateway, "finance-llm", alice))
    body = refusal(caught.value)
    assert body["code"] == "connection_not_allowed"
    assert "alice@example.com" in body["message"]


def test_other_group_is_allowed_there(gateway: Gateway) -> None:
    key = gateway.create_key("fred@example.com", groups=["finance"])
    chat(oai(gateway, "finance-llm", key))
    with pytest.raises(openai.PermissionDeniedError):
        chat(oai(gateway, "oai", key))


@pytest.mark.parametrize(
    ("connection", "code"),
    [
        ("us-llm", "region_not_allowed"),
        ("reviewed-llm", "approval_required"),
    ],
)
def test_policy_refusals(gateway: Gateway, alice: str, connection: str, code: str) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        chat(oai(gateway, connection, alice))
    assert refusal(caught.value)["code"] == code


def test_on_detect_block_refuses_with_data_blocked(gateway: Gateway, alice: str) -> None:
    client = oai(gateway, "masked-llm", alice)
    client.chat.completions.create(model="demo", messages=MESSAGES)  # nothing found: allowed
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client.chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "my SSN is 123-45-6789"}]
        )
    error = refusal(caught.value)
    assert error["code"] == "data_blocked"
    assert "us_ssn" in error["message"] and "123-45-6789" not in str(caught.value.body)


def test_agent_unavailable(gateway: Gateway, alice: str) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        chat(oai(gateway, "agent-llm", alice))
    assert caught.value.status_code == 503
    assert refusal(caught.value)["code"] == "agent_unavailable"


def test_anthropic_sdk_sees_its_own_error_shape(gateway: Gateway, alice: str) -> None:
    client = anthropic.Anthropic(base_url=gateway.url("claude"), api_key="gk_bogus", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model="demo", max_tokens=10, messages=MESSAGES)
    body = caught.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "unauthenticated"
    assert caught.value.request_id == body["request_id"]


def test_anthropic_permission_denied(gateway: Gateway) -> None:
    key = gateway.create_key("fiona@example.com", groups=["finance"])
    client = anthropic.Anthropic(base_url=gateway.url("claude"), api_key=key, max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client.messages.create(model="demo", max_tokens=10, messages=MESSAGES)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "connection_not_allowed"


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/c/oai/../raw/models",
        "/c/oai/%2e%2e/secret",
        "/c/oai/models%2f..%2f..%2fadmin",
        "/c/oai/models%5c..",
        "/c/oai/./models",
        "/c/oai//evil.example.com/models",
        "/c/oai/http:%2f%2fevil.example.com",
        "/c/oai/user@evil.example.com/models",
        "/c/oai/models%00",
        "/c/oai/mo%zzdels",
    ],
)
def test_path_escapes_are_bad_requests(gateway: Gateway, alice: str, path: str) -> None:
    response = _raw_request(gateway, f"GET {path} HTTP/1.1", {"x-api-key": alice})
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert b'"bad_request"' in response


def test_absolute_form_request_target_goes_to_the_connection(gateway: Gateway, alice: str) -> None:
    """The host in an absolute-form target is ignored: only the connection decides the target."""
    response = _raw_request(
        gateway, "GET http://evil.example.com/c/oai/models HTTP/1.1", {"x-api-key": alice}
    )
    assert response.startswith(b"HTTP/1.1 200")
    assert b"geogate-demo" in response


def test_malformed_json(gateway: Gateway, alice: str) -> None:
    response = httpx2.post(
        gateway.url("oai") + "/chat/completions",
        content=b'{"model": "demo", "messages": [',
        headers={"x-api-key": alice, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert "JSON" in response.json()["error"]["message"]


def test_body_too_large_declared(gateway: Gateway, alice: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        oai(gateway, "small", alice).chat.completions.create(
            model="demo", messages=[{"role": "user", "content": "x" * 5000}]
        )
    assert caught.value.status_code == 413
    assert refusal(caught.value)["code"] == "body_too_large"


def test_body_too_large_streamed(gateway: Gateway, alice: str) -> None:
    def chunks():  # no Content-Length: the gateway must count as it streams
        for _ in range(10):
            yield b"y" * 1000

    response = httpx2.post(
        gateway.url("small-raw") + "/embeddings",
        content=chunks(),
        headers={"x-api-key": alice, "content-type": "application/octet-stream"},
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


def test_huge_declared_body_refused_before_reading(gateway: Gateway, alice: str) -> None:
    response = _raw_request(
        gateway,
        "POST /c/oai/chat/completions HTTP/1.1",
        {"x-api-key": alice, "content-length": str(10**12), "content-type": "application/json"},
    )
    assert response.startswith(b"HTTP/1.1 413")


def test_bad_session_header(gateway: Gateway, alice: str) -> None:
    response = httpx2.get(
        gateway.url("oai") + "/models", headers={"x-api-key": alice, "x-geogate-session": "a b"}
    )
    assert response.status_code == 400


# --- failing targets ---------------------------------------------------------------------------


def test_target_that_hangs(gateway: Gateway, alice: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(oai(gateway, "hang", alice))
    assert caught.value.status_code == 504
    assert refusal(caught.value)["code"] == "upstream_timeout"


def test_target_that_sends_garbage(gateway: Gateway, alice: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(oai(gateway, "garbage", alice))
    assert caught.value.status_code == 502
    assert refusal(caught.value)["code"] == "upstream_error"


def test_target_that_refuses_connections(gateway: Gateway, alice: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        chat(oai(gateway, "refused", alice))
    assert caught.value.status_code == 502
    assert refusal(caught.value)["code"] == "upstream_error"


def test_target_that_resets_mid_stream(gateway: Gateway, alice: str) -> None:
    """The SDK gets the text so far, then an APIError naming upstream_error."""
    stream = oai(gateway, "reset", alice).chat.completions.create(
        model="demo", messages=MESSAGES, stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in stream:
            received.append(chunk.choices[0].delta.content)
    assert received == ["Hel"]
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "upstream_error"


def test_target_that_stalls_mid_body(gateway: Gateway, alice: str) -> None:
    """A non-SSE body cut off by the idle timeout is an incomplete response, never a short one."""
    with pytest.raises(httpx2.HTTPError):
        httpx2.get(gateway.url("stall") + "/x", headers={"x-api-key": alice}).read()


# --- helpers -----------------------------------------------------------------------------------


def _raw_request(
    gateway: Gateway,
    request_line: str,
    headers: dict[str, str],
    *,
    raw_lines: Sequence[str] = (),
    payload: str = "",
) -> bytes:
    """Send bytes exactly as written: HTTP clients normalise the paths we want to attack with.

    `raw_lines` are header lines sent as given (repeated names included), then `payload`.
    """
    parts = urlsplit(gateway.base_url)
    lines = [request_line, f"host: {parts.netloc}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines += raw_lines
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n" + payload).encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _eventually_refused(
    client: openai.OpenAI, error: type[openai.APIStatusError], code: str
) -> None:
    """Another process's change is seen within a second; poll rather than time it."""
    deadline = time.monotonic() + 5
    while True:
        try:
            chat(client)
        except error as exc:
            assert refusal(exc)["code"] == code
            return
        assert time.monotonic() < deadline, f"still allowed, expected {code}"
        time.sleep(0.05)


def _eventually_allowed(client: openai.OpenAI) -> None:
    deadline = time.monotonic() + 5
    while True:
        try:
            chat(client)
            return
        except openai.AuthenticationError:
            assert time.monotonic() < deadline, "still refused after reactivation"
            time.sleep(0.05)


@pytest.mark.parametrize(
    "framing",
    [
        ["content-length: 5", "transfer-encoding: chunked"],
        ["content-length: 5", "content-length: 50"],
        ["transfer-encoding: chunked, identity"],
    ],
)
def test_request_smuggling_framing_is_refused(
    gateway: Gateway, alice: str, framing: list[str]
) -> None:
    """Ambiguous framing never reaches the target: the server refuses it before the data path."""
    smuggled = "0\r\n\r\nGET /c/whoami/smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
    data = _raw_request(
        gateway,
        "POST /c/whoami/x HTTP/1.1",
        {"x-api-key": alice},
        raw_lines=framing,
        payload=smuggled,
    )
    assert data.startswith(b"HTTP/1.1 400"), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1  # the smuggled request was never served


def test_caller_host_header_is_not_forwarded(gateway: Gateway, alice: str) -> None:
    response = httpx2.get(
        gateway.url("raw") + "/debug/echo-headers",
        headers={"x-api-key": alice, "host": "evil.test"},
    )
    upstream = urlsplit(gateway.config.connections["raw"].url).netloc
    assert response.json()["headers"]["host"] == upstream


def test_deeply_nested_json_is_a_bad_request_not_a_crash(gateway: Gateway, alice: str) -> None:
    response = httpx2.post(
        gateway.url("oai") + "/chat/completions",
        content=b"[" * 200_000,
        headers={"x-api-key": alice, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


def test_other_authorization_schemes_do_not_hide_an_api_key(gateway: Gateway, alice: str) -> None:
    basic = {"authorization": "Basic Zm9vOmJhcg=="}
    with_key = httpx2.get(gateway.url("whoami") + "/x", headers={**basic, "x-api-key": alice})
    assert with_key.status_code == 200
    alone = httpx2.get(gateway.url("whoami") + "/x", headers=basic)
    assert alone.status_code == 401
    assert alone.json()["error"]["code"] == "unauthenticated"


def test_credentials_are_checked_before_anything_else(gateway: Gateway) -> None:
    response = httpx2.get(gateway.url("oai") + "/models", headers={"x-geogate-session": "a b"})
    assert response.status_code == 401


def test_unreadable_ca_file_is_an_upstream_error_not_a_crash(gateway: Gateway, alice: str) -> None:
    response = httpx2.get(gateway.url("bad-ca") + "/x", headers={"x-api-key": alice})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert "CA file" in response.json()["error"]["message"]


def test_slow_upload_is_not_a_target_timeout(gateway: Gateway, alice: str) -> None:
    """The first-byte limit (2 s here) starts once the target has the whole request: the
    upload alone takes longer than that."""

    def slowly():
        for _ in range(4):
            time.sleep(0.75)
            yield b"z" * 100

    response = httpx2.post(
        gateway.url("quick-answer") + "/upload",
        content=slowly(),
        headers={"x-api-key": alice, "content-type": "application/octet-stream"},
    )
    assert response.status_code == 200
