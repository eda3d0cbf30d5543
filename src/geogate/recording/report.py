"""`geogate audit report`: what an auditor asks of a period's recordings, as JSON or one HTML page.

    since, until = parse_period("2026-12-01", "2026-12-02")   # whole UTC days, --to inclusive
    report = await build_report(config, store, storage, verifier, since, until)
    report.to_json()   # for tools; `EvidenceReport.model_validate` reads it back
    report.to_html()   # one self-contained page: inline CSS, no scripts, nothing fetched

The period's calls come from the session index (one row per call, with its outcome and its
positions in the log); a refusal's message, which only the log holds, is read from the log
segments that hold those positions. Every log in the store is verified as `geogate audit
verify` does, and the steps of reviews (approvals) are collected from every log as it is read
for that. The report names the signed checkpoints that commit to the period's records, so an
auditor can hold them against a witness's copies.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from pydantic import BaseModel

from geogate.config import Config
from geogate.recording.log import (
    LogReader,
    Record,
    parse_time,
)
from geogate.recording.note import Verifier
from geogate.recording.storage import Storage, open_storage
from geogate.recording.verify import Report, verify
from geogate.residency import catalog_for
from geogate.store import CallRow, Store

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
IDENTITY_DISABLED = "identity_disabled"


def parse_moment(text: str, *, end: bool = False) -> datetime:
    """`YYYY-MM-DD` (a whole UTC day: its start, or with `end` the start of the next day) or an
    ISO timestamp (UTC unless it names an offset)."""
    text = text.strip()
    try:
        if _DATE.fullmatch(text):
            day = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date (2026-12-01) or an ISO timestamp (2026-12-01T08:00:00Z)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_period(start: str, end: str) -> tuple[datetime, datetime]:
    """[since, until) of `--from` and `--to`; a date as `--to` includes that whole day."""
    since, until = parse_moment(start), parse_moment(end, end=True)
    if since >= until:
        raise ValueError(f"the period from {start} to {end} is empty: --from must come first")
    return since, until


class Totals(BaseModel):
    calls: int
    allowed: int
    denied: int
    errors: int
    callers: int
    sessions: int
    bytes_in: int
    bytes_out: int


class RegionCalls(BaseModel):
    region: str
    jurisdictions: list[str]
    """Every jurisdiction the region lies inside (empty: unknown to this policy file)."""
    calls: int


class JurisdictionCalls(BaseModel):
    jurisdiction: str
    calls: int


class Blocked(BaseModel):
    at: datetime
    caller: str | None
    """The user (or subject) of the credential; None when none was proven."""
    connection: str | None
    code: str | None
    reason: str
    log: str
    position: int


class Approval(BaseModel):
    at: datetime
    kind: str
    request_id: str | None
    by: str | None
    decision: str | None
    log: str
    position: int


class DisabledUser(BaseModel):
    user: str
    attempts: int
    first: datetime
    last: datetime
    connections: list[str]


class SignedHead(BaseModel):
    """A signed checkpoint that commits to some of the period's records."""

    log: str
    size: int
    root: str
    """The Merkle root, hex."""


class Unsigned(BaseModel):
    """Records of the period no checkpoint covers yet (signed at the next checkpoint)."""

    log: str
    first: int
    last: int


class ProblemRow(BaseModel):
    kind: str
    position: int | None
    message: str


class LogResult(BaseModel):
    log: str
    records: int
    deleted: int
    checkpoints: int
    signed: int
    unsigned: int
    ok: bool
    problems: list[ProblemRow]

    COLUMNS: ClassVar[tuple[str, ...]] = (
        "Log",
        "Records",
        "Deleted by retention",
        "Checkpoints verified",
        "Signed",
        "Unsigned",
        "Result",
    )
    """The headings of `cells`, in the terminal's table and the report's alike."""

    def cells(self) -> list[str | int]:
        return [
            self.log,
            self.records,
            self.deleted,
            self.checkpoints,
            self.signed,
            self.unsigned,
            "ok" if self.ok else "FAILED",
        ]


class Verification(BaseModel):
    """`verify.Report.to_json()`, typed: what `geogate audit verify --json` prints."""

    ok: bool
    key: str
    logs: list[LogResult]
    problems: list[ProblemRow]

    @classmethod
    def of(cls, report: Report) -> Verification:
        return cls.model_validate(report.to_json())

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def verdict(self) -> str:
        """One line for the top of a report."""
        records = sum(log.records for log in self.logs)
        if self.ok:
            return (
                f"verified: {records} records in {len(self.logs)} log(s), none changed, "
                "removed or reordered"
            )
        count = len(self.problems) + sum(len(log.problems) for log in self.logs)
        return f"FAILED verification: {count} problem(s), listed under Verification"


class EvidenceReport(BaseModel):
    since: datetime
    until: datetime
    """The end of the period, excluded."""
    gateway_region: str | None
    generated_at: datetime
    totals: Totals
    regions: list[RegionCalls]
    jurisdictions: list[JurisdictionCalls]
    blocked: list[Blocked]
    approvals: list[Approval]
    masked: dict[str, int]
    """Values masked per entity, request and reply together."""
    disabled: list[DisabledUser]
    """Calls refused because their user was deactivated (`identity_disabled`), by user."""
    verification: Verification
    checkpoints: list[SignedHead]
    unsigned: list[Unsigned]

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_html(self) -> str:
        return _render(self)


async def build_report(
    config: Config,
    store: Store,
    storage: Storage,
    verifier: Verifier,
    since: datetime,
    until: datetime,
) -> EvidenceReport:
    """The report of [since, until): the index for the calls, the log for the rest."""
    settings = config.gateway.recordings
    witness = (
        open_storage(settings.witness, dict(settings.witness_options)) if settings.witness else None
    )
    approvals: list[Approval] = []

    def collect(log: str, position: int, record: Record) -> None:
        """Review steps are read from every log, as verification reads it: a decision is
        recorded by the worker that took it, whether or not that worker forwarded calls."""
        approval = _approval(record, log, position, since, until)
        if approval is not None:
            approvals.append(approval)

    try:
        checked = await verify(
            storage, verifier, witness=witness, index=store.recorded, on_record=collect
        )
    finally:
        if witness is not None:
            await witness.close()
    approvals.sort(key=lambda approval: approval.at)
    rows = await store.recorded.between(since, until)
    records = await _read_period(storage, rows)
    catalog = catalog_for(config.regions, config.jurisdictions)

    by_region = Counter(row.region for row in rows if row.region is not None)
    regions = [
        RegionCalls(
            region=region,
            jurisdictions=sorted(place.jurisdictions) if (place := catalog.get(region)) else [],
            calls=calls,
        )
        for region, calls in sorted(by_region.items())
    ]
    by_jurisdiction: Counter[str] = Counter()
    for counted in regions:
        for jurisdiction in counted.jurisdictions:
            by_jurisdiction[jurisdiction] += counted.calls

    masked: Counter[str] = Counter()
    for row in rows:
        # A row holds its reply's counts (request and reply together) once the reply is in,
        # its call record's before: adding both would count the request's values twice.
        masked.update(row.masked or {})

    heads, unsigned = _signed_heads({log.log: log.roots for log in checked.logs}, rows)
    return EvidenceReport(
        since=since,
        until=until,
        gateway_region=config.gateway.region,
        generated_at=datetime.now(UTC),
        totals=Totals(
            calls=len(rows),
            allowed=sum(1 for row in rows if row.decision == "allow"),
            denied=sum(1 for row in rows if row.decision == "deny"),
            errors=sum(1 for row in rows if row.decision == "error"),
            callers=len({_caller(row) for row in rows} - {None}),
            sessions=len({row.session_key for row in rows}),
            bytes_in=sum(row.bytes_in for row in rows),
            bytes_out=sum(row.bytes_out for row in rows),
        ),
        regions=regions,
        jurisdictions=[
            JurisdictionCalls(jurisdiction=name, calls=calls)
            for name, calls in sorted(by_jurisdiction.items(), key=lambda item: (-item[1], item[0]))
        ],
        blocked=[
            Blocked(
                at=row.at,
                caller=_caller(row),
                connection=row.connection,
                code=row.code,
                reason=_reason(row, records.get((row.log, row.last_index))),
                log=row.log,
                position=row.last_index,
            )
            for row in rows
            if row.decision == "deny"
        ],
        approvals=approvals,
        masked=dict(sorted(masked.items())),
        disabled=_disabled(rows),
        verification=Verification.of(checked),
        checkpoints=heads,
        unsigned=unsigned,
    )


def _caller(row: CallRow) -> str | None:
    return row.user or row.subject


def _reason(row: CallRow, record: Record | None) -> str:
    """The refusal's message as recorded; the record itself decides, not the index's copy."""
    where = f"record {row.last_index} of log {row.log}"
    if record is None:
        return f"({where} is gone: deleted by retention, or see the verification)"
    if record.get("request_id") != row.request_id:
        return f"({where} is not this call's: see the verification)"
    message = record.get("message")
    if isinstance(message, str) and message:
        return message
    return f"the reply was refused ({row.code or 'no code'})"


def _disabled(rows: Sequence[CallRow]) -> list[DisabledUser]:
    attempts: dict[str, list[CallRow]] = {}
    for row in rows:
        if row.code == IDENTITY_DISABLED:
            attempts.setdefault(_caller(row) or "(unknown)", []).append(row)
    return [
        DisabledUser(
            user=user,
            attempts=len(calls),
            first=calls[0].at,
            last=calls[-1].at,
            connections=sorted({call.connection for call in calls if call.connection}),
        )
        for user, calls in sorted(attempts.items())
    ]


async def _read_period(storage: Storage, rows: Sequence[CallRow]) -> dict[tuple[str, int], Record]:
    """The records of the segments that hold the period's calls, by (log, position). Lines
    are placed by their segment's first index; a record that is not where the index says is
    left for `_reason` to flag (verification says why)."""
    records: dict[tuple[str, int], Record] = {}
    spans: dict[str, tuple[int, int]] = {}
    for row in rows:
        low, high = spans.get(row.log, (row.first_index, row.last_index))
        spans[row.log] = (min(low, row.first_index), max(high, row.last_index))
    for log, (low, high) in sorted(spans.items()):
        async for position, record in LogReader(storage, log).between(low, high):
            records[(log, position)] = record
    return records


def _approval(
    record: Record, log: str, position: int, since: datetime, until: datetime
) -> Approval | None:
    kind = record.get("kind")
    if not isinstance(kind, str) or not kind.startswith("review"):
        return None
    try:
        at = parse_time(str(record.get("at")))
    except ValueError:
        return None
    if not since <= at < until:
        return None
    by = record["reviewer"] if "reviewer" in record else record.get("user")
    request_id, decision = record.get("request_id"), record.get("decision")
    return Approval(
        at=at,
        kind=kind,
        request_id=request_id if isinstance(request_id, str) else None,
        by=by if isinstance(by, str) else None,
        decision=decision if isinstance(decision, str) else None,
        log=log,
        position=position,
    )


def _signed_heads(
    roots: dict[str, dict[int, bytes]], rows: Sequence[CallRow]
) -> tuple[list[SignedHead], list[Unsigned]]:
    """Per log, the valid checkpoints (`roots`, as verification found them) from the first
    that holds a record of the period up to the first that holds them all; the records none
    holds yet."""
    heads: list[SignedHead] = []
    unsigned: list[Unsigned] = []
    positions: dict[str, list[int]] = {}
    for row in rows:
        positions.setdefault(row.log, []).extend((row.first_index, row.last_index))
    for log, held in sorted(positions.items()):
        low, high = min(held), max(held)
        signed = 0
        for size, root in sorted(roots.get(log, {}).items()):
            if size <= low:
                continue
            heads.append(SignedHead(log=log, size=size, root=root.hex()))
            signed = size
            if size > high:
                break
        if signed <= high:
            unsigned.append(Unsigned(log=log, first=max(low, signed), last=high))
    return heads, unsigned


# --- HTML ---------------------------------------------------------------------------------

_STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d232b;margin:2rem auto;
max-width:72rem;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.3rem}h2{font-size:1.15rem;margin-top:2rem;
border-bottom:1px solid #d5dae0;padding-bottom:.2rem}
dl.meta{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}
dd{margin:0}
table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d5dae0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f1f3f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em;word-break:break-all}
.verdict{padding:.6rem .9rem;border-radius:4px;font-weight:600;margin:1rem 0}
.ok{background:#e3f5e8;border:1px solid #7cc592}.failed{background:#fbe4e4;border:1px solid #e08b8b}
.none{color:#5b6570;font-style:italic}
@media print{body{margin:0;max-width:none}}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], classes: dict[int, str]
) -> str:
    """A table of escaped cells; `classes` styles columns ("n" numbers, "mono" hashes)."""
    head = "".join(f"<th>{_e(header)}</th>" for header in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="{classes[column]}">{_e(cell)}</td>'
            if column in classes
            else f"<td>{_e(cell)}</td>"
            for column, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _none(text: str) -> str:
    return f'<p class="none">{_e(text)}</p>'


def _section(title: str, content: str) -> str:
    return f"<section><h2>{_e(title)}</h2>{content}</section>"


def _render(report: EvidenceReport) -> str:
    check = report.verification
    totals = report.totals
    period = f"{_time(report.since)} to {_time(report.until)} (end excluded)"
    sections = [
        _section(
            "Totals",
            _table(
                ["", "Count"],
                [
                    ["Calls", totals.calls],
                    ["Allowed", totals.allowed],
                    ["Denied", totals.denied],
                    ["Errors", totals.errors],
                    ["Callers", totals.callers],
                    ["Sessions", totals.sessions],
                    ["Bytes sent by callers", totals.bytes_in],
                    ["Bytes returned to callers", totals.bytes_out],
                ],
                {1: "n"},
            ),
        ),
        _section(
            "Calls by jurisdiction",
            _table(
                ["Jurisdiction", "Calls"],
                [[row.jurisdiction, row.calls] for row in report.jurisdictions],
                {1: "n"},
            )
            if report.jurisdictions
            else _none("No call was routed to a region in this period."),
        ),
        _section(
            "Calls by region",
            _table(
                ["Region", "Jurisdictions", "Calls"],
                [
                    [row.region, ", ".join(row.jurisdictions) or "(not in the catalog)", row.calls]
                    for row in report.regions
                ],
                {2: "n"},
            )
            if report.regions
            else _none("No call was routed to a region in this period."),
        ),
        _section(
            f"Blocked attempts ({len(report.blocked)})",
            _table(
                ["Time", "Caller", "Connection", "Code", "Reason", "Record"],
                [
                    [
                        _time(row.at),
                        row.caller or "(no credential proven)",
                        row.connection,
                        row.code,
                        row.reason,
                        f"{row.log} #{row.position}",
                    ]
                    for row in report.blocked
                ],
                {},
            )
            if report.blocked
            else _none("No attempt was blocked in this period."),
        ),
        _section(
            f"Approvals ({len(report.approvals)})",
            _table(
                ["Time", "Kind", "Request", "By", "Decision", "Record"],
                [
                    [
                        _time(row.at),
                        row.kind,
                        row.request_id,
                        row.by,
                        row.decision,
                        f"{row.log} #{row.position}",
                    ]
                    for row in report.approvals
                ],
                {},
            )
            if report.approvals
            else _none("No approvals in this period."),
        ),
        _section(
            "Masked values by entity",
            _table(["Entity", "Values masked"], list(report.masked.items()), {1: "n"})
            if report.masked
            else _none("Nothing was masked in this period."),
        ),
        _section(
            "Refused calls of deactivated users",
            _table(
                ["User", "Attempts", "First", "Last", "Connections"],
                [
                    [
                        row.user,
                        row.attempts,
                        _time(row.first),
                        _time(row.last),
                        ", ".join(row.connections),
                    ]
                    for row in report.disabled
                ],
                {1: "n"},
            )
            if report.disabled
            else _none("No deactivated user attempted a call in this period."),
        ),
        _section("Verification of the log", _verification(check)),
        _section("Signed checkpoints covering the period", _heads(report)),
    ]
    verdict_class = "ok" if check.ok else "failed"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>GeoGate evidence report {_e(period)}</title><style>{_STYLE}</style></head>"
        "<body><header><h1>GeoGate evidence report</h1>"
        '<dl class="meta">'
        f"<dt>Period</dt><dd>{_e(period)}</dd>"
        f"<dt>Gateway region</dt><dd>{_e(report.gateway_region or '(not set)')}</dd>"
        f"<dt>Generated at</dt><dd>{_e(_time(report.generated_at))}</dd>"
        f'<dt>Audit key</dt><dd class="mono">{_e(check.key)}</dd>'
        "</dl>"
        f'<p class="verdict {verdict_class}">Log {_e(check.verdict())}</p>'
        "</header><main>" + "".join(sections) + "</main></body></html>\n"
    )


def _verification(check: Verification) -> str:
    logs = _table(
        LogResult.COLUMNS,
        [log.cells() for log in check.logs],
        dict.fromkeys(range(1, 6), "n"),
    )
    problems = [
        [log.log, problem.kind, problem.position, problem.message]
        for log in check.logs
        for problem in log.problems
    ] + [["(store)", problem.kind, problem.position, problem.message] for problem in check.problems]
    if not check.logs:
        logs = _none("The recording store holds no logs.")
    if not problems:
        return logs + _none("No problems: every record is where it claims, chained and signed.")
    return logs + _table(["Log", "Problem", "Position", "What was found"], problems, {2: "n"})


def _heads(report: EvidenceReport) -> str:
    parts = []
    if report.checkpoints:
        parts.append(
            _table(
                ["Log", "Size (records)", "Root (SHA-256, hex)"],
                [[head.log, head.size, head.root] for head in report.checkpoints],
                {1: "n", 2: "mono"},
            )
        )
    else:
        parts.append(_none("No signed checkpoint covers this period's records yet."))
    parts.extend(
        _none(
            f"Records {row.first} to {row.last} of log {row.log} are not signed yet: the "
            "gateway signs them at its next checkpoint."
        )
        for row in report.unsigned
    )
    return "".join(parts)
