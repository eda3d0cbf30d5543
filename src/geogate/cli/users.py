"""`geogate users`: list users and (de)activate them, which switches off all their keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from geogate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    fail,
    format_time,
    iso_time,
    open_config,
    print_table,
    run_on_store,
)

app = typer.Typer(
    help="List users and deactivate or reactivate them (their keys stop or resume working).",
    no_args_is_help=True,
)

UserArgument = Annotated[str, typer.Argument(metavar="USER", help="The login or email.")]


@app.command("list")
def list_(json_output: JsonOption = False, config: ConfigOption = DEFAULT_CONFIG) -> None:
    """List the users the gateway knows, active or not."""
    users = run_on_store(open_config(config), lambda store: store.list_users())
    if json_output:
        rows = [
            {
                "name": user.name,
                "active": user.active,
                "created_at": user.created_at.isoformat(),
                "deactivated_at": iso_time(user.deactivated_at),
            }
            for user in users
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(
        "User", "Active", "Created", "Deactivated", box=box.SIMPLE, caption="Times in UTC."
    )
    for user in users:
        table.add_row(
            user.name,
            "yes" if user.active else "no",
            format_time(user.created_at),
            format_time(user.deactivated_at),
        )
    print_table(table)


@app.command("deactivate")
def deactivate(user: UserArgument, config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Deactivate a user: their keys and service-account keys are refused within a second."""
    _set_active(user, active=False, config=config)
    typer.echo(f"Deactivated {user}; calls with their keys are refused from now on.")


@app.command("activate")
def activate(user: UserArgument, config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Reactivate a user: their keys that are neither revoked nor expired work again."""
    _set_active(user, active=True, config=config)
    typer.echo(f"Activated {user}.")


def _set_active(user: str, *, active: bool, config: Path) -> None:
    if not run_on_store(open_config(config), lambda store: store.set_user_active(user, active)):
        fail(
            f"No user {user!r}; `geogate users list` shows the users "
            "(a user appears once they get an API key or sign in)."
        )
