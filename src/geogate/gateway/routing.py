"""Choosing among a connection's targets: round robin over those the policy allows.

A target that could not be reached (nothing was sent) is skipped for `cool_down` seconds; if
every allowed target is cooling down they are all tried again rather than none. Only targets
the decision allows are ever handed out, so a failover never leaves the policy's regions.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict


class Router:
    def __init__(self, cool_down: float = 30.0) -> None:
        self._cool_down = cool_down
        self._turns: defaultdict[str, itertools.count[int]] = defaultdict(itertools.count)
        self._down_until: dict[tuple[str, int], float] = {}

    def order(self, connection: str, allowed: tuple[int, ...]) -> list[int]:
        """The allowed targets in the order to try them: this turn's first, cooling ones last."""
        if len(allowed) == 1:
            return list(allowed)
        start = next(self._turns[connection]) % len(allowed)
        rotated = allowed[start:] + allowed[:start]
        now = time.monotonic()
        healthy = [i for i in rotated if self._down_until.get((connection, i), 0.0) <= now]
        return healthy + [i for i in rotated if i not in healthy]

    def failed(self, connection: str, target: int) -> None:
        self._down_until[connection, target] = time.monotonic() + self._cool_down

    def worked(self, connection: str, target: int) -> None:
        self._down_until.pop((connection, target), None)
