"""Turning `/c/{connection}/{path}` into a target URL that cannot leave the connection's base.

The raw (still percent-encoded) path is checked, because a decoded path hides exactly the
tricks that matter: `%2e%2e`, `%2f` and `%5c` become `..`, `/` and `\\` only after decoding.
The final URL is then compared with the base once more, so a trick nobody thought of still
cannot reach another host or climb out of the base path.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes, urlsplit

_ENCODED_SEPARATOR = re.compile(rb"%(2f|5c|2e|00)", re.IGNORECASE)
_ALLOWED = re.compile(rb"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$")
_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_ALLOWED_QUERY = re.compile(rb"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$")


class PathError(ValueError):
    """The requested path is refused; the message tells the caller why."""


def split_connection(raw_path: bytes) -> tuple[str, bytes]:
    """`/c/NAME/rest` -> (`NAME`, `rest`); the connection name is plain ASCII."""
    rest = raw_path[3:]
    name, _, tail = rest.partition(b"/")
    try:
        connection = name.decode("ascii")
    except UnicodeDecodeError:
        raise PathError("The connection name in the URL is not plain ASCII.") from None
    return connection, tail


def target_url(base_url: str, raw_tail: bytes, raw_query: bytes) -> str:
    """The URL under `base_url` that `raw_tail` names, or PathError for any escape attempt."""
    if not _ALLOWED.match(raw_tail) or _PERCENT.search(raw_tail):
        raise PathError("The path contains characters that are not allowed in a URL path.")
    if _ENCODED_SEPARATOR.search(raw_tail):
        raise PathError("Encoded '/', '\\', '.' or NUL characters are not allowed in the path.")
    segments = raw_tail.split(b"/")
    for index, segment in enumerate(segments):
        if segment.split(b";", 1)[0] in (b".", b".."):  # `..;` is `..` to many servers
            raise PathError("The path may not contain '.' or '..' segments.")
        if segment == b"" and index < len(segments) - 1:
            raise PathError("The path may not contain empty segments ('//').")
    if segments and (b":" in segments[0] or b"@" in segments[0]):
        # `/c/x/http:...` or `/c/x/user@host` reads like an absolute URL or an authority.
        raise PathError("The path may not start with a scheme or a user@host part.")
    if _CONTROL.search(unquote_to_bytes(raw_tail)):
        raise PathError("Control characters are not allowed in the path.")
    url = f"{base_url}/{raw_tail.decode('ascii')}" if raw_tail else base_url
    if raw_query:
        if not _ALLOWED_QUERY.match(raw_query):
            raise PathError("The query string contains characters that are not allowed.")
        url = f"{url}?{raw_query.decode('ascii')}"
    _check_under(base_url, url)
    return url


def _check_under(base_url: str, url: str) -> None:
    base, target = urlsplit(base_url), urlsplit(url)
    base_path = base.path.rstrip("/")
    if (
        (target.scheme, target.netloc) != (base.scheme, base.netloc)
        or not (target.path == base_path or target.path.startswith(base_path + "/"))
        or target.fragment
    ):
        raise PathError("The path leaves the connection's base URL.")
