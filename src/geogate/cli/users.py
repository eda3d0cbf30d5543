"""`geogate users`: list users and (de)activate them, which switches off all their keys.

Without `--gateway` they act on the local state store of the policy file; with it, on that
gateway's admin API (see `geogate.cli.admin`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from geogate.cli.admin import act, parse_time
from geogate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    GatewayOption,
    JsonOption,
    TokenOption,
    format_time,
    open_config,
    print_table,
)

app = typer.Typer(
    help="List users and deactivate or reactivate them (their keys stop or resume working).",
    no_args_is_help=True,
)

UserArgument = Annotated[str, typer.Argument(metavar="USER", help="The login or email.")]


@app.command("list")
def list_(
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """List the users the gateway knows, active or not."""
    users = act(lambda: open_config(config), gateway, token, lambda admin: admin.list_users())
    if json_output:
        typer.echo(json.dumps(users, indent=2))
        return
    table = Table(
        "User", "Active", "Created", "Deactivated", box=box.SIMPLE, caption="Times in UTC."
    )
    for user in users:
        table.add_row(
            user["name"],
            "yes" if user.get("active") else "no",
            format_time(parse_time(user.get("created_at"))),
            format_time(parse_time(user.get("deactivated_at"))),
        )
    print_table(table)


@app.command("deactivate")
def deactivate(
    user: UserArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Deactivate a user: their tokens, keys and service-account keys are refused at once."""
    _set_active(user, False, config, gateway, token)
    typer.echo(f"Deactivated {user}; calls with their keys are refused from now on.")


@app.command("activate")
def activate(
    user: UserArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Reactivate a user: their keys that are neither revoked nor expired work again."""
    _set_active(user, True, config, gateway, token)
    typer.echo(f"Activated {user}.")


def _set_active(
    user: str, active: bool, config: Path, gateway: str | None, token: str | None
) -> None:
    act(lambda: open_config(config), gateway, token, lambda admin: admin.set_active(user, active))
