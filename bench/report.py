"""Turning interleaved runs into the figures, and the figures into a verdict on the targets.

Each repetition runs every path once, back to back (direct, bare proxy, gateway, and the gateway
with masking on where the case has it), and a proxied path's figure is the median over the
repetitions of its difference (or ratio) to the direct run of the same repetition; the spread
over the repetitions shows the run's own noise. Masking's own cost is the masked run's
difference to the unmasked gateway run of the same repetition.
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
MASKING_TTFB_TARGET_MS = 1.0
"""Time to the first byte of a stream that masking adds (masked gateway vs unmasked), p50."""
OUTSIDE_LOAD_WARNING = 0.05
"""CPUs' worth of work by processes the bench did not start, above which figures are suspect."""

PATHS = ("direct", "proxy", "gateway")
"""The upstream called directly, through the bare pass-through proxy, through GeoGate."""
MASKED = "masked"
"""GeoGate again, on a connection whose policy masks request and response."""
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
    paths: tuple[str, ...] = PATHS
    paced: bool = False
    """The upstream paces its events: the time to the last byte is mostly its own pauses, so
    only the time to the first byte is compared."""
    runs: dict[str, list[Run]] = field(default_factory=dict)
    gateway_view: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per gateway path, its own `geogate_added_latency_seconds` over this case's runs."""

    def __post_init__(self) -> None:
        for path in self.paths:
            self.runs.setdefault(path, [])

    @property
    def masked(self) -> bool:
        return MASKED in self.paths

    @property
    def keys(self) -> tuple[str, ...]:
        return ("p50", "p99") + (("ttfb_p50", "ttfb_p99") if self.streaming else ())

    def median(self, path: str, key: str) -> float:
        return statistics.median(float(run[key]) for run in self.runs[path])

    def cpu_us(self, path: str, role: str) -> float:
        return statistics.median(float(run["cpu_us"][role]) for run in self.runs[path])

    def _paired(self, path: str, base: str, combine: Callable[[Run, Run], float]) -> Spread:
        pairs = zip(self.runs[base], self.runs[path], strict=True)
        return Spread.of([combine(below, other) for below, other in pairs])

    def added(self, path: str, key: str, base: str = "direct") -> Spread:
        """Milliseconds `path` adds to `base`'s `key` latency (the direct call's by default)."""
        return self._paired(path, base, lambda below, other: other[key] - below[key])

    def ratio(self, path: str, base: str = "direct") -> Spread:
        """`path`'s requests/s over `base`'s."""
        return self._paired(path, base, lambda below, other: other["rps"] / below["rps"])

    def outside_cpus(self) -> float:
        return max(float(run["outside_cpus"]) for runs in self.runs.values() for run in runs)

    def verdicts(self) -> dict[str, bool]:
        """The issue's targets, on the load shapes they are stated for."""
        if self.streaming:
            if not self.masked:
                return {}
            added = self.added(MASKED, "ttfb_p50", base="gateway").median
            return {"masking_ttfb": added <= MASKING_TTFB_TARGET_MS}
        if self.concurrency == 1:
            return {"added_p50": self.added("gateway", "p50").median <= ADDED_P50_TARGET_MS}
        return {"throughput": self.ratio("gateway").median >= THROUGHPUT_TARGET}

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {
            path: {key: self.median(path, key) for key in (*self.keys, "rps")}
            | {"cpu_us_per_request": {role: self.cpu_us(path, role) for role in ROLES}}
            for path in self.paths
        }
        for path in self.paths[1:]:
            summary[path]["added_ms"] = {key: self.added(path, key).as_dict() for key in self.keys}
            summary[path]["throughput_ratio"] = self.ratio(path).as_dict()
        if self.masked:
            summary[MASKED]["masking_cost"] = {
                "added_ms": {
                    key: self.added(MASKED, key, base="gateway").as_dict() for key in self.keys
                },
                "throughput_ratio": self.ratio(MASKED, base="gateway").as_dict(),
            }
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
        for path in case.paths:
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
        for path in case.paths[1:]:
            lines.append(f"{case.upstream:<8} {case.name:<10} {path:<8} " + _added(case, path))
        if case.outside_cpus() > OUTSIDE_LOAD_WARNING:
            lines.append(
                f"{'':<28}(other processes used up to {case.outside_cpus():.2f} CPUs "
                "during this case)"
            )
        for path, view in case.gateway_view.items():
            if view.get("count"):
                lines.append(
                    f"{'':<28}{path}'s own view (geogate_added_latency_seconds): mean "
                    f"{view['mean_ms']:.3f} ms, p50 ~{view['p50_ms']:.3f} ms over "
                    f"{view['count']:.0f} calls"
                )
    if not any(view.get("count") for case in cases for view in case.gateway_view.values()):
        lines.append(
            "(the gateway's /metrics had no geogate_added_latency_seconds samples to compare)"
        )
    masked = [case for case in cases if case.masked]
    if masked:
        lines += ["", "What masking adds (masked vs unmasked gateway, same repetition):"]
        for case in masked:
            lines.append(
                f"{case.upstream:<8} {case.name:<10} {MASKED:<8} "
                + _added(case, MASKED, base="gateway")
            )
    lines += ["", "Targets:"]
    for case in cases:
        for target, ok in case.verdicts().items():
            if target == "added_p50":
                added = case.added("gateway", "p50").median
                figure = f"gateway added p50 {added:.3f} ms, target <= {ADDED_P50_TARGET_MS} ms"
            elif target == "masking_ttfb":
                added = case.added(MASKED, "ttfb_p50", base="gateway").median
                figure = (
                    f"masking added ttfb p50 {added:.3f} ms, target <= {MASKING_TTFB_TARGET_MS} ms"
                )
            else:
                ratio = case.ratio("gateway").median
                figure = f"gateway throughput ratio {ratio:.2f}, target >= {THROUGHPUT_TARGET}"
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


def _added(case: Case, path: str, base: str = "direct") -> str:
    """What `path` adds to `base`: p50, ttfb (streams), p99 and the req/s ratio; only the ttfb
    figures for a paced upstream."""
    parts = [] if case.paced else [f"p50 +{case.added(path, 'p50', base).text(3)} ms"]
    if case.streaming:
        parts += [
            f"ttfb p50 +{case.added(path, 'ttfb_p50', base).text(3)} ms",
            f"ttfb p99 +{case.added(path, 'ttfb_p99', base).text(2)} ms",
        ]
    if not case.paced:
        parts += [
            f"p99 +{case.added(path, 'p99', base).text(2)} ms",
            f"req/s x{case.ratio(path, base).text(2)}",
        ]
    return ", ".join(parts)
