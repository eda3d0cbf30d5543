"""The policy file loader: what loads, and every error at its exact line."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

from geogate.config import (
    Config,
    ConfigError,
    Problem,
    check_config,
    load_config,
    parse_config,
    quickstart_path,
)
from geogate.config.source import MAX_BYTES

DOCS = Path(__file__).resolve().parent.parent / "docs" / "policy.md"

SPEC_EXAMPLE = """\
version: 1

gateway:
  region: onprem:eu-dc1            # where this gateway runs; it is a hop like any other
  listen: 127.0.0.1:8080
  state: sqlite:///.geogate/state.db   # or postgresql://user@host/db
  recordings:
    store: file://.geogate/recordings  # any fsspec URL: file://, s3://, gs://, az://
    region: onprem:eu-dc1              # where that store is (file:// defaults to gateway.region)
    content: masked                    # masked | metadata
  audit_key: .geogate/audit.ed25519    # Ed25519 key that signs audit checkpoints; made if missing
  resolve:                             # static DNS answers, like curl --resolve
    llm.corp.example.eu: [10.20.3.4]

regions:                           # your own regions, beside the bundled catalog
  onprem:eu-dc1:
    jurisdiction: eu
    cidrs: [10.20.0.0/16]          # addresses that prove a destination is in this region
    hosts: ["*.corp.example.eu"]
  aws:eu-central-1:                # a catalog region may be extended with private addresses,
    cidrs: [10.30.0.0/16]          # e.g. the VPC of a PrivateLink endpoint

jurisdictions:                     # bundled: eu, eea, us, uk, ch, ca, au, jp, in, sg, br, kr, ...
  frankfurt-only: [aws:eu-central-1, azure:germanywestcentral]

identity:
  oidc:
    - issuer: https://login.example.com/
      audience: geogate
      groups_claim: groups         # dotted path allowed, e.g. realm_access.roles
      user_claim: email
  api_keys: {max_lifetime: 90d}

connections:
  openai-eu:
    type: openai
    url: https://eu.api.openai.com/v1
    credentials: {bearer: "${OPENAI_API_KEY}"}   # or {header: {NAME: VALUE}} | {aws: {...}} | none
  llm-internal:
    type: openai
    url: https://llm.corp.example.eu/v1
    region: onprem:eu-dc1
    agent: eu-dc1                  # runs through that network-resident agent
    timeout: 120s
    max_body: 10MB
    tls: {ca_file: /etc/ssl/corp-ca.pem}   # extra CA for this target; verification is never off

masking:
  custom:
    employee_id: {pattern: "EMP-[0-9]{6}"}
  sets:
    customer-pii: [us_ssn, credit_card, iban, email, phone]

policies:                          # first policy whose subjects AND connections match wins
  - name: support-eu
    subjects: {groups: [support-eu]}
    connections: [openai-eu, "llm-*"]
    regions: [eu]
    mask:
      request: [customer-pii]
      response: [us_ssn, credit_card]
      style: redact
      on_detect: mask
    record: masked
  - name: contractors
    subjects: {groups: [contractors]}
    connections: [openai-eu]
    regions: [eu]
    review:
      approvers: {groups: [security]}
      mode: hold
      timeout: 10m
      grant: 0s
"""

BASE = """\
version: 1
gateway:
  region: onprem:dc1
regions:
  onprem:dc1: {jurisdiction: eu}
connections:
  llm:
    type: openai
    url: https://llm.example.eu/v1
    region: onprem:dc1
    credentials: {bearer: "${API_KEY}"}
policies:
  - name: support
    subjects: {groups: [support]}
    connections: [llm]
    regions: [eu]
"""
ENV = {"API_KEY": "sk-base-secret-value"}


def errors(text: str, env: dict[str, str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), env=ENV if env is None else env)
    assert caught.value.problems, "a ConfigError always carries its problems"
    return caught.value.problems


def marked_line(text: str) -> int:
    """The 1-based line carrying the `# <-` marker: where the test expects the error."""
    lines = textwrap.dedent(text).splitlines()
    return next(number for number, line in enumerate(lines, 1) if "# <-" in line)


def test_quickstart_loads(tmp_path: Path) -> None:
    config = load_config(quickstart_path(), base_dir=tmp_path, env={})
    assert set(config.connections) == {"demo-openai", "demo-anthropic", "finance-llm"}
    assert [policy.name for policy in config.policies] == ["support-eu", "finance", "contractors"]
    assert config.gateway.state == f"sqlite:///{tmp_path}/.geogate/state.db"


def test_spec_example_is_refused_for_openai_eu_then_loads_with_its_notes(tmp_path: Path) -> None:
    """OpenAI's Europe region is the EEA plus Switzerland (docs/regions.md), so a policy kept
    inside `eu` that names `openai-eu` outright would refuse every call through it: policy
    check says so up front. Accepting openai:eu by name makes the SPEC example load."""
    path = tmp_path / "geogate.yaml"
    path.write_text(SPEC_EXAMPLE)
    refused = check_config(path, env={"OPENAI_API_KEY": "sk-spec"})
    assert [problem.message.split(": ", 1)[1] for problem in refused.errors] == [
        "policy 'support-eu' keeps data inside eu, but connection 'openai-eu' is in openai:eu: "
        "every call it grants would be refused; remove it here or widen the policy's regions",
        "policy 'contractors' keeps data inside eu, but connection 'openai-eu' is in openai:eu: "
        "every call it grants would be refused; remove it here or widen the policy's regions",
    ]
    path.write_text(SPEC_EXAMPLE.replace("regions: [eu]", "regions: [eu, openai:eu]"))
    result = check_config(path, env={"OPENAI_API_KEY": "sk-spec"})
    assert result.errors == []
    assert result.config is not None
    bearer = result.config.connections["openai-eu"].credentials
    assert bearer is not None and bearer.bearer == "sk-spec"
    internal = result.config.connections["llm-internal"]
    assert internal.timeout.first_byte == internal.timeout.idle == 120.0
    assert internal.max_body == 10_000_000
    assert result.config.policies[1].review is not None
    assert result.config.policies[1].review.timeout == 600.0
    notes = {note.line: note.message for note in result.notes}
    lines = SPEC_EXAMPLE.splitlines()
    assert lines.index("    - issuer: https://login.example.com/") + 1 not in notes
    assert (
        "agent_unavailable"
        in notes[
            lines.index(
                "    agent: eu-dc1" + " " * 18 + "# runs through that network-resident agent"
            )
            + 1
        ]
    )
    assert lines.index("    mask:") + 1 not in notes  # masking is enforced
    assert lines.index("    review:") + 1 not in notes  # reviews are enforced
    assert lines.index("  recordings:") + 1 not in notes  # recording is enforced
    record = next(n for n, line in enumerate(lines) if line.startswith("    record: masked"))
    assert record + 1 not in notes
    assert all(str(note).startswith(f"{path}:{note.line}: note: ") for note in result.notes)


@pytest.mark.parametrize(
    "doc",
    [DOCS, DOCS.with_name("masking.md"), DOCS.with_name("reviews.md")],
    ids=lambda doc: doc.name,
)
def test_docs_examples_load(tmp_path: Path, doc: Path) -> None:
    """Every complete example in a doc (a yaml block starting `version: 1`) loads."""
    blocks = re.findall(r"```yaml\n(.*?)```", doc.read_text(), flags=re.DOTALL)
    complete = [block for block in blocks if block.startswith("version: 1")]
    assert complete
    for block in complete:
        env = {
            "OPENAI_API_KEY": "sk-doc",
            "GEOGATE_WEBHOOK_SECRET": "whsec-doc-0123456789",
            "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T0/B0/doc",
        }
        parse_config(block, base_dir=tmp_path, env=env)


def test_problem_prints_like_a_compiler() -> None:
    assert str(Problem("geogate.yaml", 12, "boom")) == "geogate.yaml:12: boom"


BAD_FILES = {
    "unknown key with suggestion": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            urll: https://x.example.com   # <-
        """,
        "connections.llm: unknown key 'urll' (did you mean 'url'?)",
    ),
    "unknown top-level section": (
        """\
        version: 1
        conections: {}   # <-
        """,
        "unknown key 'conections' (did you mean 'connections'?)",
    ),
    "wrong connection type": (
        """\
        version: 1
        connections:
          openai-eu:
            type: openia   # <-
            url: https://x.example.com
        """,
        "connections.openai-eu.type: 'openia' is not one of openai, anthropic, bedrock, "
        "azure-openai, vertex, mistral, http, mcp (did you mean 'openai'?)",
    ),
    "missing required key at its parent": (
        """\
        version: 1
        connections:
          llm:   # <-
            type: openai
        """,
        "connections.llm: a connection takes either `url` or a list of `targets`",
    ),
    "missing version": (
        """\
        connections: {}   # <-
        """,
        "missing required key 'version'",
    ),
    "unsupported version": (
        """\
        version: 2   # <-
        """,
        "version: must be 1, not 2",
    ),
    "list where text is expected": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: [https://x.example.com]   # <-
        """,
        "connections.llm.url: expected text, got a list",
    ),
    "union of text or list": (
        """\
        version: 1
        identity:
          oidc:
            - issuer: https://login.example.com/
              audience: 5   # <-
        """,
        "identity.oidc[0].audience: expected text or a list, got a number",
    ),
    "bad duration": (
        """\
        version: 1
        identity:
          api_keys:
            max_lifetime: 3 weeks   # <-
        """,
        "'3 weeks' is not a duration; write it as 90s, 10m, 1h or 30d",
    ),
    "bad size": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com
            max_body: 10 zettabytes   # <-
        """,
        "connections.llm.max_body: '10 zettabytes' is not a size",
    ),
    "size too large to count": (
        f"""\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com
            max_body: {"9" * 400}MB   # <-
        """,
        "is too large",
    ),
    "infinite duration": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com
            timeout: .inf   # <-
        """,
        "connections.llm.timeout: a duration must be a finite number of seconds",
    ),
    "empty section": (
        """\
        version: 1
        gateway:   # <-
        connections: {}
        """,
        "gateway: expected a mapping, got nothing",
    ),
    "empty choice": (
        """\
        version: 1
        connections:
          llm:
            type:   # <-
            url: https://x.example.com
        """,
        "connections.llm.type: needs a value: one of openai, anthropic",
    ),
    "policy without connections": (
        """\
        version: 1
        policies:
          - name: p
            subjects: {groups: [g]}
            connections: []   # <-
        """,
        "policies[0].connections: needs at least 1 entry",
    ),
    "wrong item in a text-or-list union": (
        """\
        version: 1
        identity:
          oidc:
            - issuer: https://login.example.com/
              audience: [geogate, 42]   # <-
        """,
        "identity.oidc[0].audience[1]: expected text, got a number",
    ),
    "bad listen address": (
        """\
        version: 1
        gateway:
          listen: localhost   # <-
        """,
        "gateway.listen: 'localhost' is not HOST:PORT",
    ),
    "bad cidr": (
        """\
        version: 1
        regions:
          onprem:dc1:
            cidrs:
              - 10.20.0.0/16
              - 10.20.0.1/16   # <-
        """,
        "regions.onprem:dc1.cidrs[1]: '10.20.0.1/16' is not a network such as 10.20.0.0/16",
    ),
    "bad resolve address": (
        """\
        version: 1
        gateway:
          resolve:
            llm.example.eu: [10.0.0.300]   # <-
        """,
        "gateway.resolve.llm.example.eu[0]: '10.0.0.300' is not an IP address",
    ),
    "empty subjects": (
        """\
        version: 1
        connections:
          llm: {type: openai, url: "https://x.example.com"}
        policies:
          - name: p
            subjects: {}   # <-
            connections: [llm]
        """,
        "policies[0].subjects: subjects must name users, groups or service_accounts",
    ),
    "weak token algorithm": (
        """\
        version: 1
        identity:
          oidc:
            - issuer: https://login.example.com/
              audience: geogate
              algorithms: [HS256]   # <-
        """,
        "algorithms ['HS256'] are never accepted",
    ),
    "key that is not text": (
        """\
        version: 1
        123: x   # <-
        """,
        "key 123 must be text; quote it",
    ),
    "yaml syntax error": (
        """\
        version: 1
        gateway:
          listen: 127.0.0.1: 8080   # <-
          state: sqlite:///g.db
        """,
        "invalid YAML: mapping values are not allowed here",
    ),
    "unclosed flow mapping, at the end of the file": (
        """\
        version: 1
        connections:
          llm: {type: openai,
        # <-
        """,
        "invalid YAML",
    ),
    "tab indentation": (
        """\
        version: 1
        gateway:
        \tlisten: 127.0.0.1:8080   # <-
        """,
        "invalid YAML",
    ),
    "duplicate key": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com
            type: http   # <-
        """,
        "duplicate key 'type' (first at line 4)",
    ),
    "top level is a list": (
        """\
        - version: 1   # <-
        """,
        "the file must be a mapping",
    ),
    "several documents": (
        """\
        version: 1
        ---   # <-
        version: 1
        """,
        "several YAML documents",
    ),
    "alias": (
        """\
        version: 1
        policies:
          - name: a
            subjects: &who {groups: [x]}   # <-
            connections: [llm]
          - name: b
            subjects: *who
            connections: [llm]
        """,
        "YAML anchors (&name) are not supported",
    ),
    "alias without anchor": (
        """\
        version: 1
        gateway: *nowhere   # <-
        """,
        "YAML aliases (*name) are not supported",
    ),
    "tag": (
        """\
        version: 1
        gateway:
          listen: !!python/object:os.system ls   # <-
        """,
        "YAML tags (tag:yaml.org,2002:python/object:os.system) are not supported",
    ),
    "local tag": (
        """\
        version: 1
        gateway: !include other.yaml   # <-
        """,
        "YAML tags (!include) are not supported",
    ),
    "merge key": (
        """\
        version: 1
        gateway:
          <<: {listen: "127.0.0.1:9000"}   # <-
        """,
        "YAML merge keys (<<) are not supported",
    ),
    "complex key": (
        """\
        version: 1
        ? [a, b]   # <-
        : c
        """,
        "a key must be a plain word",
    ),
    "missing environment variable": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com
            credentials: {bearer: "${OPENAI_API_KEY}"}   # <-
        """,
        "connections.llm.credentials.bearer: environment variable OPENAI_API_KEY is not set",
    ),
    "malformed variable reference": (
        """\
        version: 1
        gateway:
          state: "postgresql://${DB HOST}/geogate"   # <-
        """,
        "'${' must start a variable reference ${NAME}",
    ),
    "policy names a missing connection": (
        """\
        version: 1
        connections:
          openai-eu: {type: openai, url: "https://x.example.com"}
        policies:
          - name: p
            subjects: {groups: [g]}
            connections:
              - opnai-eu   # <-
        """,
        "policies[0].connections[0]: unknown connection 'opnai-eu' (did you mean 'openai-eu'?)",
    ),
    "glob matching nothing": (
        """\
        version: 1
        connections:
          openai-eu: {type: openai, url: "https://x.example.com"}
        policies:
          - name: p
            subjects: {groups: [g]}
            connections: ["llm-*"]   # <-
        """,
        "policies[0].connections[0]: pattern 'llm-*' matches no connection",
    ),
    "duplicate policy name": (
        """\
        version: 1
        connections:
          llm: {type: openai, url: "https://x.example.com"}
        policies:
          - name: p
            subjects: {groups: [g]}
            connections: [llm]
          - name: p   # <-
            subjects: {groups: [h]}
            connections: [llm]
        """,
        "policies[1]: duplicate policy name 'p' (first at line 5)",
    ),
    "unknown gateway region": (
        """\
        version: 1
        gateway:
          region: onprem:nowhere   # <-
        """,
        "gateway.region: unknown region 'onprem:nowhere'",
    ),
    "jurisdiction where a region id is needed": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com
            region: eu   # <-
        """,
        "connections.llm.region: 'eu' is a jurisdiction; name the one region id",
    ),
    "unknown recordings region": (
        """\
        version: 1
        gateway:
          recordings:
            store: s3://bucket/recordings
            region: aws:eu-middle-9   # <-
        """,
        "gateway.recordings.region: unknown region 'aws:eu-middle-9'",
    ),
    "unknown policy region": (
        """\
        version: 1
        connections:
          llm: {type: openai, url: "https://x.example.com"}
        policies:
          - name: p
            subjects: {groups: [g]}
            connections: [llm]
            regions: [eu, atlantis]   # <-
        """,
        "policies[0].regions[1]: 'atlantis' is neither a region id nor a jurisdiction",
    ),
    "region the catalog refuses": (
        """\
        version: 1
        regions:
          mars:olympus-1: {jurisdiction: eu}   # <-
        """,
        "regions.mars:olympus-1: 'mars:olympus-1' is not in the region catalog",
    ),
    "unknown jurisdiction member": (
        """\
        version: 1
        jurisdictions:
          frankfurt-only:
            - aws:eu-central-1
            - aws:eu-centrl-1   # <-
        """,
        "jurisdictions.frankfurt-only[1]",
    ),
    "unknown mask entity": (
        """\
        version: 1
        connections:
          llm: {type: openai, url: "https://x.example.com"}
        policies:
          - name: p
            subjects: {groups: [g]}
            connections: [llm]
            mask:
              request: [us_ssn, emial]   # <-
        """,
        "policies[0].mask.request[1]: unknown entity or set 'emial' (did you mean 'email'?)",
    ),
    "unknown set member": (
        """\
        version: 1
        masking:
          sets:
            pii: [us_ssn, credit_cards]   # <-
        """,
        "masking.sets.pii[1]: unknown entity 'credit_cards' (did you mean 'credit_card'?)",
    ),
    "set inside a set": (
        """\
        version: 1
        masking:
          sets:
            pii: [us_ssn]
            more: [pii, email]   # <-
        """,
        "masking.sets.more[0]: sets cannot contain sets; list the entities of 'pii' instead",
    ),
    "custom entity shadows a built-in": (
        """\
        version: 1
        masking:
          custom:
            email: {pattern: "[a-z]+@corp"}   # <-
        """,
        "masking.custom: 'email' is the name of a built-in entity; rename it",
    ),
    "custom entity that does not compile": (
        """\
        version: 1
        masking:
          custom:
            employee_id: {pattern: "EMP-[0-9"}   # <-
        """,
        "masking.custom.employee_id: pattern does not compile",
    ),
    "pattern with an impossible repetition": (
        """\
        version: 1
        masking:
          custom:
            big: {pattern: "a{99999999999}"}   # <-
        """,
        "masking.custom.big: pattern does not compile: the repetition number is too large",
    ),
    "pattern nested too deeply for the regex compiler": (
        f"""\
        version: 1
        masking:
          custom:
            deep: {{pattern: "{"(" * 5000}{")" * 5000}"}}   # <-
        """,
        "masking.custom.deep: pattern does not compile",
    ),
    "url with a port out of range": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com:99999/v1   # <-
        """,
        "connections.llm.url: 'https://x.example.com:99999/v1' is not a valid URL: Port out of range",
    ),
    "url with a broken IPv6 literal": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: "http://[::1"   # <-
        """,
        "connections.llm.url: 'http://[::1' is not a valid URL: Invalid IPv6 URL",
    ),
    "plain http to a remote host": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: http://llm.example.com/v1   # <-
        """,
        "connections.llm.url: plain http:// is only allowed for loopback hosts or connections in "
        "an onprem: region; use https://",
    ),
    "empty bearer": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com
            credentials: {bearer: ""}   # <-
        """,
        "connections.llm.credentials.bearer: the value is empty",
    ),
    "two kinds of credentials": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://x.example.com
            credentials: {bearer: a-token, header: {x-api-key: b-token}}   # <-
        """,
        "connections.llm.credentials: credentials take exactly one of bearer, header, aws or google",
    ),
    "header value smuggling a second header": (
        """\
        version: 1
        connections:
          llm:
            type: anthropic
            url: https://x.example.com
            credentials:
              header:
                x-api-key: "abc\\r\\nx-admin: 1"   # <-
        """,
        "contains a line break or control character",
    ),
    "bad header name": (
        """\
        version: 1
        connections:
          llm:
            type: anthropic
            url: https://x.example.com
            credentials:
              header:
                "x api key": abc   # <-
        """,
        "connections.llm.credentials.header: 'x api key' is not a valid header name",
    ),
    "connection name not fit for a URL": (
        """\
        version: 1
        connections:
          OpenAI EU: {type: openai, url: "https://x.example.com"}   # <-
        """,
        "connections: connection name 'OpenAI EU' must be 1-63 lowercase letters",
    ),
    "path-escaping connection name": (
        """\
        version: 1
        connections:
          ../admin: {type: openai, url: "https://x.example.com"}   # <-
        """,
        "connection name '../admin' must be",
    ),
    "resolve entry that is not a host name": (
        """\
        version: 1
        gateway:
          resolve:
            llm.example.eu: [10.0.0.1]
            "bad_host!": [10.0.0.2]   # <-
        """,
        "gateway.resolve: 'bad_host!' is not a valid DNS host name",
    ),
    "url with user info": (
        """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://user:pass@x.example.com   # <-
        """,
        "is not an absolute http(s) URL without query, fragment or user info",
    ),
}


@pytest.mark.parametrize(("text", "expected"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_error_at_its_line(text: str, expected: str) -> None:
    problems = errors(text)
    line = marked_line(text)
    found = [problem for problem in problems if expected in problem.message]
    assert found, f"no problem says {expected!r}: {[str(p) for p in problems]}"
    assert found[0].line == line, [str(p) for p in problems]
    assert all(problem.file == "geogate.yaml" for problem in problems)


def test_all_problems_reported_sorted_by_line() -> None:
    text = """\
        version: 1
        gateway:
          region: onprem:nowhere
        connections:
          llm: {type: openai, url: "http://llm.example.com"}
        policies:
          - name: p
            subjects: {groups: [g]}
            connections: [lm]
            regions: [atlantis]
        """
    problems = errors(text)
    assert [problem.line for problem in problems] == [3, 5, 5, 9, 10]  # line 5: http, no region


def test_schema_errors_are_all_reported_together() -> None:
    text = """\
        version: 1
        gateway:
          listen: nowhere
        connections:
          llm: {type: gpt, url: "https://x.example.com", timeout: soon}
        """
    problems = errors(text)
    assert [problem.line for problem in problems] == [3, 5, 5]


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "# only a comment\n", "---\n", "~\n"],
    ids=["empty", "blank", "comment", "doc", "null"],
)
def test_empty_file_is_an_error(text: str) -> None:
    (problem,) = errors(text)
    assert problem.line == 1
    assert "empty" in problem.message


@pytest.mark.parametrize("text", ["just text\n", "42\n", "[1, 2]\n"])
def test_top_level_must_be_a_mapping(text: str) -> None:
    (problem,) = errors(text)
    assert (problem.line, problem.message) == (
        1,
        "the file must be a mapping of sections (version, connections, ...)",
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert problem.line == 0
    assert str(problem) == f"{path}:0: cannot read the policy file: No such file or directory"


def test_path_with_a_nul_byte() -> None:
    result = check_config("geo\0gate.yaml")
    assert result.config is None
    assert result.errors[0].line == 0
    assert "cannot read the policy file: embedded null byte" in result.errors[0].message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    result = check_config(tmp_path)
    assert result.config is None
    assert result.errors[0].line == 0
    assert "cannot read the policy file" in result.errors[0].message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "geogate.yaml"
    path.write_bytes(b"version: 1\ngateway:\n  listen: \xff\xfe\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.message) == (3, "the file is not valid UTF-8 text")


def test_utf8_bom_is_accepted() -> None:
    assert parse_config("\ufeffversion: 1\n").version == 1


def test_huge_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "geogate.yaml"
    path.write_text("version: 1\n" + "# padding\n" * (MAX_BYTES // 10 + 1))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "larger than 1024 KiB" in caught.value.problems[0].message


def test_yaml_bomb_is_refused() -> None:
    bomb = "version: 1\na: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(9)
    )
    (problem,) = errors(bomb)
    assert problem.line == 2
    assert "not supported" in problem.message


def test_deep_nesting_is_refused() -> None:
    (problem,) = errors("version: 1\ngateway: " + "[" * 5000 + "]" * 5000 + "\n")
    assert problem.line == 2
    assert "nested more than" in problem.message


def test_impossible_date_is_just_text() -> None:
    config = parse_config(
        "version: 1\nidentity:\n  oidc:\n"
        "    - {issuer: 'https://id.example', user_claim: 2024-13-45, audience: 2024-01-01}\n"
    )
    assert config.identity.oidc[0].user_claim == "2024-13-45"
    assert config.identity.oidc[0].audience == "2024-01-01"


# --- environment interpolation ---------------------------------------------------------------


def test_env_values_are_substituted() -> None:
    text = """\
        version: 1
        gateway:
          region: ${REGION}
          state: "postgresql://geogate@${DB_HOST}:5432/geogate"
        regions:
          onprem:dc1: {jurisdiction: eu}
        connections:
          llm:
            type: openai
            url: https://${LLM_HOST}/v1
            region: ${REGION}
            credentials: {header: {x-api-key: "${API_KEY}", x-tenant: "t-${TENANT}"}}
        policies:
          - name: p
            subjects: {groups: ["${GROUP}"]}
            connections: [llm]
        """
    env = {
        "REGION": "onprem:dc1",
        "DB_HOST": "db.internal",
        "LLM_HOST": "llm.example.eu",
        "API_KEY": "k-123456",
        "TENANT": "acme",
        "GROUP": "support",
    }
    config = parse_config(textwrap.dedent(text), env=env)
    assert config.gateway.region == "onprem:dc1"
    assert config.gateway.state == "postgresql://geogate@db.internal:5432/geogate"
    llm = config.connections["llm"]
    assert llm.url == "https://llm.example.eu/v1"
    assert llm.credentials is not None
    assert llm.credentials.header == {"x-api-key": "k-123456", "x-tenant": "t-acme"}
    assert config.policies[0].subjects.groups == ["support"]


def test_dollar_dollar_escapes_a_literal_reference() -> None:
    config = parse_config(
        'version: 1\nmasking:\n  custom:\n    tpl: {words: ["$${NOT_A_VAR} and $$ and $x"]}\n',
        env={},
    )
    assert config.masking.custom["tpl"].words == ["${NOT_A_VAR} and $$ and $x"]


def test_keys_are_not_interpolated() -> None:
    problems = errors("version: 1\n${SECTION}: {}\n", env={"SECTION": "gateway"})
    assert problems[0].message.startswith("unknown key '${SECTION}'")


def test_env_defaults_to_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEOGATE_TEST_LISTEN", "127.0.0.1:9999")
    config = parse_config('version: 1\ngateway: {listen: "${GEOGATE_TEST_LISTEN}"}\n')
    assert config.gateway.listen == "127.0.0.1:9999"


def test_missing_variable_reported_once_per_place() -> None:
    text = """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://eu.api.openai.com/v1
            credentials: {bearer: "${MISSING}"}
        """
    problems = errors(text, env={})
    assert [str(problem) for problem in problems] == [
        "geogate.yaml:6: connections.llm.credentials.bearer: "
        "environment variable MISSING is not set"
    ]


def test_empty_variable_names_the_variable() -> None:
    text = """\
        version: 1
        connections:
          llm:
            type: openai
            url: https://eu.api.openai.com/v1
            credentials: {bearer: "${API_KEY}"}
        """
    (problem,) = errors(text, env={"API_KEY": ""})
    assert problem.message.endswith("the value is empty (${API_KEY} is set but empty)")


# --- secrets never reach a message -----------------------------------------------------------

SECRET = "sk-live-9f8e7d6c5b4a39281706"

LEAKY_PLACES = {
    "url": "connections:\n  llm: {type: openai, url: 'ftp://${SECRET}'}\n",
    "type": "connections:\n  llm: {type: '${SECRET}', url: 'https://x.example.com'}\n",
    "listen": "gateway: {listen: '${SECRET}'}\n",
    "duration": "identity: {api_keys: {max_lifetime: '${SECRET}'}}\n",
    "size": (
        "connections:\n  llm: {type: openai, url: 'https://x.example.com', max_body: '${SECRET}'}\n"
    ),
    "region": "gateway: {region: '${SECRET}'}\n",
    "policy region": (
        "connections:\n  llm: {type: openai, url: 'https://x.example.com'}\n"
        "policies:\n  - {name: p, subjects: {groups: [g]}, connections: [llm], "
        "regions: ['${SECRET}']}\n"
    ),
    "policy connection": (
        "connections:\n  llm: {type: openai, url: 'https://x.example.com'}\n"
        "policies:\n  - {name: p, subjects: {groups: [g]}, connections: ['${SECRET}']}\n"
    ),
    "mask entity": (
        "connections:\n  llm: {type: openai, url: 'https://x.example.com'}\n"
        "policies:\n  - {name: p, subjects: {groups: [g]}, connections: [llm], "
        "mask: {request: ['${SECRET}']}}\n"
    ),
    "cidr": "regions:\n  onprem:dc1: {cidrs: ['${SECRET}']}\n",
    "credential in a bad place": (
        "connections:\n  llm: {type: openai, url: 'https://x.example.com', "
        "credentials: {bearer: '${SECRET}', beare: '${SECRET}'}}\n"
    ),
    "credential with a line break": (
        "connections:\n  llm: {type: openai, url: 'https://x.example.com', "
        'credentials: {bearer: "${SECRET}\\n"}}\n'
    ),
    "literal credential": (
        f"connections:\n  llm: {{type: openai, url: 'http://x.example.com', "
        f"credentials: {{bearer: {SECRET}, header: {{a: b}}}}}}\n"
    ),
    "literal credential as a string": (
        "connections:\n  llm: {type: openai, url: 'https://x.example.com', "
        f"credentials: {SECRET}}}\n"
    ),
    "partial interpolation": "gateway: {listen: 'host-${SECRET}'}\n",
}


@pytest.mark.parametrize("body", LEAKY_PLACES.values(), ids=LEAKY_PLACES.keys())
def test_secrets_never_appear_in_messages(body: str) -> None:
    problems = errors("version: 1\n" + body, env={"SECRET": SECRET})
    printed = "\n".join(str(problem) for problem in problems)
    assert SECRET not in printed
    assert SECRET[:12] not in printed


def test_credentials_keyword_none_is_not_scrubbed() -> None:
    (problem,) = errors(
        "version: 1\nconnections:\n  llm: {type: openai, url: 'https://x.example.com', "
        "credentials: none}\n  b: {type: openai, url: 'https://x.example.com', credentials: {}}\n"
    )
    assert problem.message.endswith("exactly one of bearer, header, aws or google (or `none`)")


def test_interpolated_value_is_shown_as_written() -> None:
    (problem,) = errors("version: 1\ngateway: {region: '${REGION}'}\n", env={"REGION": "onprem:x"})
    assert problem.message == (
        "gateway.region: unknown region '${REGION}'; see `geogate regions list`, "
        "or declare it under `regions:`"
    )


# --- relative paths --------------------------------------------------------------------------

PATHS = """\
version: 1
gateway:
  state: {state}
  recordings: {{store: "{store}"}}
  audit_key: {audit_key}
connections:
  llm:
    type: openai
    url: https://eu.api.openai.com/v1
    tls: {{ca_file: {ca_file}}}
"""


def paths(tmp_path: Path, **values: str) -> Config:
    defaults = {
        "state": "sqlite:///state.db",
        "store": "file://recordings",
        "audit_key": "keys/audit.ed25519",
        "ca_file": "certs/ca.pem",
    }
    return parse_config(PATHS.format(**(defaults | values)), base_dir=tmp_path, env={})


def test_relative_paths_resolve_against_base_dir(tmp_path: Path) -> None:
    config = paths(tmp_path)
    assert config.gateway.state == f"sqlite:///{tmp_path}/state.db"
    assert config.gateway.state.startswith("sqlite:////")
    assert config.gateway.recordings.store == f"file://{tmp_path}/recordings"
    assert config.gateway.audit_key == f"{tmp_path}/keys/audit.ed25519"
    assert config.connections["llm"].tls.ca_file == f"{tmp_path}/certs/ca.pem"


def test_absolute_and_remote_locations_are_kept(tmp_path: Path) -> None:
    config = paths(
        tmp_path,
        state="postgresql://geogate@db/geogate",
        store="s3://bucket/recordings",
        audit_key="/etc/geogate/audit.ed25519",
        ca_file="/etc/ssl/corp-ca.pem",
    )
    assert config.gateway.state == "postgresql://geogate@db/geogate"
    assert config.gateway.recordings.store == "s3://bucket/recordings"
    assert config.gateway.audit_key == "/etc/geogate/audit.ed25519"
    assert config.connections["llm"].tls.ca_file == "/etc/ssl/corp-ca.pem"
    assert (
        paths(tmp_path, state="sqlite:////var/lib/g.db").gateway.state == "sqlite:////var/lib/g.db"
    )
    assert paths(tmp_path, state="'sqlite:///:memory:'").gateway.state == "sqlite:///:memory:"
    assert paths(tmp_path, store="file:///srv/rec").gateway.recordings.store == "file:///srv/rec"


def test_sqlite_driver_and_query_are_kept(tmp_path: Path) -> None:
    config = paths(tmp_path, state="'sqlite+aiosqlite:///data/g.db?timeout=5'")
    assert config.gateway.state == f"sqlite+aiosqlite:///{tmp_path}/data/g.db?timeout=5"


def test_bare_store_path_becomes_a_file_url(tmp_path: Path) -> None:
    assert paths(tmp_path, store="recordings").gateway.recordings.store == (
        f"file://{tmp_path}/recordings"
    )


def test_paths_default_to_the_policy_file_folder(tmp_path: Path) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "geogate.yaml").write_text("version: 1\n")
    config = load_config(folder / "geogate.yaml", env={})
    assert config.gateway.state == f"sqlite:///{folder}/.geogate/state.db"
    assert config.gateway.recordings.store == f"file://{folder}/.geogate/recordings"


def test_relative_base_dir_is_made_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = parse_config("version: 1\n", base_dir="sub", env={})
    assert config.gateway.audit_key == os.path.join(tmp_path, "sub", ".geogate/audit.ed25519")


# --- accepted without errors -----------------------------------------------------------------


def test_base_config_loads() -> None:
    config = parse_config(BASE, env=ENV)
    credentials = config.connections["llm"].credentials
    assert credentials is not None and credentials.bearer == ENV["API_KEY"]


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("http://127.0.0.1:8090/v1", "aws:eu-central-1"),  # e.g. a local tunnel to a cloud
        ("http://localhost:8090", "aws:eu-central-1"),
        ("http://[::1]:8090", "aws:eu-central-1"),
        ("http://llm.corp.example.eu/v1", "onprem:dc1"),
    ],
)
def test_plain_http_allowed_for_loopback_and_onprem(url: str, region: str) -> None:
    text = (
        "version: 1\nregions:\n  onprem:dc1: {jurisdiction: eu}\nconnections:\n  llm:\n"
        f"    type: http\n    url: {url}\n    region: {region}\n    credentials: none\n"
    )
    assert parse_config(text, env={}).connections["llm"].url == url


def test_check_config_without_extras_has_no_notes(tmp_path: Path) -> None:
    path = tmp_path / "geogate.yaml"
    path.write_text(
        "version: 1\nconnections:\n  llm: {type: openai, url: 'https://eu.api.openai.com/v1'}\n"
    )
    result = check_config(path, env={})
    assert (result.errors, result.notes) == ([], [])
    assert result.config is not None


def test_check_config_notes_unsupported_types_at_their_line(tmp_path: Path) -> None:
    path = tmp_path / "geogate.yaml"
    path.write_text(
        "version: 1\nconnections:\n  tools:\n    type: mcp\n"
        "    url: https://mcp.corp.example/sse\n    region: onprem:dc\n"
        "regions:\n  onprem:dc: {jurisdiction: eu}\n"
    )
    (note,) = check_config(path, env={}).notes
    assert note.line == 4
    assert note.message.startswith("note: connection type 'mcp' is not supported yet")


def test_a_recording_store_that_cannot_be_opened_is_an_error_at_its_line() -> None:
    text = "version: 1\ngateway:\n  recordings:\n    store: gs://audit/geogate\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, filename="geogate.yaml")
    assert "geogate.yaml:4: gateway.recordings.store" in str(caught.value)
    assert "gcsfs" in str(caught.value)  # what to install
    s3 = parse_config(text.replace("gs://", "s3://"), filename="geogate.yaml")
    assert s3.gateway.recordings.store == "s3://audit/geogate"
