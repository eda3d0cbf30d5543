"""Turning interleaved runs into the figures, and the figures into a verdict on the targets.

Each repetition runs every path once, back to back (direct, bare proxy, gateway), and a proxied
path's figure is the median over the repetitions of its difference (or ratio) to the direct run
of the same repetition; the spread over the repetitions shows the run's own noise.
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
OUTSIDE_LOAD_WARNING = 0.05
"""CPUs' worth of work by processes the bench did not start, above which figures are suspect."""

PATHS = ("direct", "proxy", "gateway")
"""The upstream called directly, through the bare pass-through proxy, through GeoGate."""
ROLES = ("client", "upstream", "proxy", "gateway")

Run = dict[str, Any]
"""One load-generator result (`bench.load.Result`) plus `cpu_us` per role and `outside_cpus`."""


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

    def text(self, digits: int) -> str:
        return f"{self.median:.{digits}f} [{self.low:.{digits}f}..{self.high:.{digits}f}]"


@dataclass
class Case:
    """All repetitions of one (upstream, load shape) pair, on every path."""

    upstream: str
    name: str
    concurrency: int
    streaming: bool
    runs: dict[str, list[Run]] = field(default_factory=lambda: {path: [] for path in PATHS})
    gateway_view: dict[str, float] = field(default_factory=dict)
    """The gateway's own `geogate_added_latency_seconds` over this case's gateway runs."""

    @property
    def keys(self) -> tuple[str, ...]:
        return ("p50", "p99") + (("ttfb_p50", "ttfb_p99") if self.streaming else ())

    def median(self, path: str, key: str) -> float:
        return statistics.median(float(run[key]) for run in self.runs[path])

    def cpu_us(self, path: str, role: str) -> float:
        return statistics.median(float(run["cpu_us"][role]) for run in self.runs[path])

    def _paired(self, path: str, combine: Callable[[Run, Run], float]) -> Spread:
        pairs = zip(self.runs["direct"], self.runs[path], strict=True)
        return Spread.of([combine(direct, other) for direct, other in pairs])

    def added(self, path: str, key: str) -> Spread:
        """Milliseconds `path` adds to the direct call's `key` latency."""
        return self._paired(path, lambda direct, other: other[key] - direct[key])

    def ratio(self, path: str) -> Spread:
        """`path`'s requests/s over the direct call's."""
        return self._paired(path, lambda direct, other: other["rps"] / direct["rps"])

    def outside_cpus(self) -> float:
        return max(float(run["outside_cpus"]) for runs in self.runs.values() for run in runs)

    def verdicts(self) -> dict[str, bool]:
        """The issue's targets, on the load shapes they are stated for."""
        if self.streaming:
            return {}
        if self.concurrency == 1:
            return {"added_p50": self.added("gateway", "p50").median <= ADDED_P50_TARGET_MS}
        return {"throughput": self.ratio("gateway").median >= THROUGHPUT_TARGET}

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            path: {key: self.median(path, key) for key in (*self.keys, "rps")}
            | {"cpu_us_per_request": {role: self.cpu_us(path, role) for role in ROLES}}
            for path in PATHS
        }
        for path in PATHS[1:]:
            summary[path]["added_ms"] = {key: self.added(path, key).as_dict() for key in self.keys}
            summary[path]["throughput_ratio"] = self.ratio(path).as_dict()
        summary["gateway_view"] = self.gateway_view
        summary["outside_cpus_max"] = self.outside_cpus()
        summary["verdicts"] = self.verdicts()
        return summary


def table(cases: Sequence[Case]) -> str:
    """The printed report: figures per path, what each proxy adds, the verdicts, warnings."""
    header = (
        f"{'upstream':<8} {'load':<10} {'path':<8} {'p50 ms':>7} {'p99 ms':>7} {'req/s':>7}"
        f" {'ttfb50':>7}   cpu us/req: {'client':>6} {'upstrm':>6} {'proxy':>6} {'gatewy':>6}"
    )
    lines = ["Medians over the repetitions.", "", header]
    for case in cases:
        for path in PATHS:
            ttfb = f"{case.median(path, 'ttfb_p50'):7.3f}" if case.streaming else " " * 7
            cpu = " ".join(f"{case.cpu_us(path, role):6.0f}" for role in ROLES)
            lines.append(
                f"{case.upstream:<8} {case.name:<10} {path:<8} {case.median(path, 'p50'):7.3f}"
                f" {case.median(path, 'p99'):7.3f} {case.median(path, 'rps'):7.0f} {ttfb}"
                f"               {cpu}"
            )
    lines += [
        "",
        "Added to the direct call (median [min..max] over the repetitions):",
    ]
    for case in cases:
        for path in PATHS[1:]:
            parts = [f"p50 +{case.added(path, 'p50').text(3)} ms"]
            if case.streaming:
                parts.append(f"ttfb p50 +{case.added(path, 'ttfb_p50').text(3)} ms")
            parts += [
                f"p99 +{case.added(path, 'p99').text(2)} ms",
                f"req/s x{case.ratio(path).text(2)}",
            ]
            lines.append(f"{case.upstream:<8} {case.name:<10} {path:<8} " + ", ".join(parts))
        if case.outside_cpus() > OUTSIDE_LOAD_WARNING:
            lines.append(
                f"{'':<28}(other processes used up to {case.outside_cpus():.2f} CPUs "
                "during this case)"
            )
        view = case.gateway_view
        if view.get("count"):
            lines.append(
                f"{'':<28}gateway's own view (geogate_added_latency_seconds): mean "
                f"{view['mean_ms']:.3f} ms, p50 ~{view['p50_ms']:.3f} ms over "
                f"{view['count']:.0f} calls"
            )
    if not any(case.gateway_view.get("count") for case in cases):
        lines.append(
            "(the gateway's /metrics had no geogate_added_latency_seconds samples to compare)"
        )
    lines += ["", "Targets (gateway vs direct):"]
    for case in cases:
        for target, ok in case.verdicts().items():
            if target == "added_p50":
                added = case.added("gateway", "p50").median
                figure = f"added p50 {added:.3f} ms, target <= {ADDED_P50_TARGET_MS} ms"
            else:
                ratio = case.ratio("gateway").median
                figure = f"throughput ratio {ratio:.2f}, target >= {THROUGHPUT_TARGET}"
            verdict = "PASS" if ok else "MISS"
            lines.append(f"  {verdict}  {case.upstream:<8} {case.name:<10} {figure}")
    busy = max(case.outside_cpus() for case in cases)
    if busy > OUTSIDE_LOAD_WARNING:
        lines += [
            "",
            f"WARNING: other processes used up to {busy:.2f} CPUs during a measurement; "
            "the figures are noisier than they should be. Rerun on a quiet machine.",
        ]
    return "\n".join(lines)
