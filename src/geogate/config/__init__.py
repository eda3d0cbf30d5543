"""The policy file (`geogate.yaml`, SPEC §4): its typed model and a loader whose every error
points at a line.

    config = load_config("geogate.yaml")          # raises ConfigError listing all problems
    result = check_config("geogate.yaml")         # errors and notes, for `geogate policy check`
"""

from geogate.config.errors import ConfigError, Problem
from geogate.config.loader import (
    SUPPORTED_TYPES,
    CheckResult,
    check_config,
    load_config,
    parse_config,
    quickstart_path,
)
from geogate.config.model import (
    ApiKeys,
    Approvers,
    AwsCredentials,
    Config,
    Connection,
    ConnectionType,
    Credentials,
    CustomEntity,
    Duration,
    Gateway,
    Identity,
    Masking,
    MaskRule,
    MaskStyle,
    OidcIssuer,
    Policy,
    RecordContent,
    Recordings,
    RegionDef,
    Review,
    Size,
    Subjects,
    Timeouts,
    Tls,
    parse_duration,
    parse_size,
)
from geogate.config.references import BUILTIN_ENTITIES

__all__ = [
    "BUILTIN_ENTITIES",
    "SUPPORTED_TYPES",
    "ApiKeys",
    "Approvers",
    "AwsCredentials",
    "CheckResult",
    "Config",
    "ConfigError",
    "Connection",
    "ConnectionType",
    "Credentials",
    "CustomEntity",
    "Duration",
    "Gateway",
    "Identity",
    "MaskRule",
    "MaskStyle",
    "Masking",
    "OidcIssuer",
    "Policy",
    "Problem",
    "RecordContent",
    "Recordings",
    "RegionDef",
    "Review",
    "Size",
    "Subjects",
    "Timeouts",
    "Tls",
    "check_config",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
    "quickstart_path",
]
