"""The console's HTML pages: one inert shape for every page, and refusals shown as pages.

Every page is inert: a Content-Security-Policy lets nothing load or run, forms post only to
the gateway, and no other site may frame a page (an approve button under someone else's page
is the clickjacking attack).
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


class PageError(Exception):
    """A request the console refuses; shown as a short page that says why, never a traceback.

    `back` is a path of this site to link to (the review the person came from).
    """

    def __init__(self, title: str, message: str, status: int, back: str | None = None) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.status = status
        self.back = back


def guarded(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Turn refusals (a failed sign-in, a decision not taken) into a page that says why."""

    async def run(request: Request) -> Response:
        try:
            return await endpoint(request)
        except PageError as exc:
            back = (
                f'<p><a href="{html.escape(exc.back)}">Back to the review</a></p>'
                if exc.back is not None
                else ""
            )
            return page(exc.title, f"<p>{html.escape(exc.message)}</p>{back}", exc.status)

    return run


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    """A console path nothing serves (`/reviews/a/b`): the same inert page as the others."""
    response = page("Not found", "<p>Nothing is served at this address.</p>", 404)
    await response(scope, receive, send)


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>",
        status_code=status,
        headers=PAGE_HEADERS,
    )
