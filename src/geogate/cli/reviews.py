"""`geogate reviews`: the calls waiting for an approval, and deciding them as yourself.

    geogate reviews list --status pending
    geogate reviews approve rev_3f9a... --reason "ticket SEC-42"
    geogate reviews deny rev_3f9a... --reason "not during the freeze"
    geogate reviews list --gateway https://gw.example.eu --json

`list` without `--gateway` reads the policy file's state store as the operator: every review.
Approving or denying always acts as a person, through a gateway's admin API: `--gateway`, else
the policy file's own gateway (`gateway.listen`), with `--token` or the sign-in `geogate login`
saved. The gateway checks that this person is an approver and not the caller. What callers sent
and approvers wrote is printed on one line each, with control characters escaped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, urlencode

import typer
from pydantic import ValidationError
from rich import box
from rich.table import Table
from rich.text import Text

from geogate.cli.admin import AdminError, RemoteAdmin, gateway_url, saved_token
from geogate.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    GatewayOption,
    JsonOption,
    TokenOption,
    fail,
    format_time,
    open_config,
    parse_listen,
    print_table,
    run_on_store,
)
from geogate.cli.sessions import printable
from geogate.config import Config
from geogate.reviews import ReviewInfo, review_info
from geogate.store import ReviewRow, ReviewStore
from geogate.store.reviews import EXPIRED, PENDING, approvals, overdue

T = TypeVar("T")

app = typer.Typer(
    help="Calls waiting for an approval: list them, approve or deny them as yourself.",
    no_args_is_help=True,
)

ReviewArgument = Annotated[str, typer.Argument(metavar="ID", help="The review id (rev_...).")]
ReasonOption = Annotated[
    str | None,
    typer.Option(
        help="Why, in the review's record; a denial's reason is told to the caller.",
        show_default=False,
    ),
]

PREVIEW_WIDTH = 60
"""Characters of a call's text (and of a vote's reason) a table shows; `--json` has it all."""
_REVIEW_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
"""What a review id may look like: a path segment of its own, nothing a URL would reinterpret."""
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


class Status(StrEnum):
    pending = "pending"
    approved = "approved"
    denied = "denied"
    expired = "expired"
    used = "used"
    withdrawn = "withdrawn"


class RemoteReviews(RemoteAdmin):
    """A gateway's `/api/v1/reviews`, as the person of the token."""

    def list_reviews(self, status: str | None, limit: int) -> list[ReviewInfo]:
        query = urlencode({**({"status": status} if status else {}), "limit": limit})
        answer = self._rows(self._call("GET", f"/api/v1/reviews?{query}"))
        return [self._review(row) for row in answer]

    def decide(self, review_id: str, approve: bool, reason: str | None) -> ReviewInfo:
        action = "approve" if approve else "deny"
        path = f"/api/v1/reviews/{quote(review_id, safe='')}/{action}"
        return self._review(self._call("POST", path, {"reason": reason} if reason else None))

    def _review(self, answer: Any) -> ReviewInfo:
        try:
            return ReviewInfo.model_validate(answer)
        except ValidationError:
            raise AdminError(
                f"{self._url} answered with something other than a review; is it GeoGate?"
            ) from None


@app.command("list")
def list_(
    status: Annotated[Status | None, typer.Option(help="Only reviews in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many.")] = 100,
    json_output: JsonOption = False,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """List reviews, newest first: every one here, the ones you may see with --gateway."""
    wanted = None if status is None else status.value
    if gateway:
        reviews = _remote(gateway, token, lambda remote: remote.list_reviews(wanted, limit))
    else:
        reviews = _local(open_config(config), wanted, limit)
    if json_output:
        typer.echo(json.dumps([review.model_dump(mode="json") for review in reviews], indent=2))
        return
    if not reviews:
        typer.echo("No review matches.")
        return
    table = Table(
        "Review",
        "Status",
        "Caller",
        "Connection",
        "Policy",
        "Requested",
        "Deadline/Decided",
        "Votes",
        "Preview",
        box=box.SIMPLE,
        caption="Times in UTC: a pending review's deadline, else when it was decided.",
    )
    for review in reviews:
        ends = review.deadline if review.status == PENDING else review.decided_at
        table.add_row(
            _cell(review.id),
            _cell(review.status),
            _cell(review.subject),
            _cell(review.connection),
            _cell(review.policy),
            format_time(review.requested_at),
            format_time(ends),
            Text("\n".join(_vote(vote) for vote in review.votes)),
            _cell(str(review.summary.get("preview") or ""), PREVIEW_WIDTH),
        )
    print_table(table)


@app.command("approve")
def approve(
    review_id: ReviewArgument,
    reason: ReasonOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Approve a call as yourself; it goes once the review has the approvals it needs."""
    review = _decide(review_id, True, reason, config, gateway, token)
    name = printable(review.id)
    if review.status == PENDING:
        typer.echo(
            f"Approved {name}; it is still pending: {approvals(review.votes)} of "
            f"{review.min_approvals} approvals."
        )
    elif review.grant_until is not None:
        typer.echo(
            f"Approved {name} (approved: {_one_line(review.subject)} may call "
            f"{_one_line(review.connection)} until {format_time(review.grant_until)} UTC)."
        )
    elif review.mode == "hold":
        typer.echo(f"Approved {name} (approved: the held call goes now).")
    else:
        typer.echo(f"Approved {name} (approved: the call may go once it is sent again).")


@app.command("deny")
def deny(
    review_id: ReviewArgument,
    reason: ReasonOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    gateway: GatewayOption = None,
    token: TokenOption = None,
) -> None:
    """Deny a call as yourself: one denial decides, and the caller is told your reason."""
    review = _decide(review_id, False, reason, config, gateway, token)
    told = f" ({_one_line(review.subject)} is told: {_one_line(reason)})" if reason else ""
    typer.echo(f"Denied {printable(review.id)}{told}.")


def _decide(
    review_id: str,
    approve: bool,
    reason: str | None,
    config: Path,
    gateway: str | None,
    token: str | None,
) -> ReviewInfo:
    """A vote is a person's, so it always goes through a gateway, by default the policy's own."""
    if not _REVIEW_ID.fullmatch(review_id):
        fail(f"{review_id!r} is not a review id (rev_ and letters or digits).")
    where = gateway or _listen_url(open_config(config))
    return _remote(where, token, lambda remote: remote.decide(review_id, approve, reason))


def _remote(gateway: str, token: str | None, action: Callable[[RemoteReviews], T]) -> T:
    """`action` on `gateway` as `token`, or the sign-in saved for it; a refusal exits 1."""
    try:
        url = gateway_url(gateway)
        return action(RemoteReviews(url, token if token else saved_token(url)))
    except AdminError as exc:
        fail(exc.message)


def _listen_url(config: Config) -> str:
    """The policy file's gateway as reached from this machine (all interfaces: loopback)."""
    host, port = parse_listen(config.gateway.listen)
    host = _WILDCARDS.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --- here: the policy file's state store ------------------------------------------------------


def _local(config: Config, status: str | None, limit: int) -> list[ReviewInfo]:
    base = config.gateway.own_url  # as the gateway links
    now = datetime.now(UTC)
    rows = run_on_store(config, lambda store: _find(store.reviews, status, limit, now))
    return [review_info(row, base) for row in rows]


async def _find(
    store: ReviewStore, status: str | None, limit: int, now: datetime
) -> list[ReviewRow]:
    """Newest first, as they stand at `now` (see `_as_of`). Showing a review other than as
    stored can drop it from a page, so pages grow until `limit` are shown or none are left."""
    source = None if status == EXPIRED else status  # any open review may have run out
    fetch = limit
    while True:
        found = await store.find(status=source, limit=fetch)
        shown = [_as_of(row, now) for row in found]
        shown = [row for row in shown if status is None or row.status == status]
        if len(shown) >= limit or len(found) < fetch:
            return shown[:limit]
        fetch *= 2


def _as_of(row: ReviewRow, now: datetime) -> ReviewRow:
    """A review whose time ran out shows as expired, as the gateway's next sweep makes it;
    reading does not write, so the gateway still records the expiry itself."""
    if not overdue(row, now):
        return row
    return replace(row, status=EXPIRED, decided_at=row.decided_at or row.deadline)


# --- printing ---------------------------------------------------------------------------------


def _vote(vote: dict[str, Any]) -> str:
    """`bob@example.com deny: not during the freeze`."""
    reason = vote.get("reason")
    said = f": {_one_line(str(reason), PREVIEW_WIDTH)}" if reason else ""
    return f"{_one_line(str(vote.get('by')))} {_one_line(str(vote.get('decision')))}{said}"


def _cell(text: str, width: int | None = None) -> Text:
    """Plain text (no rich markup) on one line."""
    return Text(_one_line(text, width))


def _one_line(text: str, width: int | None = None) -> str:
    """`text` cut to `width` characters, with control characters escaped and line breaks as
    spaces: a caller's or approver's words cannot move the cursor or restyle the terminal."""
    cut = width is not None and len(text) > width
    shown = " ".join(printable(text[:width] if cut else text).split())
    return shown + "…" if cut else shown
