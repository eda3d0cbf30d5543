"""Turning interleaved direct/gateway runs into the figures and the verdict against the targets.

Every gateway run is paired with the direct run just before it, and the figure is the median of
the per-pair differences (or ratios); the spread over the pairs shows the run's own noise.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ADDED_P50_TARGET_MS = 0.5
"""Added p50 at concurrency 1, with authentication and policy on."""
THROUGHPUT_TARGET = 0.5
"""Gateway requests/s over direct requests/s at concurrency 32."""

Run = dict[str, Any]
"""One load-generator result (see `bench.load.Result`) plus `cpu_us` per process role."""


@dataclass
class Case:
    """All repetitions of one (upstream, load shape) pair, direct and through the gateway."""

    upstream: str
    name: str
    concurrency: int
    streaming: bool
    direct: list[Run] = field(default_factory=list)
    gateway: list[Run] = field(default_factory=list)
    gateway_view: dict[str, float] = field(default_factory=dict)
    """The gateway's own `geogate_added_latency_seconds` over this case's gateway runs."""

    def median(self, path: str, key: str) -> float:
        return statistics.median(run[key] for run in getattr(self, path))

    def paired(self, combine: Callable[[Run, Run], float]) -> Spread:
        return Spread.of([combine(d, g) for d, g in zip(self.direct, self.gateway, strict=True)])

    def added(self, key: str) -> Spread:
        return self.paired(lambda direct, gateway: gateway[key] - direct[key])

    def ratio(self) -> Spread:
        return self.paired(lambda direct, gateway: gateway["rps"] / direct["rps"])

    def summary(self) -> dict[str, Any]:
        keys = ("p50", "p99", "rps") + (("ttfb_p50", "ttfb_p99") if self.streaming else ())
        summary: dict[str, Any] = {
            path: {key: self.median(path, key) for key in keys} for path in ("direct", "gateway")
        }
        summary["added_ms"] = {key: self.added(key).as_dict() for key in keys if key != "rps"}
        summary["throughput_ratio"] = self.ratio().as_dict()
        summary["gateway_view"] = self.gateway_view
        summary["verdicts"] = self.verdicts()
        return summary

    def verdicts(self) -> dict[str, bool]:
        """The issue's targets, for the load shapes they are stated for."""
        if self.streaming:
            return {}
        if self.concurrency == 1:
            return {"added_p50": self.added("p50").median <= ADDED_P50_TARGET_MS}
        return {"throughput": self.ratio().median >= THROUGHPUT_TARGET}


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def as_dict(self) -> dict[str, float]:
        return {"median": self.median, "min": self.low, "max": self.high}

    def text(self, digits: int = 3) -> str:
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}..{self.high:.{digits}f}]"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def table(cases: Sequence[Case]) -> str:
    """The printed report: raw figures per path, then what the gateway adds, then the verdicts."""
    lines = [
        "Medians over the repetitions; [min..max] over the direct/gateway pairs.",
        "",
        f"{'upstream':<9} {'load':<12} {'path':<8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
        f" {'ttfb p50':>9} {'cpu us/req: client upstream gateway':>36}",
    ]
    for case in cases:
        for path in ("direct", "gateway"):
            runs: list[Run] = getattr(case, path)
            ttfb = f"{case.median(path, 'ttfb_p50'):9.3f}" if case.streaming else " " * 9
            cpu = "  ".join(
                f"{statistics.median(run['cpu_us'].get(role, 0.0) for run in runs):7.0f}"
                for role in ("client", "upstream", "gateway")
            )
            lines.append(
                f"{case.upstream:<9} {case.name:<12} {path:<8} {case.median(path, 'p50'):8.3f}"
                f" {case.median(path, 'p99'):8.3f} {case.median(path, 'rps'):8.0f} {ttfb}"
                f" {cpu:>36}"
            )
    lines += ["", "What the gateway adds (gateway minus direct, paired per repetition):"]
    for case in cases:
        label = f"{case.upstream:<9} {case.name:<12}"
        parts = [f"p50 +{case.added('p50').text()} ms", f"p99 +{case.added('p99').text()} ms"]
        if case.streaming:
            parts.insert(0, f"ttfb p50 +{case.added('ttfb_p50').text()} ms")
        parts.append(f"throughput x{case.ratio().text(2)}")
        lines.append(f"{label} " + ", ".join(parts))
        view = case.gateway_view
        if view.get("count"):
            lines.append(
                f"{'':<22} gateway's own view (geogate_added_latency_seconds): "
                f"mean {view['mean_ms']:.3f} ms over {view['count']:.0f} calls, "
                f"p50 ~{view['p50_ms']:.3f} ms (from buckets)"
            )
    lines += ["", "Targets:"]
    for case in cases:
        for target, ok in case.verdicts().items():
            if target == "added_p50":
                figure = f"added p50 {case.added('p50').median:.3f} ms <= {ADDED_P50_TARGET_MS} ms"
            else:
                figure = f"throughput ratio {case.ratio().median:.2f} >= {THROUGHPUT_TARGET}"
            lines.append(f"  {_verdict(ok)}  {case.upstream:<9} {case.name:<12} {figure}")
    return "\n".join(lines)
