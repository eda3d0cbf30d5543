"""Whatever bytes arrive as a policy file, the loader answers with a Config or a ConfigError."""

from __future__ import annotations

import io
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from geogate.config import Config, ConfigError, parse_config, quickstart_path
from tests.test_config import SPEC_EXAMPLE

ENV = {"OPENAI_API_KEY": "sk-property-secret", "HOST": "llm.example.eu"}
SETTINGS = settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VALID_FILES = [SPEC_EXAMPLE, quickstart_path().read_text()]

KEYS = st.sampled_from(
    [
        "version", "gateway", "region", "regions", "connections", "policies", "url", "type",
        "credentials", "bearer", "header", "subjects", "groups", "mask", "review", "name",
        "jurisdictions", "masking", "sets", "custom", "identity", "oidc", "listen", "state",
        "onprem:dc1", "aws:eu-central-1", "llm", "timeout", "max_body", "tls", "ca_file",
    ]
)  # fmt: skip
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.sampled_from(
        ["openai", "http://127.0.0.1:1", "https://x.example.com", "eu", "10MB", "90s", "${HOST}",
         "${MISSING}", "$${", "${", "1", "onprem:dc1", "*", "llm-*", "sqlite:///x.db", "none",
         "9" * 400 + "MB", "9" * 400 + "s", "-1s", "0s", "10.0.0.0/8", "10.0.0.1", "::1",
         "127.0.0.1:8080", "${OPENAI_API_KEY}", "a\r\nb", "", "http://[::1", "https://x:99999",
         "http://[zz]", "a{99999999999}", "(" * 2000]
    ),
)  # fmt: skip
TREES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(KEYS, st.text(max_size=8)), children, max_size=5),
    ),
    max_leaves=30,
)


def outcome(text: str) -> Config | ConfigError:
    try:
        return parse_config(text, env=ENV)
    except ConfigError as exc:
        return exc


def assert_well_formed(result: Config | ConfigError) -> None:
    if isinstance(result, ConfigError):
        assert result.problems
        for problem in result.problems:
            assert problem.line >= 1
            assert problem.message.strip()
            assert ENV["OPENAI_API_KEY"] not in problem.message
        assert [p.line for p in result.problems] == sorted(p.line for p in result.problems)


def dump(tree: Any) -> str:
    stream = io.StringIO()
    YAML(typ="rt").dump(tree, stream)
    return stream.getvalue()


@SETTINGS
@given(st.text(max_size=300))
def test_random_text_never_crashes(text: str) -> None:
    assert_well_formed(outcome(text))


@SETTINGS
@given(
    st.lists(
        st.sampled_from(
            ["version: 1", "connections:", "  llm:", "    type: openai", "    url: https://x.eu",
             "- ", "  - [", "]", "{", "}", ": ", "&a x", "*a", "!!str x", "? ", "---", "'", '"',
             "\t", "#", "${X}", "policies:", "  - name: p", "    subjects: {groups: [g]}",
             "    connections: [llm]", "<<: {}", "%YAML 1.1", "\x00", "\ufeff", "é"]
        ),
        max_size=12,
    )
)  # fmt: skip
def test_random_yaml_fragments_never_crash(lines: list[str]) -> None:
    assert_well_formed(outcome("\n".join(lines)))


@SETTINGS
@given(TREES)
def test_random_structures_never_crash(tree: Any) -> None:
    assert_well_formed(outcome(dump(tree)))


@SETTINGS
@given(st.dictionaries(KEYS, TREES, max_size=6))
def test_random_top_level_sections_never_crash(sections: dict[str, Any]) -> None:
    assert_well_formed(outcome(dump({"version": 1, **sections})))


def fields(*names: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(names), st.one_of(SCALARS, TREES), max_size=len(names))


@SETTINGS
@given(
    fields("region", "listen", "state", "recordings", "audit_key", "resolve"),
    fields("type", "url", "region", "agent", "credentials", "timeout", "max_body", "tls"),
    fields("name", "subjects", "connections", "regions", "mask", "record", "review"),
)
def test_random_values_in_real_places_never_crash(
    gateway: dict[str, Any], connection: dict[str, Any], policy: dict[str, Any]
) -> None:
    tree = {
        "version": 1,
        "gateway": gateway,
        "connections": {"llm": connection},
        "policies": [policy],
    }
    assert_well_formed(outcome(dump(tree)))


@SETTINGS
@given(st.sampled_from(VALID_FILES), st.data())
def test_mutated_valid_files_never_crash(text: str, data: st.DataObject) -> None:
    lines = text.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    action = data.draw(st.sampled_from(["delete", "duplicate", "dedent", "indent", "truncate"]))
    line = lines[index]
    if action == "delete":
        del lines[index]
    elif action == "duplicate":
        lines.insert(index, line)
    elif action == "dedent":
        lines[index] = line.lstrip()
    elif action == "indent":
        lines[index] = "  " + line
    else:
        lines[index] = line[: data.draw(st.integers(0, len(line)))]
    assert_well_formed(outcome("\n".join(lines) + "\n"))
