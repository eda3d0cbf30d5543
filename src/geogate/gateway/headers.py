"""Which headers cross the gateway, in each direction, and where the caller's token is."""

from __future__ import annotations

from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# What the caller sends for the gateway alone: its credentials, its view of the host, and
# forwarding claims the target has no business trusting.
CALLER_ONLY = frozenset(
    {
        b"host",
        b"content-length",
        b"expect",
        b"authorization",
        b"x-api-key",
        b"api-key",
        b"cookie",
        b"forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-proto",
        b"x-real-ip",
    }
)
TOKEN_HEADERS = (b"authorization", b"x-api-key", b"api-key")


def caller_token(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The caller's token: `Authorization: Bearer T`, then `x-api-key`, then `api-key`.

    An `Authorization` header of another scheme (Basic, ...) is not a GeoGate credential.
    """
    found: dict[bytes, bytes] = {}
    for name, value in headers:
        if name in TOKEN_HEADERS and name not in found:
            found[name] = value
    for name in TOKEN_HEADERS:
        if name not in found:
            continue
        text = found[name].decode("latin-1").strip()
        if name != b"authorization":
            return text
        scheme, _, token = text.partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
    return None


def _hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    """The fixed hop-by-hop set plus the headers named in `Connection:` (RFC 9110 §7.6.1)."""
    listed = [value for name, value in headers if name == b"connection"]
    if not listed:
        return HOP_BY_HOP
    return HOP_BY_HOP.union(
        token.strip().lower() for value in listed for token in value.split(b",")
    )


def upstream_headers(
    headers: Headers,
    injected: list[tuple[str, str]],
    *,
    keep_length: bool,
    also_dropped: frozenset[bytes] = frozenset(),
) -> list[tuple[str, str]]:
    """Caller headers minus hop-by-hop, credentials and x-geogate-*, plus the connection's own.

    `also_dropped` names caller headers this target must not see (a caller's own signature).
    """
    dropped = (
        _hop_by_hop(headers)
        | CALLER_ONLY
        | also_dropped
        | {name.lower().encode() for name, _ in injected}
    )
    if keep_length:  # a body passed on as it streams keeps the caller's declared length
        dropped -= {b"content-length"}
    out = [
        (name.decode("latin-1"), value.decode("latin-1"))
        for name, value in headers
        if name not in dropped and not name.startswith(b"x-geogate-")
    ]
    out.extend(injected)
    return out


def downstream_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """Target headers minus hop-by-hop ones and any x-geogate-* a target might try to forge."""
    raw = [(name.lower(), value) for name, value in headers]
    dropped = _hop_by_hop(raw)
    return [
        (name, value)
        for name, value in raw
        if name not in dropped and not name.startswith(b"x-geogate-")
    ]
