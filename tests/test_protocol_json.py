"""The JSON reader of masked bodies: orjson's speed, the standard library's strictness.

`parse_json` must answer exactly as the strict reference below (the standard library refusing
repeated keys, `NaN` and `Infinity`) for every text: a repeated key, which orjson would drop
silently, must never pass, wherever it sits and whatever colons the strings around it hold.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geogate.dlp.transform import MaskingError
from geogate.protocols.text import dumps, load_json, parse_json


def reference(data: bytes | str) -> Any:
    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({key for key, _value in pairs}) != len(pairs):
            raise ValueError("a key appears twice in one object")
        return dict(pairs)

    def constant(name: str) -> Any:
        raise ValueError(name)

    return json.loads(data, object_pairs_hook=unique, parse_constant=constant)


def outcome(parse: Any, data: bytes | str) -> tuple[str, Any]:
    try:
        return "value", parse(data)
    except (ValueError, RecursionError) as exc:
        return "refused", type(exc).__name__


KEYS = st.sampled_from(["a", "b", "a:b", ":", "k\u00e9y", "\u003a:", "x" * 3, "role", ""])
STRINGS = st.text(alphabet=st.sampled_from([*'ab:é"\\\u2028\n{}[],', "\ud7ff"]), max_size=8)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    STRINGS,
)
DOCUMENTS = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)


def render(document: Any, rng: random.Random, duplicate: bool) -> str:
    """JSON text for the document, with colons escaped as `\\u003a` now and then, and, if
    `duplicate`, one object given a second copy of one of its keys."""
    text = json.dumps(document, ensure_ascii=rng.random() < 0.3)
    if rng.random() < 0.5:
        text = text.replace(":", "\\u003a") if '"' not in text else _escape_some_colons(text, rng)
    if duplicate:
        inside = _inside_strings(text)
        objects = [i for i, char in enumerate(text) if char == "{" and not inside[i]]
        if not objects:
            return text
        where = rng.choice(objects) + 1
        key = json.dumps(rng.choice(["a", "a:b", ":", "role", ""]))
        value = json.dumps(rng.choice([1, "x:y", {"n": ":"}, [":"]]))
        text = f"{text[:where]}{key}: {value}, {key}: {value}{'' if text[where] == '}' else ','}{text[where:]}"
    return text


def _inside_strings(text: str) -> list[bool]:
    """For each character of JSON text, whether it stands inside a string."""
    flags: list[bool] = []
    inside = escaped = False
    for char in text:
        flags.append(inside)
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            inside = not inside
    return flags


def _escape_some_colons(text: str, rng: random.Random) -> str:
    """Colons inside strings written as `\\u003a`, some of them."""
    inside = _inside_strings(text)
    return "".join(
        "\\u003a" if char == ":" and inside[index] and rng.random() < 0.5 else char
        for index, char in enumerate(text)
    )


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS, st.booleans(), st.integers(0, 2**32), st.booleans())
def test_parse_json_answers_as_the_strict_reference(
    document: Any, duplicate: bool, seed: int, as_bytes: bool
) -> None:
    text = render(document, random.Random(seed), duplicate)
    data: bytes | str = text.encode("utf-8", "surrogatepass") if as_bytes else text
    expected = outcome(reference, data)
    assert outcome(parse_json, data) == expected, text
    if expected[0] == "value":
        assert json.loads(dumps(parse_json(data))) == expected[1]


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "a": 2}',
        '{"a": {"x:": 1}, "a": {"y": "::"}}',  # the dropped copy held colons of its own
        '{"k": "\\\\u003a", "k": 1}',  # an escaped backslash before u003a, beside a repeat
        '{"k": "\\u003a", "k": "\\u003a"}',
        '[{"ok": 1}, {"b": 1, "c": [{"d": 1, "d": 1}]}]',
        '{"":1,"":1}',
        '{"a": NaN}',
        '{"a": -Infinity}',
        "[1, 2,]",
        '"\\ud800',
    ],
)
def test_what_must_be_refused_is(text: str) -> None:
    assert outcome(parse_json, text)[0] == "refused"
    assert outcome(parse_json, text.encode())[0] == "refused"
    with pytest.raises(MaskingError, match="not JSON that GeoGate can read"):
        load_json(text.encode(), "request body")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"id": 123456789012345678901234567890}', {"id": 123456789012345678901234567890}),
        ("[-9223372036854775809, 18446744073709551615]", [-9223372036854775809, 2**64 - 1]),
        ('{"s": "\\ud800"}', {"s": "\ud800"}),  # a lone surrogate: read, and written escaped
        ('{"a:b": "c\\u003ad", "e": "::"}', {"a:b": "c:d", "e": "::"}),
        ('{"k": "\\\\u003a"}', {"k": "\\u003a"}),
        ("\ufeff{}".encode().decode("utf-8"), None),  # a BOM in text is not JSON
    ],
)
def test_what_orjson_cannot_hold_is_read_whole(text: str, expected: Any) -> None:
    if expected is None:
        assert outcome(parse_json, text) == outcome(reference, text)
        return
    assert parse_json(text) == expected
    assert json.loads(dumps(parse_json(text))) == expected


def test_dumps_is_compact_utf8() -> None:
    document = {"a": "caf\u00e9 \u2028", "n": [1, 2.5, None, True], "big": 2**70}
    assert (
        dumps(document) == json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    )
    assert dumps({"s": "\ud800"}) == b'{"s":"\\ud800"}'
