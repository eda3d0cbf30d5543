"""`geogate audit`: check the recordings for tampering, and report on a period for auditors.

    geogate audit verify                          # exit 0 intact, 1 tampered, 2 unreadable
    geogate audit verify --key audit.ed25519.pub  # with the public key only
    geogate audit report --from 2026-12-01 --to 2026-12-02 --output december.html

Locally they read the recording store and state store of the policy file; with `--gateway`,
that gateway checks its own recordings through the admin API. An auditor who does not trust
the gateway verifies a copy of the store here, with the public key it published.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from urllib.parse import urlencode

import typer
from pydantic import ValidationError
from rich import box
from rich.table import Table

from geogate.cli.admin import AdminError, RemoteAdmin, gateway_url, saved_token
from geogate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    GatewayOption,
    JsonOption,
    TokenOption,
    fail,
    open_config,
    print_table,
)
from geogate.config import Config
from geogate.recording import AuditKey, NoteError, StorageError, Verifier, open_storage
from geogate.recording.report import (
    EvidenceReport,
    LogResult,
    Verification,
    build_report,
    parse_period,
)
from geogate.recording.verify import verify
from geogate.store import Store, StoreError, driver_urls, open_store

T = TypeVar("T")
M = TypeVar("M", EvidenceReport, Verification)

app = typer.Typer(
    help="Verify the signed recordings and build evidence reports for auditors.",
    no_args_is_help=True,
)

UNREADABLE = 2
"""Exit status when the store, the index or the key cannot be read: nothing was verified."""

KeyOption = Annotated[
    Path | None,
    typer.Option(
        "--key",
        help="Verify with this public key file (the audit key's .pub: one line name+id+key) "
        "instead of gateway.audit_key.",
        show_default=False,
    ),
]


class Format(StrEnum):
    html = "html"
    json = "json"


@app.command("verify")
def verify_(
    json_output: JsonOption = False,
    key: KeyOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Check that no record was changed, removed or reordered and every checkpoint is signed."""
    if gateway:
        _no_key_with_gateway(key)
        result = _parsed(Verification, _remote(gateway, token, "/api/v1/audit/verify"), gateway)
    else:
        result = _verify_here(open_config(config), key)
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        _print_verification(result)
    raise typer.Exit(0 if result.ok else 1)


@app.command("report")
def report(
    start: Annotated[
        str,
        typer.Option(
            "--from",
            help="First day (YYYY-MM-DD, UTC) or an ISO timestamp.",
            show_default=False,
        ),
    ],
    end: Annotated[
        str,
        typer.Option(
            "--to",
            help="Last day, included (YYYY-MM-DD, UTC), or an ISO timestamp (excluded).",
            show_default=False,
        ),
    ],
    output_format: Annotated[
        Format, typer.Option("--format", help="html: one self-contained page; json: for tools.")
    ] = Format.html,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Write to this file instead of stdout.", show_default=False
        ),
    ] = None,
    key: KeyOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Totals, regions, blocked attempts, approvals, masking and the log's verification."""
    try:
        since, until = parse_period(start, end)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--from/--to") from None
    if gateway:
        _no_key_with_gateway(key)
        query = urlencode({"from": start, "to": end, "format": "json"})
        evidence = _parsed(
            EvidenceReport, _remote(gateway, token, f"/api/v1/audit/report?{query}"), gateway
        )
    else:
        evidence = _report_here(open_config(config), key, since, until)
    if output_format is Format.html:
        text = evidence.to_html()
    else:
        text = json.dumps(evidence.to_json(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"Cannot write the report to {output}: {exc.strerror}.")
        typer.echo(f"Wrote the report of {start} to {end} to {output}.", err=True)
    if not evidence.verification.ok:
        typer.echo(
            "The recordings FAILED verification; the report says where they were changed.",
            err=True,
        )


# --- here: the policy file's stores ----------------------------------------------------------


def _verify_here(config: Config, key: Path | None) -> Verification:
    verifier = _verifier(config, key)
    settings = config.gateway.recordings
    database = _index_database(config)
    if database is None:
        typer.echo(
            f"No session index at {driver_urls(config.gateway.state)[0].database}: each log's end "
            "is checked against its signed checkpoints only.",
            err=True,
        )

    async def run() -> Verification:
        storage = open_storage(settings.store, dict(settings.options))
        witness = (
            open_storage(settings.witness, dict(settings.witness_options))
            if settings.witness
            else None
        )
        store = None if database is None else await open_store(config.gateway.state)
        try:
            index = None if store is None else store.recorded
            return Verification.of(await verify(storage, verifier, witness=witness, index=index))
        finally:
            if store is not None:
                await store.close()
            if witness is not None:
                await witness.close()

    result = _reading(lambda: asyncio.run(run()))
    if not result.logs and result.ok:
        _unreadable(
            f"The recording store {settings.store} holds no logs: nothing to verify. Is "
            "gateway.recordings.store the store the gateway writes to?"
        )
    return result


def _report_here(
    config: Config, key: Path | None, since: datetime, until: datetime
) -> EvidenceReport:
    verifier = _verifier(config, key)
    settings = config.gateway.recordings
    if _index_database(config) is None:
        _unreadable(
            f"No session index at {driver_urls(config.gateway.state)[0].database}: the report "
            "lists calls from the gateway's state store; run it where that is (or use --gateway)."
        )

    async def run() -> EvidenceReport:
        storage = open_storage(settings.store, dict(settings.options))
        store: Store
        async with await open_store(config.gateway.state) as store:
            return await build_report(config, store, storage, verifier, since, until)

    return _reading(lambda: asyncio.run(run()))


def _reading(action: Callable[[], T]) -> T:
    """`action`, exiting 2 when the recording store or the state store cannot be read."""
    try:
        return action()
    except (StorageError, StoreError) as exc:
        _unreadable(str(exc))
    except FileNotFoundError as exc:
        _unreadable(f"A file of the recording store went away while it was read ({exc}).")


def _index_database(config: Config) -> Path | None:
    """The state database holding the session index, if it exists (opening it would make it)."""
    try:
        database = driver_urls(config.gateway.state)[0].database
    except StoreError as exc:
        _unreadable(str(exc))
    path = Path(database or "")
    return path if path.is_file() else None


def _verifier(config: Config, key: Path | None) -> Verifier:
    if key is not None:
        try:
            return Verifier.parse(key.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "it is not text"
            _unreadable(f"Cannot read the public key {key}: {reason}.")
        except NoteError as exc:
            _unreadable(
                f"{key} is not a public audit key ({exc}); pass the .pub file the gateway "
                "writes beside its audit key."
            )
    path = config.gateway.audit_key
    try:
        return AuditKey.load(path, create=False).verifier()
    except (OSError, NoteError) as exc:
        _unreadable(f"{exc}; to verify with the public key only, pass --key {path}.pub.")


def _unreadable(message: str) -> NoReturn:
    fail(message, UNREADABLE)


# --- remote: a gateway's admin API ---------------------------------------------------------


def _no_key_with_gateway(key: Path | None) -> None:
    if key is not None:
        fail(
            "--key verifies a copy of the recordings here; with --gateway the gateway checks "
            "its own. Drop one of them.",
            UNREADABLE,
        )


class RemoteAudit(RemoteAdmin):
    """A gateway's `/api/v1/audit/...`."""

    def get(self, path: str) -> Any:
        return self._call("GET", path)


def _remote(gateway: str, token: str | None, path: str) -> Any:
    try:
        url = gateway_url(gateway)
        return RemoteAudit(url, token if token else saved_token(url)).get(path)
    except AdminError as exc:
        _unreadable(exc.message)


def _parsed(model: type[M], answer: Any, gateway: str) -> M:
    try:
        return model.model_validate(answer)
    except ValidationError:
        _unreadable(f"{gateway} answered with something other than a GeoGate audit report.")


def _print_verification(result: Verification) -> None:
    table = Table(*LogResult.COLUMNS, box=box.SIMPLE)
    for log in result.logs:
        table.add_row(*(str(cell) for cell in log.cells()))
    print_table(table)
    problems = [(log.log, problem) for log in result.logs for problem in log.problems]
    problems += [("store", problem) for problem in result.problems]
    for where, problem in problems:
        at = "" if problem.position is None else f" at record {problem.position}"
        typer.echo(f"{where}: {problem.kind}{at}: {problem.message}")
    typer.echo(f"Checked with {result.key}: {result.verdict()}.")
