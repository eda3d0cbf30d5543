"""Turning pydantic's validation errors into `FILE:LINE: message` problems a user can act on.

Messages describe what was found ("got a list") instead of echoing the input, so a value read
from the environment or a credential never reaches a terminal or a CI log.
"""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from geogate.config.model import Config
from geogate.config.source import Document, Loc

_KINDS = {
    "string_type": "text",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}
"""Error types that only say "wrong kind of value"; several at one place come from a union."""
MAX_SHOWN = 60
"""Longer inputs are described, not quoted, in messages."""


def validate(document: Document) -> Config | None:
    """The validated model, or None with every schema problem added to `document`."""
    try:
        return Config.model_validate(document.data)
    except ValidationError as exc:
        _report(document, exc.errors(include_url=False))
        return None


def _report(document: Document, errors: list[ErrorDetails]) -> None:
    located = [(error, *_data_loc(document.data, error)) for error in errors]
    # A union (`text | list`) fails once per member; when the input had a member's shape
    # (a list), only that member's deeper errors say what is wrong.
    deeper = {base for _, loc, base in located if base is not None and len(loc) > len(base)}
    expected: dict[Loc, tuple[list[str], object]] = {}
    for error, loc, base in located:
        if base is not None and loc == base and base in deeper:
            continue
        kind = _KINDS.get(error["type"])
        if kind is None:
            _report_one(document, loc, error)
            continue
        kinds, _ = expected.setdefault(loc, ([], error["input"]))
        if kind not in kinds:
            kinds.append(kind)
    for loc, (kinds, found) in expected.items():
        document.error(loc, f"expected {' or '.join(kinds)}, got {_kind(found)}")


def _data_loc(data: object, error: ErrorDetails) -> tuple[Loc, Loc | None]:
    """Pydantic's loc without what is not in the file (union member tags, `[key]` markers),
    and the loc of the union the error came from, if any."""
    loc: list[str | int] = []
    union: Loc | None = None
    node = data
    parts = error["loc"]
    for index, part in enumerate(parts):
        in_file, child = _child(node, part)
        if in_file:
            node = child
        elif not (error["type"] == "missing" and index == len(parts) - 1):
            if union is None:
                union = tuple(loc)
            continue
        loc.append(part)
    return tuple(loc), union


def _child(node: object, part: str | int) -> tuple[bool, object]:
    """Whether `part` is a key or index present at `node`, and the value there."""
    if isinstance(node, dict):
        return part in node, node.get(part)
    if isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
        return True, node[part]
    return False, None


def _report_one(document: Document, loc: Loc, error: ErrorDetails) -> None:
    kind = error["type"]
    found = error["input"]
    if kind == "missing":
        document.error(loc, f"missing required key {loc[-1]!r}", label=loc[:-1])
    elif kind == "extra_forbidden":
        key = str(loc[-1])
        fields = _annotation_fields(_annotation_at(loc[:-1]))
        document.error(loc, f"unknown key {key!r}{_suggest(key, fields)}", label=loc[:-1])
    elif kind == "too_short":
        document.error(loc, f"needs at least {error.get('ctx', {}).get('min_length', 1)} entry")
    elif kind == "literal_error":
        document.error(loc, _not_a_choice(document, loc, found))
    elif kind == "ip_any_address":
        document.error(loc, f"{_shown(document, loc, found)} is not an IP address")
    elif kind == "ip_any_network":
        document.error(
            loc,
            f"{_shown(document, loc, found)} is not a network such as 10.20.0.0/16 "
            "(the address part must end where the prefix does)",
        )
    else:
        message = error["msg"].removeprefix("Value error, ")
        if loc in document.templates and isinstance(found, str) and found:
            shown = document.show(loc, found)
            message = message.replace(repr(found), shown).replace(found, shown)
        document.error(loc, message)


def _not_a_choice(document: Document, loc: Loc, found: object) -> str:
    choices = [str(choice) for choice in _literal_choices(_annotation_at(loc))]
    allowed = choices[0] if len(choices) == 1 else f"one of {', '.join(choices)}"
    if found is None:
        return f"needs a value: {allowed}"
    shown = _shown(document, loc, found)
    if len(choices) == 1:
        return f"must be {allowed}, not {shown}"
    hint = _suggest(found, choices) if isinstance(found, str) else ""
    return f"{shown} is not {allowed}{hint}"


def _shown(document: Document, loc: Loc, found: object) -> str:
    if loc in document.templates:
        return document.show(loc, found)
    if isinstance(found, str) and len(found) <= MAX_SHOWN:
        return repr(found)
    if isinstance(found, bool | int | float) or found is None:
        return repr(found)
    return _kind(found)


def _kind(found: object) -> str:
    if found is None:
        return "nothing"
    if isinstance(found, bool):
        return "true/false"
    if isinstance(found, int | float):
        return "a number"
    if isinstance(found, str):
        return "text"
    if isinstance(found, list):
        return "a list"
    return "a mapping"


def _suggest(word: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if candidates:
        return f" (expected one of {', '.join(candidates)})"
    return ""


def _annotation_at(loc: Loc) -> object:
    """The schema type of the setting at `loc`, found by walking the model classes."""
    annotation: object = Config
    for part in loc:
        annotation = _step(annotation, part)
    return annotation


def _step(annotation: object, part: str | int) -> object:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if origin is Annotated:
        return _step(args[0], part)
    if origin in (Union, types.UnionType):
        for member in args:
            found = _step(member, part)
            if found is not None:
                return found
        return None
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict and isinstance(part, str):
        return args[1]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
        field = annotation.model_fields.get(part)
        return field.annotation if field is not None else None
    return None


def _unwrap(annotation: object) -> list[object]:
    """The concrete types an annotation allows (Annotated and unions opened up)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _unwrap(arg)]
    return [annotation]


def _annotation_fields(annotation: object) -> list[str]:
    return [
        name
        for member in _unwrap(annotation)
        if isinstance(member, type) and issubclass(member, BaseModel)
        for name in member.model_fields
    ]


def _literal_choices(annotation: object) -> list[object]:
    return [
        choice
        for member in _unwrap(annotation)
        if get_origin(member) is Literal
        for choice in get_args(member)
    ]
