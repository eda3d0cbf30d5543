"""`geogate regions`: the region catalog and jurisdictions that policies' `regions:` refer to."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from geogate.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, fail, open_config
from geogate.residency import Region, catalog_for

app = typer.Typer(
    help="The region catalog: region ids, their countries and the jurisdictions they lie in.",
    no_args_is_help=True,
)


# The callback keeps `list` a subcommand: typer turns an app with a lone command into that command.
@app.callback()
def regions() -> None:
    """Region ids (provider:region), countries and jurisdictions, plus the policy file's own."""


JurisdictionOption = Annotated[
    str | None,
    typer.Option(
        "--jurisdiction",
        "-j",
        metavar="J",
        help="Only regions inside this jurisdiction (eu, eea, uk, a country code, or your own).",
    ),
]


@app.command("list")
def list_(
    jurisdiction: JurisdictionOption = None,
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """List the bundled regions and the policy file's own, with where each one lies."""
    loaded = open_config(config)
    catalog = catalog_for(loaded.regions, loaded.jurisdictions)
    if jurisdiction is not None and not catalog.is_jurisdiction(jurisdiction):
        fail(
            f"No jurisdiction {jurisdiction!r}: use eu, eea, uk, a lowercase two-letter country "
            "code such as de, or one defined under `jurisdictions:` in the policy file."
        )
    regions = catalog.regions(jurisdiction)
    if json_output:
        typer.echo(json.dumps([_as_json(region) for region in regions], indent=2))
        return
    table = Table("Region", "Country", "Jurisdictions", caption=f"{len(regions)} regions")
    for region in regions:
        table.add_row(
            region.id,
            region.country or "-",
            ", ".join(sorted(region.jurisdictions)) or "none",
        )
    Console().print(table)


def _as_json(region: Region) -> dict[str, object]:
    return {
        "id": region.id,
        "provider": region.provider,
        "name": region.name,
        "country": region.country,
        "jurisdictions": sorted(region.jurisdictions),
        "cidrs": [str(network) for network in region.cidrs],
        "hosts": list(region.hosts),
    }
