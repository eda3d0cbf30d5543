"""What approvers are shown of a call under review: its facts and a masked preview.

The preview is the call's text fields (as the protocol adapter finds them), joined and cut
to `PREVIEW_CHARS`, then masked for every entity GeoGate knows, whatever the policy masks:
a review page, a Slack channel or a webhook receiver never sees a raw value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from geogate.dlp import Masker, MaskingError, TextStream
from geogate.gateway.headers import Headers
from geogate.policy import RequestFacts
from geogate.protocols import ProtocolAdapter

PREVIEW_CHARS = 500
JUSTIFICATION_CHARS = 1000


class _Collect:
    """A `TextTransform` that keeps the texts it is given and changes nothing."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def apply(self, texts: Sequence[str]) -> list[str]:
        self.texts.extend(texts)
        return list(texts)

    def stream(self) -> TextStream:
        raise MaskingError("a request is never streamed to the preview")


def summary(
    *,
    method: str,
    target: str,
    body: bytes,
    content_type: str,
    adapter: ProtocolAdapter,
    facts: RequestFacts,
    headers: Headers,
    masker: Masker | None,
    reason: str,
    found: Mapping[str, int] | None,
) -> dict[str, Any]:
    """The masked summary of a call, as its review keeps it."""
    texts = _Collect()
    try:
        adapter.mask_request(body, content_type, texts)
    except MaskingError:
        texts.texts = []  # a body the adapter cannot read has no preview
    preview = "\n".join(text for text in texts.texts if text.strip())[:PREVIEW_CHARS]
    justification = next(
        (v.decode("utf-8", "replace") for n, v in headers if n == b"x-geogate-justification"),
        None,
    )
    if justification is not None:
        justification = justification[:JUSTIFICATION_CHARS]
    if masker is not None:
        preview = masker.mask(preview) if preview else preview
        justification = masker.mask(justification) if justification else justification
    shown: dict[str, Any] = {
        "method": method,
        "target": target,
        "reason": reason,
        "bytes": len(body),
        "preview": preview or None,
        "justification": justification,
    }
    if facts.model is not None:
        shown["model"] = facts.model
    if found:
        shown["found"] = dict(found)
    return shown
