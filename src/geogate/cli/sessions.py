"""`geogate sessions`: find recorded sessions, show their calls, replay and export them.

    geogate sessions list --user alice@example.com --since 24h
    geogate sessions show ticket-7            # a caller's session id, or its key ses_...
    geogate sessions replay ses_9f2c... --speed 2
    geogate sessions export ses_9f2c... > session.json

Without `--gateway` they read the policy file's state store (the session index) and recording
store; with it, that gateway's admin API, as an admin. Recorded text is printed with control
characters escaped: a reply cannot move the cursor or restyle the terminal of whoever reads it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar
from urllib.parse import quote, urlencode

import typer
from pydantic import ValidationError
from rich import box
from rich.table import Table
from rich.text import Text

from geogate.cli.admin import AdminError, RemoteAdmin, gateway_url, parse_time, saved_token
from geogate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    GatewayOption,
    JsonOption,
    TokenOption,
    fail,
    format_time,
    open_config,
    print_table,
)
from geogate.config import Config
from geogate.recording.log import parse_time as record_time
from geogate.recording.sessions import (
    AmbiguousSession,
    RecordedCall,
    Session,
    SessionInfo,
    Turn,
    conversation,
    load_session,
    since_time,
    unknown_session,
)
from geogate.recording.storage import StorageError, open_storage
from geogate.store import Store, StoreError, open_store

T = TypeVar("T")
Row = dict[str, Any]

app = typer.Typer(
    help="Recorded sessions: list them, show their calls, replay or export them.",
    no_args_is_help=True,
)

SessionArgument = Annotated[
    str, typer.Argument(metavar="ID", help="A session key (ses_...) or a caller's session id.")
]


class Decision(StrEnum):
    allow = "allow"
    deny = "deny"
    error = "error"


class Sessions(Protocol):
    """Where sessions are read: rows in the admin API's JSON, refusals `AdminError`."""

    def list_sessions(
        self,
        user: str | None,
        connection: str | None,
        decision: str | None,
        since: str | None,
        limit: int,
    ) -> list[Row]: ...

    def session(self, session_id: str) -> Session: ...


class LocalSessions:
    """The policy file's session index and recording store."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def list_sessions(
        self,
        user: str | None,
        connection: str | None,
        decision: str | None,
        since: str | None,
        limit: int,
    ) -> list[Row]:
        try:
            moment = None if since is None else since_time(since)
        except ValueError as exc:
            raise AdminError(f"--since: {exc}.") from None
        summaries = self._run(
            lambda store: store.recorded.sessions(
                user=user, connection=connection, decision=decision, since=moment, limit=limit
            )
        )
        return [
            SessionInfo.model_validate(summary).model_dump(mode="json") for summary in summaries
        ]

    def session(self, session_id: str) -> Session:
        recordings = self._config.gateway.recordings

        async def load(store: Store) -> Session | None:
            storage = open_storage(recordings.store, dict(recordings.options))
            try:
                return await load_session(storage, store.recorded, session_id)
            finally:
                await storage.close()

        try:
            session = self._run(load)
        except AmbiguousSession as exc:
            raise AdminError(exc.message) from None
        if session is None:
            raise AdminError(unknown_session(session_id))
        return session

    def _run(self, action: Callable[[Store], Awaitable[T]]) -> T:
        async def run() -> T:
            async with await open_store(self._config.gateway.state) as store:
                return await action(store)

        try:
            return asyncio.run(run())
        except (StoreError, StorageError) as exc:
            raise AdminError(str(exc)) from None


class RemoteSessions(RemoteAdmin):
    """A gateway's `/api/v1/sessions`."""

    def list_sessions(
        self,
        user: str | None,
        connection: str | None,
        decision: str | None,
        since: str | None,
        limit: int,
    ) -> list[Row]:
        filters = {"user": user, "connection": connection, "decision": decision, "since": since}
        query = urlencode({**{k: v for k, v in filters.items() if v is not None}, "limit": limit})
        return self._rows(self._call("GET", f"/api/v1/sessions?{query}"))

    def session(self, session_id: str) -> Session:
        answer = self._call("GET", f"/api/v1/sessions/{quote(session_id, safe='')}")
        try:
            return Session.model_validate(answer)
        except ValidationError:
            raise AdminError(
                f"{self._url} answered with something other than a session; is it GeoGate?"
            ) from None


def _act(
    config: Path, gateway: str | None, token: str | None, action: Callable[[Sessions], T]
) -> T:
    """`action` on the local stores, or on `--gateway`; a refusal is printed and exits 1."""
    try:
        sessions: Sessions
        if gateway:
            url = gateway_url(gateway)
            sessions = RemoteSessions(url, token if token else saved_token(url))
        else:
            sessions = LocalSessions(open_config(config))
        return action(sessions)
    except AdminError as exc:
        fail(exc.message)


@app.command("list")
def list_(
    user: Annotated[str | None, typer.Option(help="Sessions with a call by this user.")] = None,
    connection: Annotated[
        str | None, typer.Option(help="Sessions with a call to this connection.")
    ] = None,
    decision: Annotated[
        Decision | None, typer.Option(help="Sessions with a call decided so.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Sessions with a call since a date or UTC time (2026-12-01) or 24h ago."),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many.")] = 100,
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """List recorded sessions, newest first."""
    wanted = None if decision is None else decision.value
    rows = _act(
        config,
        gateway,
        token,
        lambda sessions: sessions.list_sessions(user, connection, wanted, since, limit),
    )
    if json_output:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("No recorded session matches.")
        return
    table = Table(
        "Session",
        "Id",
        "Caller",
        "Started",
        "Calls",
        "Denied",
        "Connections",
        "Regions",
        "Bytes in",
        "Bytes out",
        box=box.SIMPLE,
        caption="Times in UTC; Id is the caller's x-geogate-session.",
    )
    for row in rows:
        table.add_row(
            row["key"],
            Text(printable(row["session"])),
            Text(printable(row.get("user") or row.get("subject") or "")),  # no rich markup
            format_time(parse_time(row.get("started"))),
            str(row["calls"]),
            str(row["denied"]),
            ", ".join(row["connections"]),
            ", ".join(row["regions"]),
            str(row["bytes_in"]),
            str(row["bytes_out"]),
        )
    print_table(table)


@app.command("show")
def show(
    session_id: SessionArgument,
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Show a session's calls: who, where to, decided how, under which policy, what was masked."""
    session = _act(config, gateway, token, lambda sessions: sessions.session(session_id))
    if json_output:
        typer.echo(_json(session))
        return
    info = session.summary
    typer.echo(
        f"Session {info.key} ({printable(info.session)}) of "
        f"{printable(info.user or info.subject or 'unknown caller')}: {info.calls} calls, "
        f"{info.denied} denied, {format_time(info.started)} to {format_time(info.ended)} UTC."
    )
    if session.missing:
        typer.echo(f"{session.missing} of its calls are no longer in the log (retention).")
    table = Table(
        "Time",
        "Request",
        "Connection",
        "Decision",
        "Status",
        "Region",
        "Policy",
        "Masked",
        "Bytes in",
        "Bytes out",
        box=box.SIMPLE,
        caption="Times in UTC; Region is the proven region and its evidence.",
    )
    for recorded in session.calls:
        table.add_row(*_call_row(recorded))
    print_table(table)


@app.command("replay")
def replay(
    session_id: SessionArgument,
    speed: Annotated[
        float,
        typer.Option(min=0, help="Replay streamed replies this many times faster; 0: at once."),
    ] = 1.0,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Print a session's conversation; streamed replies arrive chunk by chunk at their pace."""
    session = _act(config, gateway, token, lambda sessions: sessions.session(session_id))
    play(session, speed, lambda text: typer.echo(text, nl=False))


@app.command("export")
def export(
    session_id: SessionArgument,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Print a session and its calls' records, verbatim, as JSON."""
    session = _act(config, gateway, token, lambda sessions: sessions.session(session_id))
    typer.echo(_json(session))


def _json(session: Session) -> str:
    return json.dumps(session.model_dump(mode="json", by_alias=True), indent=2)


def _call_row(recorded: RecordedCall) -> list[str]:
    call, reply = recorded.call, recorded.reply
    outcome = reply if reply is not None else call  # a refusal has its outcome in itself
    if reply is None and call.get("kind") == "call":
        decision = "in flight"
    else:
        decision = " ".join(str(v) for v in (outcome.get("decision"), outcome.get("code")) if v)
    policy = call.get("policy")
    masked = (reply or {}).get("masked") or call.get("masked") or {}
    return [
        _when(call.get("at")),
        str(call.get("request_id", "")),
        str(call.get("connection") or ""),
        decision,
        str(outcome.get("status", "")),
        str((reply or {}).get("evidence") or call.get("region") or ""),
        f"{policy}@{call.get('policy_version')}" if policy else "",
        ",".join(f"{entity}={count}" for entity, count in dict(masked).items()),
        str((reply or {}).get("bytes_in", "")),
        str((reply or {}).get("bytes_out", "")),
    ]


def _when(value: object) -> str:
    try:
        return record_time(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


# --- replay -----------------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""Terminal controls, and the bidirectional marks and overrides that make a terminal show
text in another order than it is written (`photo\\u202egpj.exe` shows as `photoexe.jpg`)."""


def printable(text: str) -> str:
    """`text` with control characters (all but newline and tab) written as `\\xNN`, and
    bidirectional controls as `\\uNNNN`: recorded text is anyone's, and must show as it is."""
    return _CONTROL.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def schedule(turn: Turn, speed: float) -> list[tuple[float, str]]:
    """(seconds after the reply began, text) of each chunk of a streamed reply at `speed`."""
    return [(0.0 if speed == 0 else chunk.at / 1000 / speed, chunk.text) for chunk in turn.chunks]


def play(
    session: Session,
    speed: float,
    write: Callable[[str], None],
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Write the conversation, each streamed chunk when its time comes. Chunks are timed from
    the reply's start, not from the chunk before, so late wake-ups do not add up."""
    calls = {str(recorded.call.get("request_id")): recorded.call for recorded in session.calls}
    current: str | None = None
    for turn in conversation(session):
        if turn.request_id != current:
            current = turn.request_id
            call = calls.get(current, {})
            write(f"--- {current} to {call.get('connection')} at {_when(call.get('at'))} ---\n")
        write(f"{turn.role}: ")
        if not turn.chunks:
            write(printable(turn.text))
        began = clock()
        for offset, text in schedule(turn, speed):
            wait = began + offset - clock()
            if wait > 0:
                sleep(wait)
            write(printable(text))
        write(" [the record holds only its start]\n" if turn.truncated else "\n")
