"""Masking: findings replaced in a style, counted, or refused; whole texts and streams alike.

    masker = Masker(Engine.build(["us_ssn"]), style="partial")
    masker.apply(["SSN 123-45-6789"])  # ['SSN ***-**-6789']

A `Masker` belongs to one call: it counts what it masked (for `x-geogate-masked` and the
record) and, with `tokenize`, fills the session's vault so `Restorer` can put the originals
back into the reply.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from functools import cache
from operator import itemgetter
from typing import Literal

from geogate.dlp.engine import Engine
from geogate.dlp.normalize import normalize
from geogate.dlp.transform import DataBlocked, MaskingError, TextStream, TextTransform
from geogate.dlp.vault import PLACEHOLDER, PLACEHOLDER_LONGEST, Vault

Style = Literal["redact", "partial", "hash", "tokenize"]

CEILING = 64 * 1024
"""The most a stream holds back waiting for a value to end (an open PEM block); beyond it the
stream is refused, never released unmasked."""
_CONTEXT = 64
"""Released characters kept so detectors still see a span's left context (`ssn:`, `key=`)."""
_RIGHT_CONTEXT = 2
"""Characters after a span that decide whether it stands alone (`_detached`)."""
_IP_GROUP = re.compile(r"[0-9A-Fa-f]+")


class Masker:
    def __init__(
        self,
        engine: Engine,
        style: Style = "redact",
        *,
        key: bytes = b"",
        block: bool = False,
        vault: Vault | None = None,
    ) -> None:
        if style == "tokenize" and vault is None:
            raise ValueError("the tokenize style needs a vault")
        self.engine = engine
        self.style = style
        self.key = key
        self.block = block
        self.vault = vault
        self.counts: Counter[str] = Counter()

    def mask(self, text: str) -> str:
        return self.apply([text])[0]

    def apply(self, texts: Sequence[str]) -> list[str]:
        whole = texts[0] if len(texts) == 1 else "".join(texts)
        findings = self.engine.marks(whole) if whole else []
        if not findings:
            return list(texts)
        return _split(whole, findings, self._replacements(whole, findings), texts)

    def stream(self) -> StreamMasker:
        return StreamMasker(self)

    def replacement(self, entity: str, value: str) -> str:
        """What a value becomes in this masker's style."""
        if self.style == "redact":
            return _redacted(entity)
        label = entity.upper()
        if self.style == "partial":
            return _partial(entity, value, label)
        canonical = self.engine.canonical(entity, value)
        if self.style == "hash":
            digest = hmac.new(self.key, f"{entity}:{canonical}".encode(), hashlib.sha256)
            return f"[{label}:{digest.hexdigest()[:8]}]"
        assert self.vault is not None
        return self.vault.placeholder(entity, canonical, value)

    def _replacements(self, text: str, findings: Sequence[_Mark]) -> list[str]:
        """Each finding's replacement, counted; or the refusal `on_detect: block` asks for."""
        if findings and self.block:
            raise DataBlocked(sorted({entity for _start, _end, entity in findings}))
        counts = self.counts
        for _start, _end, entity in findings:  # (Counter.update checks for a Mapping first)
            counts[entity] += 1
        if self.style == "redact":  # the value does not matter: no slicing, one lookup
            return [_redacted(entity) for _start, _end, entity in findings]
        return [self.replacement(entity, text[start:end]) for start, end, entity in findings]


_Mark = tuple[int, int, str]
"""A finding as (start, end, entity) in original offsets."""


def _render(
    text: str, findings: Sequence[_Mark], replacements: Sequence[str], begin: int, end: int
) -> str:
    """`text[begin:end]` masked. A finding that crosses into it from an earlier field was
    replaced there, so here its characters just disappear. (The findings are sorted and do not
    overlap, so their ends are sorted too: bisection finds the ones that touch the field.)"""
    pieces: list[str] = []
    position = begin
    for index in range(bisect_right(findings, begin, key=_stop), len(findings)):
        start, stop, _entity = findings[index]
        if start >= end:
            break
        if start >= begin:
            pieces.append(text[position:start])
            pieces.append(replacements[index])
        position = min(stop, end)
    pieces.append(text[position:end])
    return "".join(pieces)


_stop = itemgetter(1)


@cache
def _redacted(entity: str) -> str:
    return f"[{entity.upper()}]"


def _split(
    whole: str, marks: Sequence[_Mark], replacements: Sequence[str], texts: Sequence[str]
) -> list[str]:
    """Each field of a group its part of the group's text, with the replacements in it."""
    out: list[str] = []
    begin = 0
    for text in texts:
        out.append(_render(whole, marks, replacements, begin, begin + len(text)))
        begin += len(text)
    return out


def _partial(entity: str, value: str, label: str) -> str:
    """Enough to tell values apart, never enough to use them: the last four characters of
    numbers, an email's first letter and domain, an IP address's first group."""
    if entity == "secret":
        return f"[{label}]"
    if entity == "email":
        local, _, domain = value.partition("@")
        return f"{local[:1]}***@{domain}"
    if entity == "ip_address":
        first = _IP_GROUP.match(value)
        head = first.group() if first else ""
        return head + "".join("*" if char.isalnum() else char for char in value[len(head) :])
    hidden = sum(char.isalnum() for char in value) - 4
    out: list[str] = []
    for char in value:
        if char.isalnum() and hidden > 0:
            out.append("*")
            hidden -= 1
        else:
            out.append(char)
    return "".join(out)


class StreamMasker:
    """Masks a text that arrives in pieces; see `TextStream`.

    Each `feed` scans what is held plus a little released context, releases everything no
    future text can change (before `Engine.live_start`, and never inside a finding), and keeps
    the rest. The output is therefore the same for every split of the same text.
    """

    def __init__(self, masker: Masker) -> None:
        self._masker = masker
        self._text = ""
        self._released = 0
        """How much of `_text` is already out (and kept only as context)."""

    def feed(self, text: str) -> str:
        self._text += text
        return self._release(final=False)

    def finish(self) -> str:
        return self._release(final=True)

    def _release(self, final: bool) -> str:
        text = self._text
        normalized = normalize(text)
        engine = self._masker.engine
        spans = engine.spans(normalized, _normalized_index(normalized.origin, self._released))
        cut = len(normalized.text)
        if not final:
            cut = engine.live_start(normalized.text)
            for start, end, _entity in spans:
                # a span may still grow, or lose to its right context (`6789` then `.5`)
                if start < cut and (end > cut or end > len(normalized.text) - _RIGHT_CONTEXT):
                    cut = start
                    break
        cut = max(normalized.original(cut), self._released)
        if not final and len(text) - cut > CEILING:
            raise MaskingError(
                f"The stream holds more than {CEILING // 1024} KiB that may be one "
                "sensitive value (such as a private key without its END line); it was "
                "stopped rather than released unmasked."
            )
        findings = [
            (normalized.original(start), normalized.original_end(end), entity)
            for start, end, entity in spans
        ]
        findings = [finding for finding in findings if finding[1] <= cut]
        replacements = self._masker._replacements(text, findings)
        released = _render(text, findings, replacements, self._released, cut)
        keep = max(0, cut - _CONTEXT)
        self._text = text[keep:]
        self._released = cut - keep
        return released


def _normalized_index(origin: Sequence[int] | None, index: int) -> int:
    """The first normalised character at or after an original index."""
    return index if origin is None else bisect_left(origin, index)


class Restorer:
    """Puts a session's originals back where the reply repeats their placeholders."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def apply(self, texts: Sequence[str]) -> list[str]:
        whole = "".join(texts)
        marks, originals = self._marks(whole, 0, len(whole))
        if not marks:
            return list(texts)
        return _split(whole, marks, originals, texts)

    def stream(self) -> RestoringStream:
        return RestoringStream(self)

    def _marks(self, text: str, begin: int, end: int) -> tuple[list[_Mark], list[str]]:
        marks: list[_Mark] = []
        originals: list[str] = []
        for found in PLACEHOLDER.finditer(text, begin, end):
            original = self.vault.original(found.group())
            if original is not None:
                marks.append((found.start(), found.end(), found.group(1).lower()))
                originals.append(original)
        return marks, originals


class RestoringStream:
    """Holds back only a `[` that may be the start of a placeholder."""

    def __init__(self, restorer: Restorer) -> None:
        self._restorer = restorer
        self._held = ""

    def feed(self, text: str) -> str:
        text = self._held + text
        opening = _OPEN_PLACEHOLDER.search(text, max(0, len(text) - PLACEHOLDER_LONGEST))
        cut = opening.start() if opening else len(text)
        self._held = text[cut:]
        return self._restore(text[:cut])

    def finish(self) -> str:
        text, self._held = self._held, ""
        return self._restore(text)

    def _restore(self, text: str) -> str:
        marks, originals = self._restorer._marks(text, 0, len(text))
        return _render(text, marks, originals, 0, len(text)) if marks else text


_OPEN_PLACEHOLDER = re.compile(r"\[[A-Za-z0-9_]*\Z")


class Chain:
    """Two transforms one after the other (mask the reply, then restore the caller's values)."""

    def __init__(self, first: TextTransform, second: TextTransform) -> None:
        self.first = first
        self.second = second

    def apply(self, texts: Sequence[str]) -> list[str]:
        return self.second.apply(self.first.apply(texts))

    def stream(self) -> ChainedStream:
        return ChainedStream(self.first.stream(), self.second.stream())


class ChainedStream:
    def __init__(self, first: TextStream, second: TextStream) -> None:
        self.first = first
        self.second = second

    def feed(self, text: str) -> str:
        return self.second.feed(self.first.feed(text))

    def finish(self) -> str:
        return self.second.feed(self.first.finish()) + self.second.finish()
