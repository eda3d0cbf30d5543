"""What the review tests share: a chat call through the gateway, and the error it may get.

error = refused(client, "summarise ticket 9")          # approval_required, ...
assert error["code"] == "approval_required" and error["review_id"]
"""

from __future__ import annotations

from typing import Any

import openai
import pytest


def chat(client: openai.OpenAI, text: str, headers: dict[str, str] | None = None) -> str:
    """One user message; the demo LLM's answer (`You said: ...`)."""
    reply = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": text}], extra_headers=headers
    )
    return reply.choices[0].message.content or ""


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    """The gateway's error object (`code`, `message`, `review_id`, ...) the SDK raised with."""
    body = exc.body
    assert isinstance(body, dict)
    error = body.get("error", body)
    assert isinstance(error, dict)
    return error


def refused(
    client: openai.OpenAI,
    text: str,
    headers: dict[str, str] | None = None,
    raised: type[openai.APIStatusError] = openai.PermissionDeniedError,
) -> dict[str, Any]:
    """The error of a chat call that must be refused with `raised`."""
    with pytest.raises(raised) as caught:
        chat(client, text, headers)
    return error_of(caught.value)
