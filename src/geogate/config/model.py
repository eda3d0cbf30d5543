"""The policy file, version 1 (SPEC §4), as typed pydantic models.

Every model forbids unknown keys so a typo is an error with a line number, never a silently
ignored setting. Cross-references (a policy naming a missing connection, an unknown region id)
are checked by the loader once the whole file is known.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    IPvAnyAddress,
    IPvAnyNetwork,
    field_validator,
    model_validator,
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_duration(value: object) -> float:
    """`90s`, `10m`, `1h`, `30d`, `250ms` (or a bare number of seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 10m, 1h or 30d")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError(f"{value!r} is not a duration; write it as 90s, 10m, 1h or 30d")
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: object) -> int:
    """`10MB`, `512KiB`, `1GB` (or a bare number of bytes) -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 10MB")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        number = float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()]
        if not math.isfinite(number):
            raise ValueError(f"{value!r} is too large; write it as 512KB, 10MB or 1GB")
        size = int(number)
    else:
        raise ValueError(f"{value!r} is not a size; write it as 512KB, 10MB or 1GB")
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in the file as `90s`, `10m`, `1h`, `30d`."""
Size = Annotated[int, BeforeValidator(parse_size)]
"""Bytes, written in the file as `10MB`."""

ConnectionType = Literal[
    "openai", "anthropic", "bedrock", "azure-openai", "vertex", "mistral", "http", "mcp"
]
RecordContent = Literal["masked", "metadata"]
MaskStyle = Literal["redact", "partial", "hash", "tokenize"]


def is_loopback(host: str) -> bool:
    """Whether a URL's host is this machine: the one place plain http:// is acceptable."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Model(BaseModel):
    """Base: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Checkpoints(Model):
    records: int = Field(1000, ge=1)
    """Sign a checkpoint at least every this many records..."""
    interval: Duration = 10.0
    """...and every this long while records come in."""


class Recordings(Model):
    store: str = "file://.geogate/recordings"
    options: dict[str, Any] = {}
    """fsspec storage options of the store (an S3 `endpoint_url`, credentials via ${ENV})."""
    region: str | None = None
    """Where the store is; a `file://` store defaults to `gateway.region`."""
    content: RecordContent = "masked"
    retention: Duration | None = None
    witness: str | None = None
    """A second store (any fsspec URL) that gets a copy of every signed checkpoint."""
    witness_options: dict[str, Any] = {}
    sync: Duration = 0.01
    """How often records are flushed to disk; `0s` flushes before each call is forwarded."""
    checkpoints: Checkpoints = Checkpoints()

    @field_validator("store", "witness")
    @classmethod
    def _usable_store(cls, url: str | None) -> str | None:
        """A store the gateway can open: a folder, or an fsspec protocol whose package is
        installed (`gs://` needs gcsfs, `az://` adlfs), found now rather than at the first call."""
        if url is None or url.startswith("file://") or "://" not in url:
            return url
        import fsspec  # here, not at the top: only a policy with an object store needs it

        try:
            fsspec.get_filesystem_class(url.partition("://")[0])
        except (ImportError, ValueError) as exc:
            raise ValueError(f"cannot store recordings at {url}: {exc}") from None
        return url


class Gateway(Model):
    region: str | None = None
    listen: str = "127.0.0.1:8080"
    state: str = "sqlite:///.geogate/state.db"
    recordings: Recordings = Recordings()
    audit_key: str = ".geogate/audit.ed25519"
    resolve: dict[str, list[IPvAnyAddress]] = {}
    public_url: str | None = None
    """The URL browsers and IdPs reach the gateway at (redirects, SAML ACS, cookies).

    Unset, each request's own scheme and Host are used; set it behind a TLS-terminating proxy.
    """

    @property
    def own_url(self) -> str:
        """Where links to this gateway point when no request says: `public_url`, else the
        listen address (review links in notifications, the CLI's own gateway)."""
        return (self.public_url or f"http://{self.listen}").rstrip("/")

    @property
    def recordings_region(self) -> str | None:
        """Where recordings are kept: declared, or the gateway's own for a local folder."""
        if self.recordings.region is None and self.recordings.store.startswith("file:"):
            return self.region
        return self.recordings.region

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT, e.g. 127.0.0.1:8080")
        return value


class RegionDef(Model):
    """A user region (`onprem:NAME`) or private addresses added to a catalog region."""

    jurisdiction: str | None = None
    country: str | None = None
    cidrs: list[IPvAnyNetwork] = []
    hosts: list[str] = []


class OidcIssuer(Model):
    """An identity provider whose JWTs (access or ID tokens) callers may present."""

    issuer: str
    audience: str | list[str]
    groups_claim: str = "groups"
    """A dotted path such as `realm_access.roles`; a list or a space-separated string."""
    user_claim: str = "email"
    algorithms: list[str] = ["RS256", "PS256", "ES256", "EdDSA"]
    leeway: Duration = 30.0
    """Clock skew tolerated on `exp`, `nbf` and `iat`."""

    @field_validator("algorithms")
    @classmethod
    def _no_weak_algorithms(cls, value: list[str]) -> list[str]:
        weak = [alg for alg in value if alg == "none" or alg.upper().startswith("HS")]
        if weak:
            raise ValueError(f"algorithms {weak} are never accepted; use asymmetric ones only")
        if not value:
            raise ValueError("name at least one algorithm, e.g. [RS256, ES256]")
        return value

    @field_validator("leeway")
    @classmethod
    def _small_leeway(cls, value: float) -> float:
        if value > 300:
            raise ValueError("a leeway over 5m would accept long-expired tokens; use 30s")
        return value


class ApiKeys(Model):
    max_lifetime: Duration = 90 * 86400.0


class OidcLogin(Model):
    """Sign-in to the console (authorization code + PKCE) and the CLI (device grant)."""

    issuer: str
    """One of `identity.oidc`: its ID tokens are verified with that issuer's keys and claims."""
    client_id: str
    client_secret: str | None = None
    """For a confidential console client; leave out for a public client (PKCE only)."""
    cli_client_id: str | None = None
    """A public client for `geogate login`; its ID tokens must be in that issuer's audience."""
    scopes: list[str] = ["openid", "email", "profile"]


class SamlLogin(Model):
    """Sign-in to the console through a SAML 2.0 identity provider (this gateway is the SP)."""

    idp_metadata: str
    """The IdP's metadata XML file."""
    entity_id: str | None = None
    """This SP's entity id; defaults to `{gateway.public_url}/saml/metadata`."""
    user_attribute: str | None = None
    """Attribute naming the user; the assertion's NameID when not set."""
    groups_attribute: str = "groups"


class Login(Model):
    oidc: OidcLogin | None = None
    saml: SamlLogin | None = None
    session_lifetime: Duration = 12 * 3600.0


class Scim(Model):
    """SCIM 2.0 provisioning (`/scim/v2/`) for an IdP such as Okta or Entra ID."""

    token: str = Field(min_length=32, repr=False)
    """The bearer token the IdP sends; at least 32 characters of randomness."""


class Identity(Model):
    oidc: list[OidcIssuer] = []
    api_keys: ApiKeys = ApiKeys()
    admin_groups: list[str] = ["geogate-admins"]
    login: Login = Login()
    scim: Scim | None = None


class AwsCredentials(Model):
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    profile: str | None = None
    role_arn: str | None = None


class GoogleCredentials(Model):
    """A Google Cloud service account, for Vertex AI: access tokens are minted from its key."""

    service_account_file: str
    """The service account's JSON key file (relative to the policy file)."""


class Credentials(Model):
    """How the gateway authenticates to the target; exactly one form."""

    bearer: str | None = None
    header: dict[str, str] | None = None
    aws: AwsCredentials | None = None
    google: GoogleCredentials | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Credentials:
        forms = ("bearer", "header", "aws", "google")
        given = [name for name in forms if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "credentials take exactly one of bearer, header, aws or google (or `none`)"
            )
        return self


class Timeouts(Model):
    connect: Duration = 10.0
    first_byte: Duration = 120.0
    """From sending the request to the response headers."""
    idle: Duration = 120.0
    """Longest silence while reading a (streamed) response."""


def _timeouts(value: object) -> object:
    """`timeout: 120s` sets the first-byte and idle limits; a mapping sets each."""
    if isinstance(value, dict):
        return value
    seconds = parse_duration(value)
    return {"first_byte": seconds, "idle": seconds}


def _credentials(value: object) -> object:
    if value == "none":
        return None
    return value


class Tls(Model):
    ca_file: str | None = None


def _absolute_url(value: str) -> str:
    if not re.match(r"^https?://[^/?#@\s]+(/[^?#\s]*)?$", value):
        raise ValueError(
            f"{value!r} is not an absolute http(s) URL without query, fragment or user info"
        )
    try:
        port = urlsplit(value).port  # raises on a bad port or IPv6 literal
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid URL: {exc}") from None
    if port == 0:
        raise ValueError(f"{value!r} has port 0, which cannot be connected to")
    return value.rstrip("/")


AbsoluteUrl = Annotated[str, AfterValidator(_absolute_url)]


class Target(Model):
    """One deployment of a connection: where it is, and (if its own) how to authenticate."""

    url: AbsoluteUrl
    region: str | None = None
    credentials: Annotated[Credentials | None, BeforeValidator(_credentials)] = None
    """None: the connection's own."""
    tls: Tls | None = None
    """None: the connection's own."""


class Connection(Model):
    type: ConnectionType
    url: AbsoluteUrl | None = None
    """The one deployment; or list several under `targets`."""
    region: str | None = None
    targets: list[Target] = []
    """Several deployments of the same API: calls go to those inside the policy's regions."""
    deployment: Literal["standard", "data-zone", "global"] | None = None
    """Azure OpenAI only: where a deployment of that type processes (standard: its region)."""
    agent: str | None = None
    credentials: Annotated[Credentials | None, BeforeValidator(_credentials)] = None
    timeout: Annotated[Timeouts, BeforeValidator(_timeouts)] = Timeouts()
    max_body: Size = 10 * 1000**2
    tls: Tls = Tls()

    @model_validator(mode="after")
    def _url_or_targets(self) -> Connection:
        if (self.url is None) == (not self.targets):
            raise ValueError("a connection takes either `url` or a list of `targets`")
        if self.targets and self.region is not None:
            raise ValueError("with `targets`, give each target its own `region`")
        if (self.type == "azure-openai") != (self.deployment is not None):
            raise ValueError(
                "an azure-openai connection needs `deployment: standard`, `data-zone` or "
                "`global` (Azure processes Global and Data Zone deployments outside the "
                "resource's region); other connection types take no `deployment`"
            )
        return self

    @property
    def deployments(self) -> tuple[Target, ...]:
        """Every target, each with its own or the connection's region, credentials and TLS.

        Built on each access (a copy of the model must not keep a stale answer): the gateway
        keeps the result per connection (`Runtime.targets`) rather than ask on every call."""
        if self.url is not None:
            return (
                Target(
                    url=self.url, region=self.region, credentials=self.credentials, tls=self.tls
                ),
            )
        return tuple(
            target.model_copy(
                update={
                    "credentials": target.credentials or self.credentials,
                    "tls": target.tls or self.tls,
                }
            )
            for target in self.targets
        )


class CustomEntity(Model):
    pattern: str | None = None
    words: list[str] | None = None

    @model_validator(mode="after")
    def _pattern_or_words(self) -> CustomEntity:
        if (self.pattern is None) == (self.words is None):
            raise ValueError("a custom entity takes either `pattern` or `words`")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except (re.error, OverflowError, RecursionError) as exc:  # all mean "will not compile"
                raise ValueError(f"pattern does not compile: {exc}") from exc
        return self


class Masking(Model):
    custom: dict[str, CustomEntity] = {}
    sets: dict[str, list[str]] = {}
    key: str = ".geogate/masking.key"
    """The deployment's key for the hash and tokenize styles; made if missing, and shared by
    every gateway of one deployment so a value masks the same everywhere."""


class MaskRule(Model):
    request: list[str] = []
    response: list[str] = []
    style: MaskStyle = "redact"
    on_detect: Literal["mask", "block", "review"] = "mask"


class Subjects(Model):
    users: list[str] = []
    groups: list[str] = []
    service_accounts: list[str] = []

    @model_validator(mode="after")
    def _not_empty(self) -> Subjects:
        if not (self.users or self.groups or self.service_accounts):
            raise ValueError("subjects must name users, groups or service_accounts")
        return self


class Approvers(Model):
    users: list[str] = []
    groups: list[str] = []

    @model_validator(mode="after")
    def _not_empty(self) -> Approvers:
        if not (self.users or self.groups):
            raise ValueError("approvers must name users or groups")
        return self


class Review(Model):
    approvers: Approvers
    mode: Literal["hold", "ask"] = "hold"
    timeout: Duration = 600.0
    grant: Duration = 0.0
    min_approvals: Annotated[int, Field(ge=1)] = 1


class Notify(Model):
    """One place review requests and decisions are announced to."""

    webhook: str | None = None
    """Any HTTPS (or loopback HTTP) URL; each POST is signed with `secret` (HMAC-SHA256)."""
    secret: Annotated[str, Field(min_length=16)] | None = None
    slack: str | None = None
    """A Slack incoming-webhook URL; the message links to the review page."""

    @model_validator(mode="after")
    def _one_target(self) -> Notify:
        if (self.webhook is None) == (self.slack is None):
            raise ValueError("name exactly one of webhook or slack")
        if self.webhook is not None and self.secret is None:
            raise ValueError("a webhook needs a secret (16 characters or more) to sign with")
        if self.slack is not None and self.secret is not None:
            raise ValueError("secret is for webhooks; a Slack webhook URL is its own secret")
        return self

    @field_validator("webhook", "slack")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is None or url.startswith("https://"):
            return url
        if url.startswith("http://") and is_loopback(urlsplit(url).hostname or ""):
            return url
        raise ValueError("notifications go to an https:// URL (http:// only on this machine)")


class Reviews(Model):
    notify: list[Notify] = []
    max_open: Annotated[int, Field(ge=1)] = 20
    """Reviews one caller may have waiting at once: a client that varies its calls cannot
    flood approvers (and their Slack channel) with requests."""


class Policy(Model):
    name: str
    subjects: Subjects
    connections: Annotated[list[str], Field(min_length=1)]
    regions: list[str] = []
    """Jurisdictions or region ids every hop must be inside; empty means no residency limit."""
    mask: MaskRule | None = None
    record: RecordContent | None = None
    review: Review | None = None


class Config(Model):
    version: Literal[1]
    gateway: Gateway = Gateway()
    regions: dict[str, RegionDef] = {}
    jurisdictions: dict[str, list[str]] = {}
    identity: Identity = Identity()
    connections: dict[str, Connection] = {}
    masking: Masking = Masking()
    reviews: Reviews = Reviews()
    policies: list[Policy] = []
