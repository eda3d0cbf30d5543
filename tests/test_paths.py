"""The target URL can never leave the connection's base URL, whatever the path."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geogate.gateway.paths import PathError, split_connection, target_url

BASE = "https://eu.api.openai.com/v1"


def _assert_under_base(url: str) -> None:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc) == ("https", "eu.api.openai.com")
    assert parts.path == "/v1" or parts.path.startswith("/v1/")
    decoded = unquote(parts.path).split("/")
    assert ".." not in decoded
    assert "." not in decoded


@pytest.mark.parametrize(
    ("tail", "query", "expected"),
    [
        (b"chat/completions", b"", "https://eu.api.openai.com/v1/chat/completions"),
        (b"models", b"limit=2&after=x", "https://eu.api.openai.com/v1/models?limit=2&after=x"),
        (b"", b"", "https://eu.api.openai.com/v1"),
        (b"models/claude@20240620", b"", "https://eu.api.openai.com/v1/models/claude@20240620"),
        (b"files/file-abc/content", b"", "https://eu.api.openai.com/v1/files/file-abc/content"),
        (b"a%20b", b"", "https://eu.api.openai.com/v1/a%20b"),
    ],
)
def test_ordinary_paths(tail: bytes, query: bytes, expected: str) -> None:
    assert target_url(BASE, tail, query) == expected


@pytest.mark.parametrize(
    "tail",
    [
        b"..",
        b"../admin",
        b"..;/admin",
        b"models/..;x/admin",
        b".;/models",
        b"models/../../admin",
        b"%2e%2e/admin",
        b"%2E%2E%2Fadmin",
        b"models%2f..%2fadmin",
        b"models%5c..%5cadmin",
        b".",
        b"./models",
        b"/evil.example.com/x",
        b"models//x",
        b"http:",
        b"https://evil.example.com",
        b"user@evil.example.com/x",
        b"evil.example.com:443/x",
        b"models%00",
        b"models%0d%0aHost:%20evil",
        b"models\\..\\admin",
        b"models#frag",
        b"models?x=1",
        b"mo%zz",
        b"models%",
        "modèles".encode(),
        b"models\x00",
        b"models x",
    ],
)
def test_escapes_are_refused(tail: bytes) -> None:
    with pytest.raises(PathError):
        target_url(BASE, tail, b"")


@pytest.mark.parametrize("query", [b"a=1#frag", b"a=\r\n", b"a= b", "é=1".encode()])
def test_bad_queries_are_refused(query: bytes) -> None:
    with pytest.raises(PathError):
        target_url(BASE, b"models", query)


def test_split_connection() -> None:
    assert split_connection(b"/c/openai-eu/v1/chat") == ("openai-eu", b"v1/chat")
    assert split_connection(b"/c/openai-eu") == ("openai-eu", b"")
    with pytest.raises(PathError):
        split_connection("/c/é/x".encode())


_PIECES = st.sampled_from(
    [
        "..",
        ".",
        "%2e",
        "%2E",
        "%2f",
        "%5c",
        "/",
        "//",
        "@",
        ":",
        "a",
        "v1",
        "%00",
        "%",
        "\\",
        "?",
        "#",
        "%25",
        "é",
        " ",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join), st.binary(max_size=20))
def test_no_tail_leaves_the_base(tail: str, query: bytes) -> None:
    try:
        url = target_url(BASE, tail.encode(), query)
    except PathError:
        return
    _assert_under_base(url)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=40))
def test_arbitrary_bytes_never_crash_or_escape(tail: bytes) -> None:
    try:
        url = target_url(BASE, tail, b"")
    except PathError:
        return
    _assert_under_base(url)
