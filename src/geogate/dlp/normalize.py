"""Text as the detectors see it: one ASCII-compatible byte per character, evasions undone.

Full-width digits, other scripts' digits, look-alike dashes and spaces, zero-width joiners and
soft hyphens all let `123-45-6789` slip past a naive pattern. Each character is mapped on its
own (so the mapping is the same however a stream is split), and every normalised character
remembers the original character it came from, so masks land on the original offsets.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from array import array
from dataclasses import dataclass
from functools import lru_cache

OTHER = "?"
"""Stands for any character the patterns do not need to see (letters of other scripts); the
same byte `str.encode("ascii", "replace")` writes, which makes such texts cheap to read."""

_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_DASHES = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2043\u2212\ufe58\ufe63\uff0d")
_DOTS = frozenset("\u00b7\u2022\u2024\u2027\u2219\u22c5\u30fb\uff0e\uff65")


@lru_cache(maxsize=4096)
def _map(char: str) -> str:
    return _reading(char)


def _reading(char: str) -> str:
    """What one non-ASCII character reads as: ASCII text, nothing, or OTHER."""
    category = unicodedata.category(char)
    if category == "Cf" or char == "\u00ad":  # zero-width joiners, bidi marks, soft hyphen
        return ""
    if char in _DASHES:
        return "-"
    if char in _DOTS:
        return "."
    if category == "Zs" or char in "\u2028\u2029":
        return " "
    if category == "Nd":
        return str(unicodedata.digit(char))
    folded = unicodedata.normalize("NFKC", char)
    if folded.isascii():
        return folded
    return _LOOK_ALIKES.get(folded, OTHER)


_LOOK_ALIKES = dict(
    zip(
        "АВЕЗІЈКМНОРСТУХаеіјорсухѕԁԛԝΑΒΕΖΗΙΚΜΝΟΡΤΥΧαιοντυχ",
        "ABE3IJKMHOPCTYXaeijopcyxsdqwABEZHIKMNOPTYXaiovtux",
        strict=True,
    )
)
"""Cyrillic and Greek letters that look like Latin ones (after Unicode's confusables list),
so `AKIA...` or `jane@example.com` written with a Cyrillic `a` is still read as it shows."""


@dataclass(frozen=True, slots=True)
class Normalized:
    text: str
    """Only ASCII and OTHER, so `data` has one byte per character."""
    data: bytes
    origin: array[int] | None
    """The original index of each character of `text` (None: the same index)."""
    length: int
    """Length of the original text."""

    def original(self, index: int) -> int:
        """The original offset of a normalised offset (an end offset maps past its char)."""
        if self.origin is None:
            return index
        if index >= len(self.origin):
            return self.length
        return self.origin[index]

    def original_end(self, end: int) -> int:
        if self.origin is None:
            return end
        return self.origin[end - 1] + 1 if end > 0 else 0


@lru_cache(maxsize=1)
def special() -> frozenset[str]:
    """The non-ASCII characters that read as something other than OTHER (digits of any script,
    dashes, spaces, zero-width and tag characters, full-width forms, ...): built once, from
    every code point up to U+2FFFF and the tag block, in about 60 ms."""
    codes = itertools.chain(range(0x80, 0x30000), range(0xE0000, 0xE1000))
    return frozenset(chr(code) for code in codes if _reading(chr(code)) != OTHER)


def normalize(text: str) -> Normalized:
    if text.isascii():
        data = text.encode("ascii")
    elif special().isdisjoint(_non_ascii(text)):
        data = text.encode("ascii", "replace")  # nothing to read but OTHER
        text = data.decode("ascii")
    else:
        return _normalized(text)
    if "\\" in text:
        text = _unescaped(text)
        data = text.encode("ascii")
    return Normalized(text, data, None, len(text))


def _non_ascii(text: str) -> str:
    """The text's non-ASCII characters, found in C (the `re` way costs ten times as much)."""
    data = text.encode("utf-8", "surrogatepass").translate(None, _ASCII)
    return data.decode("utf-8", "surrogatepass")


_ASCII = bytes(range(128))


def _normalized(text: str) -> Normalized:
    """Each non-ASCII character read on its own, remembering where each came from."""
    parts: list[str] = []
    origin: array[int] | None = None
    position = 0
    for run in _NON_ASCII.finditer(text):
        start, end = run.span()
        if origin is not None:
            origin.extend(range(position, start))
        parts.append(text[position:start])
        for index in range(start, end):
            mapped = _map(text[index])
            if len(mapped) != 1 and origin is None:  # so far every character kept its place
                origin = array("i", range(index))
            parts.append(mapped)
            if origin is not None:
                origin.extend([index] * len(mapped))
        position = end
    if origin is not None:
        origin.extend(range(position, len(text)))
    parts.append(text[position:])
    normalized = "".join(parts)
    if "\\" in normalized:
        normalized = _unescaped(normalized)
    return Normalized(normalized, normalized.encode("latin-1"), origin, len(text))


_ESCAPE = re.compile(r"(?<!\\)\\[nrtbf]")


def _unescaped(text: str) -> str:
    """`\\n` and its kin read as two spaces, so a value right after an escaped line break in
    raw JSON (`\\nSSN 123-45-6789`) still starts a word. Lengths stay the same."""
    return _ESCAPE.sub("  ", text)
