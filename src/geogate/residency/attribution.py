"""Which region a provider's host name puts a connection in, from the name alone.

    attribute_url("https://bedrock-runtime.eu-central-1.amazonaws.com")
    # Attribution("aws:eu-central-1", "host bedrock-runtime.eu-central-1.amazonaws.com is AWS
    #             Bedrock's eu-central-1 endpoint", endpoint_attested=True)

Only host names under a provider's own domain are read, and each pattern matches the whole name,
so a lookalike (`api.openai.com.evil.example`, `evil-bedrock-runtime...`) never attributes. The
region a host names must be in the bundled catalog. Everything else, loopback and internal names
included, gets no attribution: its region has to be declared in the policy file. This is a claim
about where the provider says the endpoint is; `destinations.py` checks the addresses it resolves
to before any data is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from geogate.residency.catalog import GLOBAL, bundled_catalog


@dataclass(frozen=True, slots=True)
class Attribution:
    """The region a host is in, and why GeoGate believes it."""

    region: str
    """A region id of the bundled catalog."""
    basis: str
    """One sentence of evidence, for messages and records."""
    endpoint_attested: bool
    """The provider documents that this host processes data in `region`; False for hosts that
    may process anywhere (`*:global`) or only store data in-region."""


@dataclass(frozen=True, slots=True)
class Unattributable:
    """A provider's host that GeoGate recognises but cannot place by its name."""

    reason: str
    """Why, and what the policy file must say instead; completes "no region is declared, and"."""
    named_region: str | None = None
    """The region id the host names when the catalog does not know it (a made-up or new region)."""


Verdict = Attribution | Unattributable | None

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_AWS_SUFFIX = {"amazonaws.com": "aws", "amazonaws.com.cn": "aws-cn", "amazonaws.eu": "aws-eusc"}
_BEDROCK = re.compile(
    r"(?P<service>bedrock(?:-agent)?(?:-runtime)?)(?P<fips>-fips)?\.(?P<region>[a-z0-9-]+)"
    r"\.(?P<suffix>amazonaws\.com|amazonaws\.com\.cn|amazonaws\.eu)"
)
_BEDROCK_VPCE = re.compile(
    r"vpce-[a-z0-9]+(?:-[a-z0-9]+)*\.(?P<service>bedrock(?:-agent)?(?:-runtime)?)(?P<fips>-fips)?"
    r"\.(?P<region>[a-z0-9-]+)\.vpce\.(?P<suffix>amazonaws\.com|amazonaws\.com\.cn|amazonaws\.eu)"
)
_VERTEX_LOCATIONAL = re.compile(r"(?P<location>[a-z0-9-]+)-aiplatform(?:\.mtls)?\.googleapis\.com")
_VERTEX_REP = re.compile(r"aiplatform\.(?P<location>[a-z0-9-]+)\.rep\.googleapis\.com")
_VERTEX_UNGUARANTEED = re.compile(r"me-.*")
"""Google documents no in-region ML processing for its Middle East Vertex endpoints."""
_OPENAI_REGIONAL = re.compile(r"(?P<region>[a-z]{2})\.api\.openai\.com")
_OPENAI_PROCESSING = frozenset({"us", "eu"})
"""OpenAI regions that process in-region; the others store there but may process elsewhere."""
_MISTRAL_REGIONAL = re.compile(r"api\.(?P<region>[a-z]{2})\.mistral\.ai")
_AZURE = re.compile(
    rf"{_LABEL}\.(?:openai\.azure\.com|cognitiveservices\.azure\.com|services\.ai\.azure\.com)"
)
_GLOBAL_HOSTS = {
    "api.openai.com": ("openai", "OpenAI's global API"),
    "api.anthropic.com": ("anthropic", "Anthropic's API (its geography is set per request)"),
    "api.mistral.ai": ("mistral", "Mistral's global API"),
    "codestral.mistral.ai": ("mistral", "Mistral's global Codestral API"),
    "aiplatform.googleapis.com": ("gcp", "Vertex AI's global endpoint"),
    "aiplatform.mtls.googleapis.com": ("gcp", "Vertex AI's global endpoint"),
    "generativelanguage.googleapis.com": ("gcp", "Google's Gemini API"),
}


def attribute_host(host: str) -> Attribution | None:
    """The region a provider's host name puts it in, or None (case-insensitive, trailing dot
    ignored). Pure: no DNS, no network."""
    verdict = classify_host(host)
    return verdict if isinstance(verdict, Attribution) else None


def attribute_url(url: str) -> Attribution | None:
    """`attribute_host` for an http(s) URL's host; None for URLs with user info."""
    verdict = classify_url(url)
    return verdict if isinstance(verdict, Attribution) else None


def classify_url(url: str) -> Verdict:
    """`classify_host` for an http(s) URL; a URL with user info (`api.openai.com:443@evil...`)
    is never attributed, whatever its host."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or "@" in parts.netloc or not parts.hostname:
        return None
    return classify_host(parts.hostname)


def classify_host(host: str) -> Verdict:
    """An attribution, a recognised provider host that names no known region, or None."""
    name = _normalise(host)
    if name is None:
        return None
    for rule in _RULES:
        verdict = rule(name)
        if verdict is not None:
            return verdict
    return None


def _normalise(host: str) -> str | None:
    name = host[:-1] if host.endswith(".") else host
    if not name or not name.isascii() or len(name) > 253:
        return None
    return name.lower()


def _known(region_id: str) -> bool:
    return bundled_catalog().get(region_id) is not None


def _named(host: str, region_id: str, basis: str, attested: bool) -> Verdict:
    """The attribution for a host that names `region_id`, if the catalog knows that region."""
    if region_id.partition(":")[2] == GLOBAL:
        return None  # `global` in a regional slot is not a region the provider names
    if not _known(region_id):
        return Unattributable(
            f"host {host} names {region_id}, which is not in the region catalog; fix the URL "
            "(`geogate regions list` shows the known regions)",
            named_region=region_id,
        )
    return Attribution(region_id, basis, attested)


def _aws_partition(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("eusc-"):
        return "aws-eusc"
    return "aws"


def _bedrock(host: str) -> Verdict:
    match = _BEDROCK.fullmatch(host)
    private = False
    if match is None:
        match = _BEDROCK_VPCE.fullmatch(host)
        private = True
    if match is None:
        return None
    region = match["region"]
    if _AWS_SUFFIX[match["suffix"]] != _aws_partition(region):
        return None  # e.g. a China region under amazonaws.com: no such endpoint
    service = (
        "Bedrock"
        + {
            "bedrock": "",
            "bedrock-runtime": " Runtime",
            "bedrock-agent": " Agents",
            "bedrock-agent-runtime": " Agents Runtime",
        }[match["service"]]
    )
    fips = " FIPS" if match["fips"] else ""
    basis = (
        f"host {host} is a PrivateLink endpoint for AWS {service}{fips} in {region}"
        if private
        else f"host {host} is AWS {service}'s {region}{fips} endpoint"
    )
    return _named(host, f"aws:{region}", basis, attested=True)


def _vertex(host: str) -> Verdict:
    match = _VERTEX_LOCATIONAL.fullmatch(host) or _VERTEX_REP.fullmatch(host)
    if match is None:
        return None
    location = match["location"]
    attested = not _VERTEX_UNGUARANTEED.fullmatch(location)
    what = "multi-region" if location in ("eu", "us") else "regional"
    basis = f"host {host} is Vertex AI's {location} {what} endpoint"
    if not attested:
        basis += ", for which Google does not document in-region ML processing"
    return _named(host, f"gcp:{location}", basis, attested)


def _openai(host: str) -> Verdict:
    match = _OPENAI_REGIONAL.fullmatch(host)
    if match is None:
        return None
    region = match["region"]
    attested = region in _OPENAI_PROCESSING
    what = "processes data there" if attested else "stores data there but may process it elsewhere"
    basis = f"host {host} is OpenAI's {region} data-residency endpoint, which {what}"
    return _named(host, f"openai:{region}", basis, attested)


def _mistral(host: str) -> Verdict:
    match = _MISTRAL_REGIONAL.fullmatch(host)
    if match is None:
        return None
    region = match["region"]
    basis = f"host {host} is Mistral's {region} regional inference endpoint"
    return _named(host, f"mistral:{region}", basis, attested=True)


def _global(host: str) -> Verdict:
    known = _GLOBAL_HOSTS.get(host)
    if known is None:
        return None
    provider, what = known
    return Attribution(
        f"{provider}:{GLOBAL}",
        f"host {host} is {what}, which may process anywhere",
        endpoint_attested=False,
    )


def _azure(host: str) -> Verdict:
    if _AZURE.fullmatch(host) is None:
        return None
    return Unattributable(
        f"host {host} is Azure OpenAI, whose host names do not say which region the resource "
        "is in; declare `region:` with the resource's Azure region, e.g. azure:swedencentral "
        "(with a Standard deployment: Global and Data Zone deployments may process elsewhere)"
    )


_RULES: tuple[Callable[[str], Verdict], ...] = (
    _global,
    _bedrock,
    _vertex,
    _openai,
    _mistral,
    _azure,
)
