"""Finding entities: one hyperscan pass for every pattern, then validators, then a choice.

The choice is leftmost among the validated spans of all detectors (then the detector listed
first, then the longest: a GitHub token before the `@host` that makes it look like an
email), and a span is
validated by itself and a bounded context. That makes findings local: text more than a
span's length away cannot change them, which is what lets a stream release text early
(`live_start` says how early) and still agree with the whole-text result.
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from typing import NamedTuple

import hyperscan

from geogate.config import BUILTIN_ENTITIES, CustomEntity
from geogate.dlp.detectors import BUILTIN, Detector, Span
from geogate.dlp.normalize import Normalized, normalize, special
from geogate.dlp.transform import MaskingError

_LONGEST_CUSTOM = 1000
_REGEX_PARSER = importlib.import_module("re._parser")
"""The standard library's own regex parser: the one place that knows a pattern's longest match
(`sre_parse`, its deprecated alias, warns on import)."""


class Finding(NamedTuple):
    """An entity found at `text[start:end]` (a tuple: a few thousand are made per MB)."""

    start: int
    end: int
    entity: str


class PatternError(ValueError):
    """A custom pattern the engine cannot use; the message names the fix."""


def custom_detector(name: str, entity: CustomEntity) -> Detector:
    """A detector for a policy's own pattern or word list."""
    if entity.words is not None:
        words = sorted({word for word in entity.words if word}, key=len, reverse=True)
        pattern = r"(?i)\b(?:" + "|".join(re.escape(word) for word in words) + r")\b"
        longest = max((len(word) for word in words), default=1)
    else:
        assert entity.pattern is not None
        pattern = entity.pattern
        longest = _longest_match(name, pattern)
    return Detector(name, (pattern,), _whole, lambda text: max(0, len(text) - longest) or None)


def check_custom(name: str, entity: CustomEntity) -> None:
    """Raise PatternError unless the entity compiles and has a bounded length."""
    Engine([custom_detector(name, entity)])


def _whole(text: str, start: int, end: int) -> Iterator[Span]:
    yield start, end


def _longest_match(name: str, pattern: str) -> int:
    """A bound on a pattern's match length, which a stream must be able to hold back."""
    try:
        _low, high = _REGEX_PARSER.parse(pattern).getwidth()
    except (re.error, OverflowError, RecursionError) as exc:
        raise PatternError(f"custom entity {name!r}: pattern does not compile: {exc}") from exc
    if high > _LONGEST_CUSTOM:  # an unbounded pattern's width is MAXREPEAT, far above
        raise PatternError(
            f"custom entity {name!r}: the pattern can match text of any length; bound it "
            f"(for example `{{1,64}}` instead of `+` or `*`, at most {_LONGEST_CUSTOM} "
            "characters) so streamed responses can be masked"
        )
    return max(1, int(high))


class Engine:
    """Detectors compiled into one hyperscan database."""

    def __init__(self, detectors: Iterable[Detector]) -> None:
        self.detectors = tuple(detectors)
        self.entities = frozenset(detector.entity for detector in self.detectors)
        expressions: list[bytes] = []
        self._owner: list[int] = []
        for index, detector in enumerate(self.detectors):
            for pattern in detector.patterns:
                expressions.append(pattern.encode())
                self._owner.append(index)
        self._merging = frozenset(
            index for index, detector in enumerate(self.detectors) if detector.merge
        )
        self._database: hyperscan.Database | None = None
        self._scratch = threading.local()
        special()  # built now, at start, rather than by the first call with non-ASCII text
        for detector in self.detectors:
            detector.prepare()
        if expressions:
            self._database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            try:
                self._database.compile(
                    expressions=expressions,
                    ids=list(range(len(expressions))),
                    elements=len(expressions),
                    flags=[hyperscan.HS_FLAG_SOM_LEFTMOST | hyperscan.HS_FLAG_ALLOWEMPTY]
                    * len(expressions),
                )
            except hyperscan.error as exc:
                names = ", ".join(detector.entity for detector in self.detectors)
                raise PatternError(f"{names}: the pattern does not compile ({exc})") from exc

    @classmethod
    def build(
        cls, entities: Iterable[str], custom: Mapping[str, CustomEntity] | None = None
    ) -> Engine:
        return _engine(frozenset(entities), _frozen(custom or {}))

    def find(self, text: str) -> list[Finding]:
        """Findings in `text`, sorted and non-overlapping, with offsets into `text`."""
        return list(map(Finding._make, self.marks(text)))

    def marks(self, text: str) -> list[tuple[int, int, str]]:
        """What `find` returns, as plain (start, end, entity) tuples: the masker's hot path."""
        normalized = normalize(text)
        spans = self.spans(normalized)
        if normalized.origin is None:  # every character kept its place
            return spans
        return [
            (normalized.original(start), normalized.original_end(end), entity)
            for start, end, entity in spans
        ]

    def spans(self, normalized: Normalized, after: int = 0) -> list[tuple[int, int, str]]:
        """Chosen spans in normalised offsets, ignoring any that start before `after`."""
        candidates: list[tuple[int, int, int]] = []
        text = normalized.text
        for owner, start, end in self._regions(normalized.data):
            detector = self.detectors[owner]
            try:
                for span_start, span_end in detector.spans(text, start, end):
                    if span_start >= after and span_end > span_start:
                        candidates.append((span_start, owner, -span_end))
            except Exception as exc:  # a validator bug must not let text through
                raise MaskingError(
                    f"The {detector.entity} detector failed ({exc!r}); the call was refused "
                    "rather than sent unmasked."
                ) from exc
        chosen: list[tuple[int, int, str]] = []
        reached = 0
        for start, owner, negative_end in sorted(set(candidates)):
            if start >= reached:
                chosen.append((start, -negative_end, self.detectors[owner].entity))
                reached = -negative_end
        return chosen

    def live_start(self, text: str) -> int:
        """Where the earliest span that more text could still create or change may begin."""
        starts = [detector.tail(text) for detector in self.detectors]
        return min((start for start in starts if start is not None), default=len(text))

    def _regions(self, data: bytes) -> list[tuple[int, int, int]]:
        """(detector, start, end): the longest hyperscan match per detector and start, which
        validators look inside. Overlapping regions of a detector that looks for spans
        anywhere inside them are read as one: several of its patterns often find the same
        number (`+1 415-555-0132` as international and as NANP), which would otherwise be
        validated once per pattern."""
        if self._database is None or not data:
            return []
        owner = self._owner
        hits: list[tuple[int, int, int]] = []

        def on_match(pattern: int, start: int, end: int, _flags: int, _context: object) -> None:
            hits.append((owner[pattern], start, end))

        scratch = getattr(self._scratch, "space", None)
        if scratch is None:  # hyperscan's scratch space serves one scan at a time: one per thread
            scratch = self._scratch.space = hyperscan.Scratch(self._database)
        self._database.scan(data, match_event_handler=on_match, scratch=scratch)
        hits.sort()
        regions: list[tuple[int, int, int]] = []
        for hit in hits:
            if regions:
                detector, start, end = regions[-1]
                if hit[0] == detector and (
                    hit[1] == start or (hit[1] <= end and detector in self._merging)
                ):
                    regions[-1] = (detector, start, max(end, hit[2]))
                    continue
            regions.append(hit)
        return regions

    def canonical(self, entity: str, value: str) -> str:
        for detector in self.detectors:
            if detector.entity == entity:
                return detector.canonical(normalize(value).text)
        return value


_CustomKey = tuple[tuple[str, str | None, tuple[str, ...] | None], ...]


def _frozen(custom: Mapping[str, CustomEntity]) -> _CustomKey:
    return tuple(
        (name, entity.pattern, None if entity.words is None else tuple(entity.words))
        for name, entity in sorted(custom.items())
    )


@lru_cache(maxsize=256)
def _engine(entities: frozenset[str], custom: _CustomKey) -> Engine:
    own = {
        name: CustomEntity(pattern=pattern, words=None if words is None else list(words))
        for name, pattern, words in custom
    }
    unknown = entities - BUILTIN_ENTITIES - set(own)
    if unknown:
        raise PatternError(f"unknown masking entities: {', '.join(sorted(unknown))}")
    detectors = [detector for name, detector in BUILTIN.items() if name in entities]
    detectors += [custom_detector(name, own[name]) for name in sorted(entities & set(own))]
    return Engine(detectors)
