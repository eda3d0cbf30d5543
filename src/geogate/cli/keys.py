"""`geogate keys`: create, list and revoke gateway API keys in the local state store."""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

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
from geogate.config import Config, parse_duration
from geogate.store import CreatedKey, KeyInfo

T = TypeVar("T")

app = typer.Typer(
    help="Create, list and revoke gateway API keys (gk_...) for users and service accounts.",
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
) -> None:
    """Create an API key; it is printed once and cannot be shown again."""
    created = create_key(
        open_config(config),
        owner=owner,
        service_account=service_account,
        groups=groups,
        expires=expires,
    )
    info = created.info
    if json_output:
        typer.echo(json.dumps({"id": info.id, "key": created.key, **key_json(info)}))
        return
    acting = f" acting as service account {info.service_account}" if info.service_account else ""
    expiry = format_time(info.expires_at)
    typer.echo(f"Created API key {info.id} for {info.owner}{acting}, expiring {expiry}.")
    typer.echo(f"\n    {created.key}\n")
    typer.echo("Store it now: this is the only time it is shown, and it cannot be recovered.")


@app.command("list")
def list_(json_output: JsonOption = False, config: ConfigOption = DEFAULT_CONFIG) -> None:
    """List keys (never the keys themselves), revoked and expired ones included."""
    keys = run_on_store(open_config(config), lambda store: store.list_keys())
    if json_output:
        typer.echo(json.dumps([key_json(info) for info in keys], indent=2))
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
    for info in keys:
        table.add_row(
            info.id,
            f"gk_{info.prefix}",
            info.owner,
            info.service_account or "",
            ", ".join(info.groups),
            format_time(info.created_at),
            format_time(info.expires_at),
            format_time(info.last_used_at),
            format_time(info.revoked_at),
        )
    print_table(table)


@app.command("revoke")
def revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="The key id, e.g. key_1a2b3c4d5e6f.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Revoke a key for good; gateways refuse it within a second."""
    if not run_on_store(open_config(config), lambda store: store.revoke_key(key_id)):
        fail(f"No API key {key_id!r}; `geogate keys list` shows the ids.")
    typer.echo(f"Revoked {key_id}.")


def create_key(
    config: Config,
    *,
    owner: str,
    service_account: str | None,
    groups: str,
    expires: str | None,
) -> CreatedKey:
    """`keys create` without the printing: checks the lifetime against the policy, then mints."""
    maximum = config.identity.api_keys.max_lifetime
    lifetime = maximum if expires is None else _lifetime(expires)
    if lifetime > maximum:
        fail(
            f"--expires {expires} is longer than identity.api_keys.max_lifetime "
            f"({format_duration(maximum)}); choose a shorter lifetime or raise the maximum "
            "in the policy file."
        )
    group_list = [group.strip() for group in groups.split(",") if group.strip()]
    return run_on_store(
        config,
        lambda store: store.create_key(
            owner.strip(),
            groups=group_list,
            expires_in=lifetime,
            service_account=service_account,
        ),
    )


def key_json(info: KeyInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "prefix": info.prefix,
        "owner": info.owner,
        "service_account": info.service_account,
        "groups": list(info.groups),
        "created_at": info.created_at.isoformat(),
        "expires_at": info.expires_at.isoformat(),
        "last_used_at": iso_time(info.last_used_at),
        "revoked_at": iso_time(info.revoked_at),
    }


def format_duration(seconds: float) -> str:
    """The largest whole unit the policy file would accept: 90d, 36h, 90s."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _lifetime(expires: str) -> float:
    try:
        seconds = parse_duration(expires)
    except ValueError as exc:
        fail(f"--expires: {exc}")
    if seconds <= 0:
        fail("--expires must be a positive duration such as 30d")
    return seconds
