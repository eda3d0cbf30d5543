"""How the demo LLM behaves: the upstream key it demands and how fast it streams."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoSettings:
    """`api_key` is the credential the gateway must inject; `chunk_delay` paces streamed events."""

    api_key: str = "demo-upstream-key"
    chunk_delay: float = 0.02

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError("The demo LLM needs a non-empty api_key to demand from callers.")
        if not self.chunk_delay >= 0:
            raise ValueError(f"chunk_delay must be 0 or more seconds, not {self.chunk_delay!r}.")
