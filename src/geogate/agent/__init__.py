"""Executors: the only code that talks to targets.

`LocalExecutor` sends from the gateway process; a network-resident agent (a later issue) runs
the same code inside the target's network behind the same `Executor` interface.
"""

from __future__ import annotations

from geogate.agent.executor import (
    Executor,
    UpstreamError,
    UpstreamRequest,
    UpstreamResponse,
)
from geogate.agent.local import LocalExecutor

__all__ = [
    "Executor",
    "LocalExecutor",
    "UpstreamError",
    "UpstreamRequest",
    "UpstreamResponse",
]
