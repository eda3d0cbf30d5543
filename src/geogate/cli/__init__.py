"""The `geogate` command: one typer sub-app per command group (SPEC §5)."""

from __future__ import annotations

import typer

from geogate.cli import (
    audit,
    demo,
    keys,
    login,
    mask,
    policy,
    regions,
    reviews,
    sessions,
    up,
    users,
)

app = typer.Typer(
    name="geogate",
    help="GeoGate: the identity-aware gateway that proves where AI calls send data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("up")(up.up)
app.command("demo-llm")(demo.demo_llm)
app.add_typer(policy.app, name="policy")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(keys.service_accounts, name="service-accounts")
app.command("login")(login.login)
app.command("logout")(login.logout)
app.add_typer(regions.app, name="regions")
app.command("mask")(mask.mask)
app.add_typer(audit.app, name="audit")
app.add_typer(sessions.app, name="sessions")
app.add_typer(reviews.app, name="reviews")


def main() -> None:
    app()
