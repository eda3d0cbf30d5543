"""Timing helpers for the in-process benchmarks (`bench.auth`, `bench.residency`)."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Mapping
from pathlib import Path


def summary(samples: list[float]) -> dict[str, float]:
    """p50, p99 and mean of per-call microseconds."""
    ordered = sorted(samples)
    return {
        "p50_us": statistics.median(ordered),
        "p99_us": ordered[int(len(ordered) * 0.99) - 1],
        "mean_us": statistics.fmean(ordered),
        "calls": len(ordered),
    }


def report(
    title: str,
    figures: Mapping[str, Mapping[str, float]],
    targeted: Mapping[str, float],
    results: Path,
) -> None:
    """Print a table (PASS/MISS against `targeted` cases' p50 targets) and write `results`."""
    width = max(len(name) for name in figures) + 2
    print(f"\n{title}")
    print(f"{'case':<{width}}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}  target")
    for name, figure in figures.items():
        verdict = ""
        if name in targeted:
            target = targeted[name]
            verdict = f"≤ {target:g} µs {'PASS' if figure['p50_us'] <= target else 'MISS'}"
        print(
            f"{name:<{width}}{figure['p50_us']:>10.1f}{figure['p99_us']:>10.1f}"
            f"{figure['mean_us']:>10.1f}  {verdict}"
        )
    results.parent.mkdir(parents=True, exist_ok=True)
    document = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cases": figures}
    results.write_text(json.dumps(document, indent=2) + "\n")
