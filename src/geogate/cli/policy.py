"""`geogate policy`: validate the policy file, and ask it who may use what and why.

`explain` runs the very `decide` function the gateway runs on every call, so its answer is what
the data path would do for that caller (before masking, review and destination checks), and
what those steps will ask: what is masked, and who must approve.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from geogate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    fail,
    fail_lines,
    resolve_config_path,
)
from geogate.config import Config, ConfigError, Problem, check_config, load_config
from geogate.identity import Principal
from geogate.policy import Decision, compile_policy
from geogate.residency import catalog_for

app = typer.Typer(
    help="Check the policy file, and explain who may use which connection and why.",
    no_args_is_help=True,
)


@app.command("check")
def check(json_output: JsonOption = False, config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Validate the policy file: exit 1 with one `FILE:LINE: message` line per problem."""
    file, base_dir = resolve_config_path(config)
    result = check_config(file, base_dir=base_dir)
    if json_output:
        typer.echo(
            json.dumps(
                {
                    "ok": result.config is not None,
                    "file": str(file),
                    "connections": len(result.config.connections) if result.config else None,
                    "policies": len(result.config.policies) if result.config else None,
                    "errors": [_problem_json(problem) for problem in result.errors],
                    "notes": [_problem_json(problem) for problem in result.notes],
                },
                indent=2,
            )
        )
        if result.config is None:
            raise typer.Exit(1)
        return
    if result.config is None:
        fail_lines([str(problem) for problem in result.errors])
    connections, policies = len(result.config.connections), len(result.config.policies)
    typer.echo(f"OK: {connections} connections, {policies} policies ({file})")
    for note in result.notes:
        typer.echo(str(note))


def _problem_json(problem: Problem) -> dict[str, object]:
    return {"file": problem.file, "line": problem.line, "message": problem.message}


@app.command("explain")
def explain(
    user: Annotated[
        str, typer.Option("--user", help="The caller (or, with --service-account, its owner).")
    ],
    connection: Annotated[str, typer.Option("--connection", help="The connection to ask about.")],
    groups: Annotated[
        str, typer.Option("--groups", help="Comma-separated groups the caller is in.")
    ] = "",
    service_account: Annotated[
        str | None,
        typer.Option("--service-account", help="Ask as this service account, owned by --user."),
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Show whether a caller may use a connection, which policy decides, and why.

    Exits 0 whenever an answer was produced, allowed or not; 2 on a usage or policy file error.
    """
    if not user.strip():
        fail("--user must name the caller, e.g. --user alice@example.com", code=2)
    if service_account is not None and not service_account.strip():
        fail("--service-account must not be empty", code=2)
    loaded = _load(config)
    principal = Principal(
        subject=f"sa:{service_account}" if service_account else user,
        user=user,
        groups=frozenset(group.strip() for group in groups.split(",") if group.strip()),
        service_account=service_account,
        method="api_key",
        credential_id=None,
    )
    compiled = compile_policy(loaded, catalog_for(loaded.regions, loaded.jurisdictions))
    decision = compiled.decide(principal, connection)
    if json_output:
        typer.echo(json.dumps(decision.to_json(), indent=2))
    else:
        typer.echo(_describe(decision))


def _load(path: Path) -> Config:
    """The policy file, or exit 2: explain is a query, so a broken file is a usage error."""
    file, base_dir = resolve_config_path(path)
    try:
        return load_config(file, base_dir=base_dir)
    except ConfigError as exc:
        fail_lines([str(problem) for problem in exc.problems], code=2)


def _describe(decision: Decision) -> str:
    verdict = "ALLOWED" if decision.allowed else f"DENIED ({decision.code})"
    lines = [f"{verdict}: {decision.message}", f"policy: {decision.policy_name or '-'}", "why:"]
    lines += [f"  - {reason}" for reason in decision.reasons]
    rule = decision.policy.mask if decision.allowed and decision.policy else None
    if rule is not None:
        lines.append(
            f"mask: request {', '.join(rule.request) or '-'}; response "
            f"{', '.join(rule.response) or '-'}; style {rule.style}; on_detect {rule.on_detect}"
        )
    review = decision.policy.review if decision.allowed and decision.policy else None
    if review is not None:
        approvers = [*review.approvers.users, *(f"group {g}" for g in review.approvers.groups)]
        lines.append(
            f"review: {review.mode}, {review.min_approvals} approval(s) from "
            f"{', '.join(approvers)}; timeout {review.timeout:g}s; grant {review.grant:g}s"
            + (
                "; only requests with findings"
                if rule is not None and rule.on_detect == "review"
                else ""
            )
        )
    if decision.hops:
        lines.append("hops:")
        width = max(len(hop.name) for hop in decision.hops)
        lines += [
            f"  {hop.name:<{width}}  {hop.region or '(undeclared)':<24}  "
            f"{'inside' if hop.inside else 'OUTSIDE'}"
            for hop in decision.hops
        ]
    return "\n".join(lines)
