"""Options and helpers every command group shares."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from geogate.config import Config, ConfigError, load_config, quickstart_path
from geogate.store import Store, StoreError, open_store

T = TypeVar("T")

DEFAULT_CONFIG = Path("geogate.yaml")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config",
        "-c",
        help="Policy file; without one in the current folder, the bundled quickstart is used.",
        envvar="GEOGATE_CONFIG",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
GatewayOption = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        help="Act on this gateway's admin API instead of the local state store.",
        envvar="GEOGATE_URL",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="An API key or OIDC token for --gateway; default: the one `geogate login` saved.",
        envvar="GEOGATE_TOKEN",
        show_default=False,
    ),
]


def resolve_config_path(path: Path) -> tuple[Path, Path]:
    """(file to load, folder its relative paths are taken from).

    The default `./geogate.yaml` falls back to the bundled quickstart, whose relative paths
    (state, recordings) then live in the current folder.
    """
    if path == DEFAULT_CONFIG and not path.exists():
        return quickstart_path(), Path.cwd()
    return path, path.resolve().parent


def open_config(path: Path) -> Config:
    """Load the policy file or exit 1 printing `FILE:LINE: message` lines."""
    file, base_dir = resolve_config_path(path)
    try:
        return load_config(file, base_dir=base_dir)
    except ConfigError as exc:
        fail_lines([str(problem) for problem in exc.problems])


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def fail_lines(lines: list[str], code: int = 1) -> NoReturn:
    for line in lines:
        print(line, file=sys.stderr)
    raise typer.Exit(code)


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (an IPv6 host in brackets, `[::1]:8090`) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise typer.BadParameter(
            f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:8090", param_hint="--listen"
        )
    return host, int(port)


def run_on_store(config: Config, action: Callable[[Store], Awaitable[T]]) -> T:
    """Open the policy's state store, run `action` on it, close it; a refusal exits 1."""

    async def run() -> T:
        async with await open_store(config.gateway.state) as store:
            return await action(store)

    try:
        return asyncio.run(run())
    except StoreError as exc:
        fail(str(exc))


def iso_time(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat()


def print_table(table: Table) -> None:
    """Print at the table's natural width, also into a pipe: a cut-off key id is useless."""
    probe = Console()
    width = Measurement.get(probe, probe.options.update(max_width=10_000), table).maximum
    Console(width=width).print(table)


def format_time(when: datetime | None) -> str:
    """Minutes are enough to read; `--json` has the exact time."""
    return "" if when is None else when.strftime("%Y-%m-%d %H:%M")
