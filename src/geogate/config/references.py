"""Checks that need the whole file: names that refer to each other, regions, URLs, credentials.

They run on the validated model, and each problem is reported at the line of the offending
entry. A region id is checked against the region catalog (bundled plus the file's `regions:`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from geogate.config.model import Config, Connection, Credentials, Target, is_loopback
from geogate.config.source import Document, Loc
from geogate.residency import (
    Attribution,
    Catalog,
    CatalogError,
    Unattributable,
    attribute_url,
    catalog_for,
    classify_url,
)

BUILTIN_ENTITIES = frozenset(
    {
        "us_ssn",
        "credit_card",
        "iban",
        "email",
        "phone",
        "ip_address",
        "us_itin",
        "uk_nino",
        "secret",
    }
)
"""Masking entities the gateway detects without configuration (SPEC §4)."""

_CONNECTION_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GLOB = re.compile(r"[*?\[]")


def check_references(document: Document, config: Config) -> None:
    """Add every cross-reference problem to `document`."""
    _check_connections(document, config)
    _check_connection_regions(document, config)
    _check_policies(document, config)
    _check_masking(document, config)
    _check_resolve(document, config)
    _check_identity(document, config)
    try:
        catalog = catalog_for(config.regions, config.jurisdictions)
    except CatalogError as exc:
        for path, message in exc.problems:
            document.error(path, message)
        return
    _check_regions(document, config, catalog)
    if not document.problems:
        _check_paths(document, config, catalog)


def _suggest(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_connections(document: Document, config: Config) -> None:
    for name, connection in config.connections.items():
        loc: Loc = ("connections", name)
        if not _CONNECTION_NAME.match(name):
            document.error(
                loc,
                f"connection name {name!r} must be 1-63 lowercase letters, digits, '.', '_' or "
                "'-', starting with a letter or digit: it is part of the URL /c/NAME/",
                label=("connections",),
            )
        if connection.credentials is not None:
            _check_credentials(
                document, (*loc, "credentials"), connection.credentials, connection.type
            )
        for target, at in _targets(name, connection):
            url = urlsplit(target.url)
            region = target.region or ""
            if (
                url.scheme == "http"
                and not is_loopback(url.hostname or "")
                and not (region.startswith("onprem:"))
            ):
                document.error(
                    (*at, "url"),
                    "plain http:// is only allowed for loopback hosts or connections in an "
                    "onprem: region; use https://",
                )
            if (
                at != loc
                and target.credentials is not None
                and target.credentials is not (connection.credentials)
            ):
                _check_credentials(
                    document, (*at, "credentials"), target.credentials, connection.type
                )


def _targets(name: str, connection: Connection) -> list[tuple[Target, Loc]]:
    """Each target of a connection, with where its settings are in the file."""
    loc: Loc = ("connections", name)
    if connection.url is not None:
        return [(connection.deployments[0], loc)]
    return [
        (target, (*loc, "targets", index)) for index, target in enumerate(connection.deployments)
    ]


def _check_connection_regions(document: Document, config: Config) -> None:
    """Every target's region is known: named by a provider's URL, or declared, never both apart.

    A declared region that contradicts the URL would make the gateway vouch for the wrong place;
    a URL GeoGate cannot place, without a declared region, would leave a hop it cannot prove.
    """
    for name, connection in config.connections.items():
        for target, loc in _targets(name, connection):
            _check_target_region(document, target, loc)


def _check_target_region(document: Document, target: Target, loc: Loc) -> None:
    url_loc: Loc = (*loc, "url")
    if url_loc in document.unresolved:
        return  # the missing variable is reported; the URL is not what the user wrote
    verdict = classify_url(target.url)
    url = document.show(url_loc, target.url)
    if target.region is not None:
        region_loc: Loc = (*loc, "region")
        declared = document.show(region_loc, target.region)
        if isinstance(verdict, Attribution) and verdict.region != target.region:
            document.error(
                region_loc,
                f"url {url} says {verdict.region}, but region says {declared}; remove "
                "`region` or fix the URL",
            )
        elif isinstance(verdict, Unattributable) and verdict.named_region not in (
            None,
            target.region,
        ):
            document.error(
                region_loc,
                f"url {url} names {verdict.named_region}, which is not in the region "
                f"catalog, so region {declared} cannot be where it goes; fix the URL",
            )
    elif isinstance(verdict, Unattributable):
        document.error(url_loc, f"no region is declared, and {verdict.reason}")
    elif verdict is None:
        host = urlsplit(target.url).hostname or target.url
        document.error(
            url_loc,
            f"no region is declared, and host {host} is not one GeoGate can attribute to a "
            "region; declare `region:` (an onprem: region for your own servers)",
        )


def _check_identity(document: Document, config: Config) -> None:
    identity = config.identity
    issuers: list[str] = []
    for index, issuer in enumerate(identity.oidc):
        loc: Loc = ("identity", "oidc", index, "issuer")
        url = urlsplit(issuer.issuer)
        loopback = is_loopback(url.hostname or "")
        if url.scheme != "https" and not (url.scheme == "http" and loopback):
            document.error(
                loc,
                f"issuer {issuer.issuer!r} must be an https:// URL (plain http:// only on a "
                "loopback address, for development)",
            )
        if issuer.issuer.rstrip("/") in issuers:
            document.error(loc, f"issuer {issuer.issuer!r} is listed twice; merge the entries")
        issuers.append(issuer.issuer.rstrip("/"))
    login = identity.login.oidc
    if login is not None and login.issuer.rstrip("/") not in issuers:
        document.error(
            ("identity", "login", "oidc", "issuer"),
            f"login issuer {login.issuer!r} must also be listed under identity.oidc, whose "
            "settings (audience, user and group claims) apply to its tokens"
            + _suggest(login.issuer, [issuer.issuer for issuer in identity.oidc]),
        )
    if login is not None and login.cli_client_id is not None:
        for issuer in identity.oidc:
            audiences = [issuer.audience] if isinstance(issuer.audience, str) else issuer.audience
            if issuer.issuer.rstrip("/") == login.issuer.rstrip("/") and (
                login.cli_client_id not in audiences
            ):
                document.error(
                    ("identity", "login", "oidc", "cli_client_id"),
                    f"`geogate login` signs in with the ID tokens of {login.cli_client_id!r}; add "
                    f"it to the audience of issuer {issuer.issuer!r} so the gateway accepts them",
                )
    public_url = config.gateway.public_url
    if public_url is not None:
        url = urlsplit(public_url)
        if url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment:
            document.error(
                ("gateway", "public_url"),
                f"public_url {public_url!r} must be an http(s) URL such as https://gw.example.com",
            )


def _check_credentials(document: Document, loc: Loc, credentials: Credentials, kind: str) -> None:
    """Catch the credentials that would fail at the first call, or smuggle extra headers."""
    if credentials.google is not None and kind != "vertex":
        document.error(
            (*loc, "google"), "Google credentials are for vertex connections; this is " + kind
        )
    aws = credentials.aws
    if aws is not None:
        if kind != "bedrock":
            document.error(
                (*loc, "aws"),
                "AWS credentials sign Bedrock requests; this is a " + kind + " connection",
            )
        elif aws.role_arn is not None:
            document.error(
                (*loc, "aws", "role_arn"),
                "role_arn is not supported yet; give access_key_id and secret_access_key, or a "
                "profile of the gateway host",
            )
        elif (aws.access_key_id is None) != (aws.secret_access_key is None):
            document.error((*loc, "aws"), "give both access_key_id and secret_access_key")
    values: list[tuple[Loc, str]] = []
    if credentials.bearer is not None:
        values.append(((*loc, "bearer"), credentials.bearer))
    for header, value in (credentials.header or {}).items():
        header_loc = (*loc, "header", header)
        if not _HEADER_NAME.match(header):
            document.error(
                header_loc, f"{header!r} is not a valid header name", label=(*loc, "header")
            )
        values.append((header_loc, value))
    for value_loc, value in values:
        if not value.strip():
            source = document.templates.get(value_loc)
            why = f" ({source} is set but empty)" if source else ""
            document.error(value_loc, f"the value is empty{why}")
        elif _CONTROL.search(value):
            document.error(
                value_loc,
                "contains a line break or control character, which a header cannot",
            )


def _check_policies(document: Document, config: Config) -> None:
    names = list(config.connections)
    first_line: dict[str, int] = {}
    for index, policy in enumerate(config.policies):
        loc: Loc = ("policies", index)
        name_loc = (*loc, "name")
        if not policy.name.strip():
            document.error(name_loc, "a policy needs a name")
        elif policy.name in first_line:
            document.error(
                name_loc,
                f"duplicate policy name {policy.name!r} (first at line {first_line[policy.name]})",
                label=loc,
            )
        else:
            first_line[policy.name] = document.line(name_loc)
        for position, pattern in enumerate(policy.connections):
            item = (*loc, "connections", position)
            shown = document.show(item, pattern)
            if _GLOB.search(pattern):
                if not any(fnmatchcase(name, pattern) for name in names):
                    document.error(item, f"pattern {shown} matches no connection")
            elif pattern not in config.connections:
                document.error(item, f"unknown connection {shown}{_suggest(pattern, names)}")
        if policy.mask is not None and policy.mask.on_detect == "review" and not policy.review:
            document.error(
                (*loc, "mask", "on_detect"),
                "on_detect: review needs a review block in this policy (who approves, how long "
                "a call waits)",
            )


def _check_masking(document: Document, config: Config) -> None:
    custom = set(config.masking.custom)
    sets = set(config.masking.sets)
    entities = BUILTIN_ENTITIES | custom
    for name in sorted(custom & BUILTIN_ENTITIES):
        loc: Loc = ("masking", "custom", name)
        document.error(loc, f"{name!r} is the name of a built-in entity; rename it", label=loc[:-1])
    from geogate.dlp.engine import PatternError, check_custom  # dlp reads this config model

    for name, entity in config.masking.custom.items():
        try:
            check_custom(name, entity)
        except PatternError as exc:
            field = "pattern" if entity.pattern is not None else "words"
            document.error(("masking", "custom", name, field), str(exc))
    for name, members in config.masking.sets.items():
        loc = ("masking", "sets", name)
        if name in entities:
            document.error(loc, f"{name!r} is the name of an entity; rename it", label=loc[:-1])
        for position, member in enumerate(members):
            item = (*loc, position)
            if member in sets:
                message = f"sets cannot contain sets; list the entities of {member!r} instead"
            elif member not in entities:
                shown = document.show(item, member)
                message = f"unknown entity {shown}{_suggest(member, entities)}"
            else:
                continue
            document.error(item, message)
    known = entities | sets
    for index, policy in enumerate(config.policies):
        if policy.mask is None:
            continue
        for direction, names in (
            ("request", policy.mask.request),
            ("response", policy.mask.response),
        ):
            for position, name in enumerate(names):
                if name not in known:
                    use: Loc = ("policies", index, "mask", direction, position)
                    shown = document.show(use, name)
                    document.error(use, f"unknown entity or set {shown}{_suggest(name, known)}")


def _check_resolve(document: Document, config: Config) -> None:
    for host in config.gateway.resolve:
        if not _is_dns_name(host):
            loc: Loc = ("gateway", "resolve", host)
            document.error(loc, f"{host!r} is not a valid DNS host name", label=loc[:-1])


def _is_dns_name(host: str) -> bool:
    labels = host.removesuffix(".").split(".")
    return (
        len(host) <= 253
        and all(_DNS_LABEL.match(label) for label in labels)
        and not labels[-1].isdigit()
    )


def _check_regions(document: Document, config: Config, catalog: Catalog) -> None:
    gateway = config.gateway
    if gateway.region is not None:
        _check_region_id(document, ("gateway", "region"), gateway.region, catalog)
    if gateway.recordings.region is not None:
        _check_region_id(
            document, ("gateway", "recordings", "region"), gateway.recordings.region, catalog
        )
    for name, connection in config.connections.items():
        for target, at in _targets(name, connection):
            if target.region is not None:
                _check_region_id(document, (*at, "region"), target.region, catalog)
    for index, policy in enumerate(config.policies):
        for position, name in enumerate(policy.regions):
            loc: Loc = ("policies", index, "regions", position)
            if not catalog.knows(name):
                shown = document.show(loc, name)
                document.error(loc, f"{shown} is neither a region id nor a jurisdiction")


def _check_paths(document: Document, config: Config, catalog: Catalog) -> None:
    """Refuse a policy every call of which would be refused for a hop outside its regions.

    The gateway and the recording store are hops of every call; a connection the policy names
    outright (not through a glob) is the target of every call it grants. A glob may also match
    connections elsewhere on purpose (another policy grants those), so it is left to run time.
    """
    gateway = config.gateway
    fixed_hops = [
        ("the gateway (gateway.region)", gateway.region),
        ("the recording store (gateway.recordings)", gateway.recordings_region),
    ]
    for index, policy in enumerate(config.policies):
        if not policy.regions:
            continue
        loc: Loc = ("policies", index, "regions")
        limit = ", ".join(policy.regions)
        for what, region in fixed_hops:
            if region is None:
                document.error(
                    loc,
                    f"policy {policy.name!r} keeps data inside {limit}, but {what} has no "
                    "region, so no call could be proven to stay inside; declare it",
                )
            elif not catalog.within(region, policy.regions):
                document.error(
                    loc,
                    f"policy {policy.name!r} keeps data inside {limit}, but {what} is in "
                    f"{region}: every call under this policy would be refused",
                )
        for position, pattern in enumerate(policy.connections):
            connection = config.connections.get(pattern)
            if connection is None:
                continue  # a glob: what it matches is checked per call
            regions = [region_of(target.url, target.region) for target in connection.deployments]
            if None in regions:
                continue  # reported as a connection problem
            if connection.type == "anthropic" and "anthropic:global" in regions:
                continue  # its inference_geo can bring it inside (checked per request)
            if not any(catalog.within(str(region), policy.regions) for region in regions):
                region = ", ".join(str(region) for region in regions)
                document.error(
                    ("policies", index, "connections", position),
                    f"policy {policy.name!r} keeps data inside {limit}, but connection "
                    f"{pattern!r} is in {region}: every call it grants would be "
                    "refused; remove it here or widen the policy's regions",
                )


def region_of(url: str, declared: str | None) -> str | None:
    """A target's region: declared, or named by its URL (the loader fills it in after these
    checks, with this same function)."""
    if declared is not None:
        return declared
    attributed = attribute_url(url)
    return attributed.region if attributed else None


def _check_region_id(document: Document, loc: Loc, region: str, catalog: Catalog) -> None:
    """A hop is in exactly one region, so here a jurisdiction is not enough."""
    shown = document.show(loc, region)
    if catalog.get(region) is not None:
        return
    if catalog.is_jurisdiction(region):
        message = f"{shown} is a jurisdiction; name the one region id this runs in"
    else:
        message = (
            f"unknown region {shown}; see `geogate regions list`, or declare it under `regions:`"
        )
    document.error(loc, message)
