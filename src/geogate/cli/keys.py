"""`geogate keys` and `geogate service-accounts`: gateway API keys and who they act as.

Without `--gateway` they act on the local state store of the policy file; with it, on that
gateway's admin API (see `geogate.cli.admin`).
"""

from __future__ import annotations

import json
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
    fail,
    format_time,
    open_config,
    print_table,
)
from geogate.config import parse_duration
from geogate.identity.accounts import format_duration

__all__ = ["app", "format_duration", "service_accounts"]

app = typer.Typer(
    help="Create, list and revoke gateway API keys (gk_...) for users and service accounts.",
    no_args_is_help=True,
)
service_accounts = typer.Typer(
    help="List service accounts: the non-human identities API keys can act as.",
    no_args_is_help=True,
)


@app.command("create")
def create(
    owner: Annotated[str, typer.Option("--owner", help="The accountable user (login or email).")],
    service_account: Annotated[
        str | None,
        typer.Option(
            "--service-account", help="Make the key act as this service account, owned by --owner."
        ),
    ] = None,
    groups: Annotated[
        str, typer.Option("--groups", help="Comma-separated groups the key carries.")
    ] = "",
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="Lifetime such as 30d or 12h; default and most: identity.api_keys.max_lifetime.",
        ),
    ] = None,
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Create an API key; it is printed once and cannot be shown again."""
    if expires is not None:
        _check_lifetime(expires)
    group_list = [group.strip() for group in groups.split(",") if group.strip()]
    created = act(
        lambda: open_config(config),
        gateway,
        token,
        lambda admin: admin.create_key(owner.strip(), service_account, group_list, expires),
    )
    if json_output:
        rest = {name: value for name, value in created.items() if name not in ("id", "key")}
        typer.echo(json.dumps({"id": created["id"], "key": created["key"], **rest}))
        return
    acting = created.get("service_account")
    acting_text = f" acting as service account {acting}" if acting else ""
    expiry = format_time(parse_time(created.get("expires_at")))
    typer.echo(
        f"Created API key {created['id']} for {created['owner']}{acting_text}, expiring {expiry}."
    )
    typer.echo(f"\n    {created['key']}\n")
    typer.echo("Store it now: this is the only time it is shown, and it cannot be recovered.")


@app.command("list")
def list_(
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """List keys (never the keys themselves), revoked and expired ones included."""
    keys = act(lambda: open_config(config), gateway, token, lambda admin: admin.list_keys())
    if json_output:
        typer.echo(json.dumps(keys, indent=2))
        return
    table = Table(
        "ID",
        "Prefix",
        "Owner",
        "Service account",
        "Groups",
        "Created",
        "Expires",
        "Last used",
        "Revoked",
        box=box.SIMPLE,
        caption="Times in UTC.",
    )
    for key in keys:
        table.add_row(
            key["id"],
            f"gk_{key['prefix']}",
            key["owner"],
            key.get("service_account") or "",
            ", ".join(key.get("groups", [])),
            *(
                format_time(parse_time(key.get(field)))
                for field in ("created_at", "expires_at", "last_used_at", "revoked_at")
            ),
        )
    print_table(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key id, e.g. key_1a2b3c4d5e6f.")],
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Revoke a key for good; gateways refuse it within a second."""
    act(lambda: open_config(config), gateway, token, lambda admin: admin.revoke_key(key_id))
    typer.echo(f"Revoked {key_id}.")


@service_accounts.command("list")
def list_service_accounts(
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """List service accounts with their owner and how many of their keys still work."""
    accounts = act(
        lambda: open_config(config), gateway, token, lambda admin: admin.list_service_accounts()
    )
    if json_output:
        typer.echo(json.dumps(accounts, indent=2))
        return
    table = Table(
        "Name",
        "Owner",
        "Owner active",
        "Groups",
        "Live keys",
        "Created",
        box=box.SIMPLE,
        caption="Live keys are neither revoked nor expired; times in UTC.",
    )
    for account in accounts:
        table.add_row(
            account["name"],
            account["owner"],
            "yes" if account.get("owner_active") else "no",
            ", ".join(account.get("groups", [])),
            str(account.get("keys", "")),
            format_time(parse_time(account.get("created_at"))),
        )
    print_table(table)


def _check_lifetime(expires: str) -> None:
    """Refuse a malformed --expires before asking anyone; the maximum is the gateway's to check."""
    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        fail(f"--expires: {exc}")
    if seconds <= 0:
        fail("--expires must be a positive duration such as 30d")
