"""`geogate mask`: the gateway's masking engine on stdin, to try data and policies.

echo "SSN 123-45-6789" | geogate mask --style partial     # SSN ***-**-6789
geogate mask --json < ticket.txt                          # findings with offsets
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from geogate.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, fail, open_config
from geogate.config import BUILTIN_ENTITIES, Config, MaskRule
from geogate.dlp import DataBlocked, MaskingError, PatternError
from geogate.dlp.masker import Style
from geogate.dlp.plan import load_key, plan_for
from geogate.dlp.vault import Vault


def mask(
    config_path: ConfigOption = DEFAULT_CONFIG,
    entities: Annotated[
        str | None,
        typer.Option(
            "--entities",
            help="Comma-separated entities or sets (default: every built-in and custom one).",
            show_default=False,
        ),
    ] = None,
    style: Annotated[
        str, typer.Option("--style", help="redact | partial | hash | tokenize")
    ] = "redact",
    policy: Annotated[
        str | None,
        typer.Option(
            "--policy",
            help="Mask as this policy masks requests (its entities, style and on_detect).",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Mask stdin and print it; --json adds each finding with offsets into the input."""
    config = open_config(config_path)
    rule = _rule(config, entities, style, policy)
    text = sys.stdin.read()
    try:
        plan = plan_for(config, rule, _key(config, rule))
    except PatternError as exc:
        fail(str(exc))
    if plan.request is None:
        fail("No entities to look for; name some with --entities.")
    masker = plan.start(Vault(plan.key, "cli") if rule.style == "tokenize" else None).request
    assert masker is not None
    findings = plan.request.find(text)
    try:
        masked = masker.mask(text)
    except DataBlocked as exc:
        fail(f"data_blocked: {exc}", code=3)
    except MaskingError as exc:
        fail(str(exc))
    if as_json:
        document = {
            "text": masked,
            "findings": [
                {"entity": found.entity, "start": found.start, "end": found.end}
                for found in findings
            ],
        }
        typer.echo(json.dumps(document, ensure_ascii=False))
    else:
        sys.stdout.write(masked)


def _rule(config: Config, entities: str | None, style: str, policy: str | None) -> MaskRule:
    if policy is not None:
        chosen = next((p for p in config.policies if p.name == policy), None)
        if chosen is None or chosen.mask is None:
            fail(f"No policy named {policy!r} with a `mask` block in the policy file.")
        return chosen.mask
    if style not in ("redact", "partial", "hash", "tokenize"):
        fail(f"--style must be redact, partial, hash or tokenize, not {style!r}.")
    names = (
        [name.strip() for name in entities.split(",") if name.strip()]
        if entities is not None
        else sorted(BUILTIN_ENTITIES | set(config.masking.custom))
    )
    known = BUILTIN_ENTITIES | set(config.masking.custom) | set(config.masking.sets)
    unknown = [name for name in names if name not in known]
    if unknown:
        fail(f"Unknown entities or sets: {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
    chosen_style: Style = style  # type: ignore[assignment]  # checked just above
    return MaskRule(request=names, style=chosen_style)


def _key(config: Config, rule: MaskRule) -> bytes:
    """The deployment's key, so `hash` here matches the gateway's; other styles need none."""
    return load_key(config.masking.key) if rule.style in ("hash", "tokenize") else b""
