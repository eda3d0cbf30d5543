"""Compiling the policy file into lookup tables, and the pure `decide` function."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass, field

from geogate.config import SUPPORTED_TYPES, Config, Connection, Policy
from geogate.identity import Principal
from geogate.residency import Catalog


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the protocol adapter read cheaply from the request."""

    model: str | None = None
    geo: str | None = None
    """A geography the request itself asks for: Anthropic's `inference_geo`."""
    bedrock_model: str | None = None
    """The model id or ARN in a Bedrock path (`/model/{id}/converse`)."""
    location: str | None = None
    """The location in a Vertex path (`.../locations/{location}/...`)."""


_NO_FACTS = RequestFacts()
_ANTHROPIC_GLOBAL = "anthropic:global"
_BEDROCK_ARN = re.compile(r"arn:aws[a-z-]*:bedrock:([a-z0-9-]+):[0-9]*:[a-z-]+/(.+)")
_PROFILE_GEOGRAPHIES: dict[str, str | None] = {
    "us": "us",
    "us-gov": "us",
    "eu": "eu",
    "jp": "jp",
    "au": "au",
    "ca": "ca",
    "apac": None,
    "global": None,
}
"""Bedrock cross-region inference profile prefixes -> the jurisdiction they stay in (None:
they may run anywhere, or across several jurisdictions)."""
_DATA_ZONES: dict[str, str | None] = {"eu": "eu", "us": "us"}
"""Azure OpenAI data zones -> the jurisdiction they stay in."""
_ZONE_LABEL = re.compile(r"(aws|azure):([a-z-]+)-(?:profile|datazone)")
_MAX_CACHED_DECISIONS = 8192


@dataclass(frozen=True, slots=True)
class Hop:
    """One place the call's data passes through, and whether it lies inside the policy's regions."""

    name: str
    region: str | None
    inside: bool


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    code: str | None
    """The SPEC §3 error code when refused, None when allowed."""
    message: str
    policy: Policy | None
    reasons: tuple[str, ...]
    hops: tuple[Hop, ...] = ()
    set_fields: tuple[tuple[str, str], ...] = ()
    """Top-level JSON fields the gateway sets in the request body before forwarding it, so
    the target keeps the data where the policy needs it (e.g. Anthropic's `inference_geo`)."""
    targets: tuple[int, ...] = (0,)
    """Which of the connection's targets the call may go to: those inside the policy."""

    @property
    def policy_name(self) -> str | None:
        return self.policy.name if self.policy else None

    @property
    def target_region(self) -> str | None:
        """Where the target processes the call, request facts included (`anthropic:us`)."""
        return next((hop.region for hop in self.hops if hop.name == "target"), None)

    def to_json(self) -> dict[str, object]:
        return {
            "allowed": self.allowed,
            "code": self.code,
            "message": self.message,
            "policy": self.policy_name,
            "reasons": list(self.reasons),
            "hops": [{"name": h.name, "region": h.region, "inside": h.inside} for h in self.hops],
            "set_fields": dict(self.set_fields),
            "targets": list(self.targets),
            "mask": self.policy.mask.model_dump() if self.policy and self.policy.mask else None,
            "review": (
                self.policy.review.model_dump() if self.policy and self.policy.review else None
            ),
        }


@dataclass(frozen=True, slots=True)
class _Rule:
    policy: Policy
    users: frozenset[str]
    groups: frozenset[str]
    service_accounts: frozenset[str]
    allowed_regions: frozenset[str] | None
    """Region ids every hop must be in; None when the policy sets no `regions`."""

    def subject_matches(self, principal: Principal) -> bool:
        if principal.service_account is not None:
            if principal.service_account in self.service_accounts:
                return True
        elif principal.user in self.users:
            return True
        return not self.groups.isdisjoint(principal.groups)

    def why_not(self, principal: Principal) -> str:
        wanted = [
            f"{label} {', '.join(sorted(values))}"
            for label, values in (
                ("users", self.users),
                ("groups", self.groups),
                ("service accounts", self.service_accounts),
            )
            if values
        ]
        return f"policy {self.policy.name!r}: subjects need {'; or '.join(wanted)}"


@dataclass(frozen=True)
class CompiledPolicy:
    """The policy file turned into per-connection rule lists and expanded region sets."""

    config: Config
    catalog: Catalog
    version: str
    """A short hash of the policy (without secrets) that records and approvals are bound to."""
    _rules_by_connection: dict[str, tuple[_Rule, ...]] = field(repr=False)
    _decisions: dict[tuple[Principal, str, RequestFacts], Decision] = field(
        default_factory=dict, repr=False
    )
    """Decisions already made: `decide` is pure, so a repeat call is a dictionary lookup."""

    def decide(
        self, principal: Principal, connection_name: str, facts: RequestFacts | None = None
    ) -> Decision:
        """The first policy whose subjects and connections match decides; none means deny."""
        key = (principal, connection_name, facts or _NO_FACTS)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= _MAX_CACHED_DECISIONS:
                self._decisions.clear()
            decision = self._decisions[key] = self._decide(principal, connection_name, key[2])
        return decision

    def _decide(self, principal: Principal, connection_name: str, facts: RequestFacts) -> Decision:
        connection = self.config.connections.get(connection_name)
        if connection is None:
            return Decision(
                False,
                "unknown_connection",
                f"There is no connection named {connection_name!r}; check the base URL "
                f"(/c/CONNECTION/...) against the connections in the policy file.",
                None,
                (f"no connection {connection_name!r} in the policy file",),
            )
        reasons: list[str] = []
        for rule in self._rules_by_connection[connection_name]:
            if rule.subject_matches(principal):
                reasons.append(f"policy {rule.policy.name!r} matches {_describe(principal)}")
                return self._within_policy(rule, connection_name, connection, facts, reasons)
            reasons.append(rule.why_not(principal))
        if not reasons:
            reasons.append(f"no policy lists connection {connection_name!r}")
        return Decision(
            False,
            "connection_not_allowed",
            f"No policy lets {_describe(principal)} use connection {connection_name!r}; "
            f"ask an administrator to grant it in the policy file.",
            None,
            tuple(reasons),
        )

    def _within_policy(
        self,
        rule: _Rule,
        name: str,
        connection: Connection,
        facts: RequestFacts,
        reasons: list[str],
    ) -> Decision:
        policy = rule.policy
        limit = ", ".join(policy.regions)
        deployments = connection.deployments
        chosen: tuple[int, ...] = (0,)
        set_fields: tuple[tuple[str, str], ...] = ()
        if len(deployments) == 1:
            target, set_fields, fact_reason = self._target_region(rule, connection, facts)
            if fact_reason is not None:
                reasons.append(fact_reason)
            hops = self._hops(rule, (target,))
        else:
            allowed = rule.allowed_regions
            chosen = tuple(
                index
                for index, deployment in enumerate(deployments)
                if allowed is None or deployment.region in allowed
            )
            for index, deployment in enumerate(deployments):
                if index not in chosen:
                    reasons.append(
                        f"target {deployment.url} is in {deployment.region}, outside {limit}: "
                        "not used"
                    )
            if not chosen:
                return Decision(
                    False,
                    "region_not_allowed",
                    f"Policy {policy.name!r} keeps data inside {limit}, but none of the "
                    f"{len(deployments)} targets of connection {name!r} is; targets in other "
                    "regions are never used.",
                    policy,
                    tuple(reasons),
                    self._hops(rule, tuple(deployment.region for deployment in deployments)),
                )
            hops = self._hops(rule, tuple(deployments[index].region for index in chosen))
        for hop in hops:
            if hop.inside:
                continue
            if hop.region is None:
                reasons.append(f"the {hop.name}'s region is not declared")
                return Decision(
                    False,
                    "region_unverified",
                    f"Policy {policy.name!r} keeps data inside {limit}, but the region of the "
                    f"{hop.name} for connection {name!r} is not declared, so it cannot be proven.",
                    policy,
                    tuple(reasons),
                    hops,
                )
            reasons.append(f"the {hop.name} is in {hop.region}, outside {limit}")
            return Decision(
                False,
                "region_not_allowed",
                f"Policy {policy.name!r} keeps data inside {limit}, but the {hop.name} of "
                f"connection {name!r} is in {hop.region}; use a connection in an allowed region.",
                policy,
                tuple(reasons),
                hops,
            )
        if rule.allowed_regions is not None:
            reasons.append(f"every hop is inside {', '.join(policy.regions)}")
        refusal = _not_yet_enforced(policy, name, connection)
        if refusal is not None:
            code, message = refusal
            reasons.append(message)
            return Decision(False, code, message, policy, tuple(reasons), hops)
        return Decision(
            True,
            None,
            f"allowed by policy {policy.name!r}",
            policy,
            tuple(reasons),
            hops,
            set_fields,
            chosen,
        )

    def _target_region(
        self, rule: _Rule, connection: Connection, facts: RequestFacts
    ) -> tuple[str | None, tuple[tuple[str, str], ...], str | None]:
        """Where the target processes this request: (region, body fields to set, reason).

        Anthropic's global API processes a request in the geography its `inference_geo` names.
        When the caller names none and the policy does not allow the global API, the gateway
        names the first geography the policy allows; a caller's own `inference_geo` is kept as
        sent (and refused below when it is outside the policy).
        """
        region = connection.region
        if connection.deployment in ("data-zone", "global") and region is not None:
            return self._azure_zone(region, connection.deployment)
        if region is not None and region.startswith("aws:") and facts.bedrock_model:
            return self._bedrock_region(region, facts.bedrock_model, rule)
        if region is not None and region.startswith("gcp:") and facts.location:
            chosen = f"gcp:{facts.location.lower()}"
            if chosen == region:
                return region, (), None
            return chosen, (), f"the request path names location {facts.location!r} ({chosen})"
        if connection.type != "anthropic" or region != _ANTHROPIC_GLOBAL:
            return region, (), None
        if facts.geo is not None:
            chosen = f"anthropic:{facts.geo}"
            return chosen, (), f"the request asks for inference_geo {facts.geo!r} ({chosen})"
        allowed = rule.allowed_regions
        if allowed is None or region in allowed:
            return region, (), None
        geographies = sorted(
            candidate.id
            for candidate in self.catalog.regions()
            if candidate.provider == "anthropic" and candidate.id in allowed
        )
        if not geographies:
            return region, (), None
        geo = geographies[0].partition(":")[2]
        return (
            geographies[0],
            (("inference_geo", geo),),
            f"the gateway sets inference_geo {geo!r} so Anthropic processes in {geographies[0]}",
        )

    def _bedrock_region(
        self, endpoint: str, model: str, rule: _Rule
    ) -> tuple[str | None, tuple[tuple[str, str], ...], str | None]:
        """Where Bedrock runs a model: the endpoint's region, an ARN's, or a profile's geography.

        A cross-region inference profile (`eu.anthropic...`) may run in any AWS region of its
        geography, so it stands for that geography: it is inside the policy only when every
        AWS region of it is (see `_PROFILE_GEOGRAPHIES`; `global.` and `apac.` never are).
        """
        arn = _BEDROCK_ARN.match(model)
        if arn is not None:
            region, model = f"aws:{arn.group(1)}", arn.group(2)
        else:
            region = endpoint
        prefix, dot, _ = model.partition(".")
        if not dot or prefix not in _PROFILE_GEOGRAPHIES:
            if region == endpoint:
                return region, (), None
            return region, (), f"the model ARN names region {region}"
        jurisdiction = _PROFILE_GEOGRAPHIES[prefix]
        where = f"any AWS region of {jurisdiction}" if jurisdiction else "any AWS region"
        return (
            f"aws:{prefix}-profile",
            (),
            f"model {model!r} is a {prefix}. cross-region inference profile: it may run in {where}",
        )

    def _azure_zone(
        self, region: str, deployment: str
    ) -> tuple[str | None, tuple[tuple[str, str], ...], str | None]:
        """Azure's Global deployments run anywhere; Data Zone ones anywhere in the EU or US."""
        if deployment == "global":
            return "azure:global", (), "a Global deployment may process in any Azure region"
        place = self.catalog.get(region)
        zone = next(
            (name for name in ("eu", "us") if place is not None and name in place.jurisdictions),
            "unknown",
        )
        return (
            f"azure:{zone}-datazone",
            (),
            f"a Data Zone deployment in {region} may process in any Azure region of its zone "
            f"({zone})",
        )

    def _inside(self, region: str | None, allowed: frozenset[str]) -> bool:
        """A region id is inside when allowed; a geography (a Bedrock profile, an Azure data
        zone) when every region of that provider in it is."""
        if region is None:
            return False
        zone = _ZONE_LABEL.fullmatch(region)
        if zone is None:
            return region in allowed
        provider, name = zone.group(1), zone.group(2)
        jurisdiction = (
            _PROFILE_GEOGRAPHIES.get(name) if provider == "aws" else _DATA_ZONES.get(name)
        )
        if jurisdiction is None:
            return f"{provider}:global" in allowed
        members = [r.id for r in self.catalog.regions(jurisdiction) if r.provider == provider]
        return bool(members) and all(member in allowed for member in members)

    def _hops(self, rule: _Rule, targets: tuple[str | None, ...]) -> tuple[Hop, ...]:
        gateway = self.config.gateway
        regions = (
            ("gateway", gateway.region),
            *(("target", target) for target in targets),
            ("recording store", gateway.recordings_region),
        )
        allowed = rule.allowed_regions
        return tuple(
            Hop(hop, region, allowed is None or self._inside(region, allowed))
            for hop, region in regions
        )


def _describe(principal: Principal) -> str:
    groups = ", ".join(sorted(principal.groups)) or "none"
    return f"{principal.subject} (groups: {groups})"


def _not_yet_enforced(policy: Policy, name: str, connection: Connection) -> tuple[str, str] | None:
    """Fail closed on what the policy asks for but this version cannot yet do."""
    if connection.type not in SUPPORTED_TYPES:
        return (
            "connection_not_allowed",
            f"Connection {name!r} is of type {connection.type!r}, which this GeoGate version "
            f"cannot forward yet; use one of: {', '.join(sorted(SUPPORTED_TYPES))}.",
        )
    if connection.agent is not None:
        return (
            "agent_unavailable",
            f"Connection {name!r} runs through agent {connection.agent!r}, and network agents "
            f"are not available in this GeoGate version; the call was not rerouted.",
        )
    return None


def policy_version(config: Config) -> str:
    """Hash of the policy without connection credentials, so secrets never enter a record."""
    data = config.model_dump(mode="json")
    for connection in data.get("connections", {}).values():
        connection.pop("credentials", None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def compile_policy(config: Config, catalog: Catalog) -> CompiledPolicy:
    """Precompute, per connection, the rules that can match it, and each rule's region set."""
    rules = tuple(
        _Rule(
            policy=policy,
            users=frozenset(policy.subjects.users),
            groups=frozenset(policy.subjects.groups),
            service_accounts=frozenset(policy.subjects.service_accounts),
            allowed_regions=catalog.expand(policy.regions) if policy.regions else None,
        )
        for policy in config.policies
    )
    by_connection = {
        name: tuple(
            rule
            for rule in rules
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in rule.policy.connections)
        )
        for name in config.connections
    }
    return CompiledPolicy(
        config=config,
        catalog=catalog,
        version=policy_version(config),
        _rules_by_connection=by_connection,
    )
