"""Loading the policy file: read, validate, check references, resolve relative paths.

Every way a file can be wrong ends in one `ConfigError` that lists all the problems found, each
as `FILE:LINE: message`, so `geogate policy check` in CI shows everything to fix at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from operator import attrgetter
from pathlib import Path

from geogate.config.errors import ConfigError, Problem
from geogate.config.model import Config, Connection, Tls
from geogate.config.references import check_references, region_of
from geogate.config.source import MAX_BYTES, Document, Loc, read_document
from geogate.config.validate import validate

SUPPORTED_TYPES = frozenset(
    {"openai", "anthropic", "http", "azure-openai", "mistral", "bedrock", "vertex"}
)
"""Connection types this version can forward; the others load but their calls are refused."""


StrPath = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What `geogate policy check` reports: the config if valid, its errors, and notes on
    settings that are accepted but not acted on yet."""

    config: Config | None
    errors: list[Problem]
    notes: list[Problem]


def quickstart_path() -> Path:
    """The bundled quickstart policy, used when the current folder has no geogate.yaml."""
    return Path(str(files("geogate").joinpath("quickstart.yaml")))


def load_config(
    path: StrPath, *, base_dir: StrPath | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Load and fully check the policy file at `path`; raises `ConfigError`."""
    config, _ = _load(path, base_dir, env)
    return config


def parse_config(
    text: str,
    *,
    filename: str = "geogate.yaml",
    base_dir: StrPath | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Like `load_config` for text in memory; relative paths resolve against `base_dir` (or
    the current folder)."""
    raw = text.encode("utf-8", errors="surrogatepass")
    config, _ = _build(raw, filename, Path.cwd() if base_dir is None else Path(base_dir), env)
    return config


def check_config(
    path: StrPath, *, base_dir: StrPath | None = None, env: Mapping[str, str] | None = None
) -> CheckResult:
    """Validate without raising: the errors, or the config with its notes."""
    try:
        config, document = _load(path, base_dir, env)
    except ConfigError as exc:
        return CheckResult(None, exc.problems, [])
    _add_notes(document, config)
    notes = sorted(document.report(document.notes), key=attrgetter("line"))
    return CheckResult(config, [], notes)


def _load(
    path: StrPath, base_dir: StrPath | None, env: Mapping[str, str] | None
) -> tuple[Config, Document]:
    filename = os.fspath(path)
    try:
        with open(path, "rb") as file:
            raw = file.read(MAX_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            [Problem(filename, 0, f"cannot read the policy file: {reason}")]
        ) from None
    base = Path(path).resolve().parent if base_dir is None else Path(base_dir)
    return _build(raw, filename, base, env)


def _build(
    raw: bytes, filename: str, base_dir: Path, env: Mapping[str, str] | None
) -> tuple[Config, Document]:
    document = read_document(raw, filename, os.environ if env is None else env)
    config = validate(document)
    if config is not None:
        check_references(document, config)
    if document.problems or config is None:
        raise ConfigError(document.report(document.problems))
    return _resolve_paths(config, Path(os.path.abspath(base_dir))), document


def _resolve_paths(config: Config, base: Path) -> Config:
    """Relative paths in the file mean "next to the policy file", wherever the gateway starts."""
    gateway = config.gateway
    witness = gateway.recordings.witness
    recordings = gateway.recordings.model_copy(
        update={
            "store": _store_url(gateway.recordings.store, base),
            "witness": None if witness is None else _store_url(witness, base),
        }
    )
    gateway = gateway.model_copy(
        update={
            "state": _state_url(gateway.state, base),
            "audit_key": _path(gateway.audit_key, base),
            "recordings": recordings,
        }
    )
    connections = {
        name: _attribute_region(_resolve_files(connection, base))
        for name, connection in config.connections.items()
    }
    identity = config.identity
    if identity.login.saml is not None:
        saml = identity.login.saml.model_copy(
            update={"idp_metadata": _path(identity.login.saml.idp_metadata, base)}
        )
        login = identity.login.model_copy(update={"saml": saml})
        identity = identity.model_copy(update={"login": login})
    masking = config.masking.model_copy(update={"key": _path(config.masking.key, base)})
    return config.model_copy(
        update={
            "gateway": gateway,
            "connections": connections,
            "identity": identity,
            "masking": masking,
        }
    )


def _attribute_region(connection: Connection) -> Connection:
    """A target without `region` gets the one its provider URL names, so policy decisions
    and hops downstream see it; `check_references` has made sure there is one.

    Whether a region was attributed or declared is not stored: `attribute_url(url)` tells,
    and when both exist they agree."""
    if connection.url is not None:
        return connection.model_copy(
            update={"region": region_of(connection.url, connection.region)}
        )
    targets = [
        target.model_copy(update={"region": region_of(target.url, target.region)})
        for target in connection.targets
    ]
    return connection.model_copy(update={"targets": targets})


def _resolve_files(connection: Connection, base: Path) -> Connection:
    """A CA file (and a key file) is relative to the policy file, for the connection and each
    target."""
    update: dict[str, object] = {"tls": _tls(connection.tls, base)}
    google = connection.credentials.google if connection.credentials is not None else None
    if google is not None and connection.credentials is not None:
        located = google.model_copy(
            update={"service_account_file": _path(google.service_account_file, base)}
        )
        update["credentials"] = connection.credentials.model_copy(update={"google": located})
    if connection.targets:
        update["targets"] = [
            target
            if target.tls is None
            else target.model_copy(update={"tls": _tls(target.tls, base)})
            for target in connection.targets
        ]
    return connection.model_copy(update=update)


def _tls(tls: Tls, base: Path) -> Tls:
    if tls.ca_file is None:
        return tls
    return tls.model_copy(update={"ca_file": _path(tls.ca_file, base)})


def _path(path: str, base: Path) -> str:
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else Path(os.path.normpath(base / expanded)))


def _state_url(url: str, base: Path) -> str:
    """`sqlite:///state.db` -> `sqlite:////BASE/state.db`; other databases are left alone."""
    scheme, separator, rest = url.partition(":///")
    if not separator or not (scheme == "sqlite" or scheme.startswith("sqlite+")):
        return url
    database, question, query = rest.partition("?")
    if not database or database == ":memory:" or database.startswith("/"):
        return url
    return f"{scheme}:///{_path(database, base)}{question}{query}"


def _store_url(url: str, base: Path) -> str:
    """`file://recordings` (or a bare path) -> `file:///BASE/recordings`; object stores as is."""
    if url.startswith("file://"):
        location = url.removeprefix("file://")
    elif "://" not in url:
        location = url
    else:
        return url
    return f"file://{_path(location, base)}" if location else url


def _add_notes(document: Document, config: Config) -> None:
    """Point at every setting that is accepted but not acted on yet, and what happens instead."""
    for name, connection in config.connections.items():
        loc: Loc = ("connections", name)
        if connection.type not in SUPPORTED_TYPES:
            document.note(
                (*loc, "type"),
                f"connection type {connection.type!r} is not supported yet: calls through "
                f"{name!r} are refused",
            )
        if connection.agent is not None:
            document.note(
                (*loc, "agent"),
                f"network agents are not available yet: calls through {name!r} are refused "
                "with agent_unavailable",
            )
