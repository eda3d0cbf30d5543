"""Options and helpers every command group shares."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from geogate.config import Config, ConfigError, load_config, quickstart_path

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
