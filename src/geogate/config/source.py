"""Reading the policy file into plain data that remembers, for every key and item, its line.

The file is untrusted input (it may come from a pull request), so this layer refuses what YAML
can do beyond plain data: aliases (the "billion laughs" bomb), tags, merge keys, several
documents, deep nesting and huge files. `${NAME}` is replaced from the environment here, and
the values it brings in are remembered so no error message ever prints them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.reader import ReaderError

from geogate.config.errors import ConfigError, Problem

Loc = tuple[str | int, ...]
"""A position in the policy file's data: keys and list indexes from the top."""

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32
"""Far deeper than the schema goes; bounds the parser's and validator's recursion."""
SECRET_MIN_LENGTH = 4
"""Shorter values are not scrubbed from messages: they would blot out ordinary words."""

_ENV_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


class _Constructor(RoundTripConstructor):
    """Dates stay text: the schema has none, and an impossible date must not crash loading."""

    def construct_yaml_timestamp(self, node: Any, values: Any = None) -> Any:
        return self.construct_scalar(node)


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", _Constructor.construct_yaml_timestamp)


@dataclass
class Document:
    """The policy file as plain data, plus what is needed to report problems in it."""

    filename: str
    data: object = None
    lines: dict[Loc, int] = field(default_factory=dict)
    """Line (1-based) of every key and list item; a scalar value's own line when it has one."""
    templates: dict[Loc, str] = field(default_factory=dict)
    """The text as written for every string that took `${NAME}` values, shown instead of them."""
    secrets: set[str] = field(default_factory=set)
    """Environment values and connection credentials: scrubbed from every message."""
    unresolved: set[Loc] = field(default_factory=set)
    """Strings with a missing variable: already reported, so later checks stay quiet on them."""
    problems: list[Problem] = field(default_factory=list)
    notes: list[Problem] = field(default_factory=list)

    def line(self, loc: Loc) -> int:
        """The line of `loc`, or of its nearest parent the file spells out."""
        for end in range(len(loc), 0, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return 1

    def show(self, loc: Loc, value: object) -> str:
        """`value` quoted for a message, or the text as written if it came from the environment."""
        return repr(self.templates.get(loc, value))

    def error(self, loc: Loc, message: str, *, label: Loc | None = None) -> None:
        """Record a problem at the line of `loc`, prefixed by the setting's dotted name (`label`,
        default `loc`), unless it follows from a variable already reported."""
        if any(loc[: len(known)] == known for known in self.unresolved):
            return
        name = dotted(loc if label is None else label)
        text = f"{name}: {message}" if name else message
        self.problems.append(Problem(self.filename, self.line(loc), text))

    def note(self, loc: Loc, message: str) -> None:
        """Record something valid that this version does not act on yet."""
        self.notes.append(Problem(self.filename, self.line(loc), f"note: {message}"))

    def report(self, problems: list[Problem]) -> list[Problem]:
        """`problems` made safe to print: scrubbed once every secret in the file is known."""
        return [Problem(p.file, p.line, self.scrub(p.message)) for p in problems]

    def scrub(self, message: str) -> str:
        """Last line of defence: no message may carry a credential or an environment value."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= SECRET_MIN_LENGTH:
                message = message.replace(secret, "***")
        return message


def dotted(loc: Loc) -> str:
    """`connections.openai-eu.url`, `policies[0].subjects`: how a user names a setting."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else part
    return text


def read_document(raw: bytes, filename: str, env: Mapping[str, str]) -> Document:
    """Parse `raw` into a `Document`; syntax errors raise, `${NAME}` problems are collected."""
    document = Document(filename)
    if len(raw) > MAX_BYTES:
        _fail(document, 1, f"the file is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        _fail(document, line, "the file is not valid UTF-8 text")
    if text.startswith("\ufeff"):
        text = text[1:]
    _check_events(document, text)
    root = _load(document, text)
    if root is None:
        _fail(document, 1, "the file is empty; it needs at least `version: 1`")
    if not isinstance(root, CommentedMap):
        _fail(document, 1, "the file must be a mapping of sections (version, connections, ...)")
    document.data = _Converter(document, env).convert(root, ())
    document.secrets.update(_credential_strings(document.data))
    return document


def _fail(document: Document, line: int, message: str) -> NoReturn:
    raise ConfigError([*document.problems, Problem(document.filename, line, message)])


def _events(text: str) -> Iterator[Event]:
    yield from YAML(typ="rt").parse(text)


@dataclass
class _Frame:
    """An open collection while scanning events: a mapping tracks its keys and whose turn it is."""

    keys: dict[str, int] | None
    """Keys seen so far, to their line; None for a sequence."""
    expecting_key: bool = True

    def node_done(self) -> None:
        if self.keys is not None:
            self.expecting_key = not self.expecting_key


def _check_events(document: Document, text: str) -> None:
    """Refuse YAML features that are not plain data before anything is built from them."""
    frames: list[_Frame] = []
    documents = 0
    with _yaml_errors(document, text):
        for event in _events(text):
            line = event.start_mark.line + 1
            if isinstance(event, DocumentStartEvent):
                documents += 1
                if documents > 1:
                    _fail(document, line, "the file holds several YAML documents; keep one")
            elif isinstance(event, AliasEvent):
                _fail(document, line, "YAML aliases (*name) are not supported; write the value out")
            elif isinstance(event, NodeEvent):
                _check_node(document, event, line, frames)
            elif isinstance(event, CollectionEndEvent):
                frames.pop()
                if frames:
                    frames[-1].node_done()


def _check_node(document: Document, event: NodeEvent, line: int, frames: list[_Frame]) -> None:
    if event.anchor is not None:
        _fail(document, line, "YAML anchors (&name) are not supported; write the value out")
    tag = getattr(event, "tag", None)
    if tag is not None:
        _fail(document, line, f"YAML tags ({tag}) are not supported; write plain values")
    parent = frames[-1] if frames else None
    if parent is not None and parent.keys is not None and parent.expecting_key:
        if not isinstance(event, ScalarEvent):
            _fail(document, line, "a key must be a plain word, not a list or mapping")
        if event.value == "<<" and not event.style:
            _fail(document, line, "YAML merge keys (<<) are not supported; write the keys out")
        first = parent.keys.get(event.value)
        if first is None:
            parent.keys[event.value] = line
        else:
            document.problems.append(
                Problem(
                    document.filename,
                    line,
                    f"duplicate key {event.value!r} (first at line {first})",
                )
            )
    if isinstance(event, CollectionStartEvent):
        if len(frames) >= MAX_DEPTH:
            _fail(document, line, f"the file is nested more than {MAX_DEPTH} levels deep")
        frames.append(_Frame({} if isinstance(event, MappingStartEvent) else None))
    elif parent is not None:
        parent.node_done()


def _load(document: Document, text: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    yaml.allow_duplicate_keys = True  # already reported, with both lines, by _check_events
    with _yaml_errors(document, text):
        return yaml.load(text)


@contextmanager
def _yaml_errors(document: Document, text: str) -> Iterator[None]:
    """Turn whatever the YAML library raises on untrusted text into a `ConfigError`."""
    try:
        yield
    except ConfigError:
        raise
    except MarkedYAMLError as exc:
        _syntax_error(document, text, exc)
    except ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        _fail(document, line, f"invalid YAML: character {exc.character:#06x} is not allowed")
    except Exception as exc:  # a parser bug on odd input must still end as a ConfigError
        _fail(document, 1, f"invalid YAML: the text cannot be parsed ({type(exc).__name__})")


def _syntax_error(document: Document, text: str, exc: MarkedYAMLError) -> NoReturn:
    """Report at the problem's line (never past the last one), naming where the construct
    that could not be finished began."""
    last_line = max(1, len(text.splitlines()))
    problem, context = exc.problem_mark, exc.context_mark
    line = min(problem.line + 1, last_line) if problem is not None else 1
    start = min(context.line + 1, last_line) if context is not None else line
    message = exc.problem or "the text cannot be parsed"
    if exc.context:
        message += f" ({exc.context}{f' from line {start}' if start != line else ''})"
    _fail(document, line, f"invalid YAML: {message}")


class _Converter:
    """Turns the ruamel tree into dicts, lists and scalars, noting lines and `${NAME}` uses."""

    def __init__(self, document: Document, env: Mapping[str, str]) -> None:
        self.document = document
        self.env = env

    def convert(self, node: object, loc: Loc) -> object:
        if isinstance(node, CommentedMap):
            result: dict[str, object] = {}
            for key, value in node.items():
                if not isinstance(key, str):
                    line = node.lc.key(key)[0] + 1
                    self.document.problems.append(
                        Problem(self.document.filename, line, f"key {key!r} must be text; quote it")
                    )
                    continue
                child = (*loc, str(key))
                # a scalar's own line, unless it is absent (`key:` alone) or a whole block
                scalar = value is not None and _is_scalar(value)
                position = node.lc.value(key) if scalar else node.lc.key(key)
                self._note_line(position, child)
                result[str(key)] = self.convert(value, child)
            return result
        if isinstance(node, CommentedSeq):
            items: list[object] = []
            for index, value in enumerate(node):
                self._note_line(node.lc.item(index), (*loc, index))
                items.append(self.convert(value, (*loc, index)))
            return items
        return self._scalar(node, loc)

    def _note_line(self, position: tuple[int, int], loc: Loc) -> None:
        self.document.lines[loc] = position[0] + 1

    def _scalar(self, value: object, loc: Loc) -> object:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int):
            return int(value)
        if isinstance(value, float):
            return float(value)
        if isinstance(value, str):
            return self._interpolate(str(value), loc)
        self.document.error(loc, f"unsupported YAML value of type {type(value).__name__}")
        return None

    def _interpolate(self, text: str, loc: Loc) -> str:
        """`${NAME}` -> the variable's value; `$${` -> a literal `${`."""
        if "${" not in text:
            return text
        used: list[str] = []

        def replace(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            name = match.group(1)
            if name is None:
                self.document.error(
                    loc,
                    "'${' must start a variable reference ${NAME} (letters, digits, _); "
                    "write $${ for a literal ${",
                )
                self.document.unresolved.add(loc)
                return ""
            value = self.env.get(name)
            if value is None:
                self.document.error(loc, f"environment variable {name} is not set")
                self.document.unresolved.add(loc)
                return ""
            used.append(value)
            return value

        result = _ENV_REFERENCE.sub(replace, text)
        if used:
            self.document.templates[loc] = text
            self.document.secrets.update(used)
            self.document.secrets.add(result)
        return result


def _is_scalar(value: object) -> bool:
    return not isinstance(value, CommentedMap | CommentedSeq)


def _credential_strings(data: object) -> Iterator[str]:
    """Every string under `connections.*.credentials`, whatever shape the file gives it."""
    connections = data.get("connections") if isinstance(data, dict) else None
    if not isinstance(connections, dict):
        return
    for connection in connections.values():
        credentials = connection.get("credentials") if isinstance(connection, dict) else None
        if credentials != "none":  # the keyword for "no credentials", not a secret
            yield from _strings(credentials)


def _strings(node: object) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
