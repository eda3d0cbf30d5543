"""The index of recorded calls: what `geogate sessions list` filters without reading the log.

The recorder writes a row when it records a call (`add`) and fills in the outcome when it
records the reply (`finish`). Rows are a copy: after a crash the recorder indexes again what
the log holds beyond `last_index`, and `geogate audit verify` checks the log, not this table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from geogate.store.models import RecordedCall, RecordedLog, UtcDateTime


@dataclass(frozen=True, slots=True)
class CallRow:
    request_id: str
    session_key: str
    session: str
    at: datetime
    subject: str | None
    user: str | None
    connection: str | None
    policy: str | None
    decision: str
    code: str | None
    region: str | None
    status: int
    bytes_in: int
    bytes_out: int
    masked: dict[str, int] | None
    log: str
    first_index: int
    last_index: int


@dataclass(frozen=True, slots=True)
class SessionSummary:
    key: str
    session: str
    subject: str | None
    user: str | None
    started: datetime
    ended: datetime
    calls: int
    denied: int
    connections: tuple[str, ...]
    regions: tuple[str, ...]
    bytes_in: int
    bytes_out: int


_COLUMNS = tuple(CallRow.__dataclass_fields__)
FINISHED = (
    "decision", "code", "region", "status", "bytes_in", "bytes_out", "masked", "last_index",
)  # fmt: skip
"""What a reply fills in."""


class RecordIndex:
    def __init__(self, engine: AsyncEngine, writer: AsyncEngine) -> None:
        self._engine = engine
        self._writer = writer
        self._compiled: tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]] | None = None

    async def add(self, log: str, rows: Sequence[Mapping[str, Any]], indexed_to: int) -> None:
        """Index finished calls of `log` (a call indexed already, the log read again after a
        crash, is kept) and move its mark on to `indexed_to`, in one transaction."""
        insert = postgresql.insert if self._writer.dialect.name == "postgresql" else sqlite.insert
        mark = insert(RecordedLog).values(log=log, indexed_to=indexed_to)
        mark = mark.on_conflict_do_update(index_elements=["log"], set_={"indexed_to": indexed_to})
        async with self._writer.begin() as conn:
            if rows:
                sql, bind = self._insert()
                await conn.exec_driver_sql(sql, [bind(row) for row in rows])
            await conn.execute(mark)

    def _insert(self) -> tuple[str, Callable[[Mapping[str, Any]], tuple[Any, ...]]]:
        """The insert of index rows, compiled once, and a function that binds one row.

        A worker indexes every call it forwards; SQLAlchemy's per-execution parameter
        handling cost more than the database itself (about 25 µs a row on the event loop),
        so rows go to the driver as tuples, through each column's own bind processor."""
        if self._compiled is None:
            dialect = self._writer.dialect
            insert = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
            statement = insert(RecordedCall).on_conflict_do_nothing(index_elements=["request_id"])
            compiled = statement.compile(dialect=dialect, column_keys=list(_COLUMNS))
            names = tuple(compiled.positiontup or ())
            columns = RecordedCall.__table__.c
            processors = [columns[name].type.bind_processor(dialect) for name in names]
            steps = tuple(zip(names, processors, strict=True))

            def bind(row: Mapping[str, Any]) -> tuple[Any, ...]:
                return tuple(
                    row[name] if process is None else process(row[name]) for name, process in steps
                )

            self._compiled = (str(compiled), bind)
        return self._compiled

    async def finish(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Fill in outcomes of calls indexed before their reply (`request_id` and `FINISHED`)."""
        if not rows:
            return
        statement = (
            update(RecordedCall)
            .where(RecordedCall.request_id == bindparam("finished_id"))
            .values({name: bindparam(name) for name in FINISHED})
        )
        values = [
            {"finished_id": row["request_id"], **{n: row[n] for n in FINISHED}} for row in rows
        ]
        async with self._writer.begin() as conn:
            await conn.execute(statement, values)  # one statement, executed for every row

    async def indexed_to(self, log: str) -> int:
        """Where indexing `log` goes on from after a restart (0: from its start)."""
        query = select(RecordedLog.indexed_to).where(RecordedLog.log == log)
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return 0 if value is None else int(value)

    async def last_index(self, log: str) -> int:
        """The highest log position indexed for `log`, -1 when none."""
        query = select(func.max(RecordedCall.last_index)).where(RecordedCall.log == log)
        async with self._engine.connect() as conn:
            value = (await conn.execute(query)).scalar()
        return -1 if value is None else int(value)

    async def sessions(
        self,
        *,
        user: str | None = None,
        connection: str | None = None,
        decision: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[SessionSummary]:
        """Sessions with at least one call matching every filter given, newest first."""
        matching = select(RecordedCall.session_key)
        if user is not None:
            matching = matching.where(or_(RecordedCall.user == user, RecordedCall.subject == user))
        if connection is not None:
            matching = matching.where(RecordedCall.connection == connection)
        if decision is not None:
            matching = matching.where(RecordedCall.decision == decision)
        if since is not None:
            matching = matching.where(RecordedCall.at >= literal(since, UtcDateTime()))
        if until is not None:
            matching = matching.where(RecordedCall.at < literal(until, UtcDateTime()))
        query = (
            select(RecordedCall)
            .where(RecordedCall.session_key.in_(matching.distinct()))
            .order_by(RecordedCall.at)
        )
        async with self._engine.connect() as conn:
            rows = [_row(row) for row in (await conn.execute(query)).all()]
        grouped: dict[str, list[CallRow]] = {}
        for row in rows:
            grouped.setdefault(row.session_key, []).append(row)
        summaries = [summarize(calls) for calls in grouped.values()]
        summaries.sort(key=lambda summary: summary.started, reverse=True)
        return summaries[:limit]

    async def calls(self, session: str) -> list[CallRow]:
        """A session's calls in order, by its key (`ses_...`) or the caller's session id."""
        query = (
            select(RecordedCall)
            .where(or_(RecordedCall.session_key == session, RecordedCall.session == session))
            .order_by(RecordedCall.at, RecordedCall.first_index)
        )
        async with self._engine.connect() as conn:
            return [_row(row) for row in (await conn.execute(query)).all()]

    async def between(self, since: datetime, until: datetime) -> list[CallRow]:
        query = (
            select(RecordedCall)
            .where(RecordedCall.at >= literal(since, UtcDateTime()))
            .where(RecordedCall.at < literal(until, UtcDateTime()))
            .order_by(RecordedCall.at)
        )
        async with self._engine.connect() as conn:
            return [_row(row) for row in (await conn.execute(query)).all()]


def _row(row: Any) -> CallRow:
    return CallRow(*(row._mapping[name] for name in _COLUMNS))


def summarize(calls: list[CallRow]) -> SessionSummary:
    """A session's figures from its calls, in order."""
    first = calls[0]
    return SessionSummary(
        key=first.session_key,
        session=first.session,
        subject=first.subject,
        user=first.user,
        started=first.at,
        ended=calls[-1].at,
        calls=len(calls),
        denied=sum(1 for call in calls if call.decision == "deny"),
        connections=tuple(dict.fromkeys(c.connection for c in calls if c.connection)),
        regions=tuple(dict.fromkeys(c.region for c in calls if c.region)),
        bytes_in=sum(call.bytes_in for call in calls),
        bytes_out=sum(call.bytes_out for call in calls),
    )
