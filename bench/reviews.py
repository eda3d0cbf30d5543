"""`python -m bench.reviews`: what the review gate costs a call it lets through.

A reviewed call that goes on an approval reads the store (is there an approval for this
call, or a grant for this caller?) and writes it (the approval is used, an audit event). This
measures the data-path handler in-process at concurrency 1, pinned to one CPU, as
`bench.recording` does: the same policy without a review, and with a `review` whose `grant`
window an approver opened before the run, interleaved in three rounds. What a held call
waits for a person is not the gateway's cost and is not measured.

Writes bench/results/reviews.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.masking import pin_one_cpu
from bench.micro import summary
from bench.recording import POLICY, handler_latency
from geogate.gateway.runtime import Runtime
from geogate.identity import Principal
from geogate.store import ReviewRow

RESULTS = Path(__file__).resolve().parent / "results" / "reviews.json"
REVIEWED = POLICY + "    review: {{approvers: {{groups: [security]}}, mode: ask, grant: 1d}}\n"
APPROVER = Principal(
    "sam@example.com", "sam@example.com", frozenset({"security"}), None, "api_key", None
)


async def open_grant(runtime: Runtime) -> None:
    """An approval whose grant lets bench@example.com use `llm` for a day."""
    now = datetime.now(UTC)
    row = ReviewRow(
        id="rev_bench",
        binding="0" * 64,
        status="pending",
        mode="ask",
        request_id="req_bench",
        subject="bench@example.com",
        user="bench@example.com",
        connection="llm",
        policy="bench",
        policy_version=runtime.policy.version,
        summary={},
        approvers={"users": [], "groups": ["security"]},
        min_approvals=1,
        votes=[],
        grant=86400.0,
        timeout=600.0,
        requested_at=now,
        deadline=now + timedelta(minutes=10),
    )
    await runtime.store.reviews.add(row)
    await runtime.reviews.vote(row.id, APPROVER, approve=True)


async def measure(calls_n: int) -> dict[str, Any]:
    rounds: dict[str, list[float]] = {"no review": [], "under a grant": []}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for repetition in range(3):  # interleaved, so a disturbance hits both cases alike
            folder = root / f"plain-{repetition}"
            rounds["no review"] += await handler_latency(folder, "10ms", calls_n, False)
            folder = root / f"grant-{repetition}"
            rounds["under a grant"] += await handler_latency(
                folder, "10ms", calls_n, False, REVIEWED, open_grant
            )
    figures: dict[str, Any] = {"handler": {name: summary(s) for name, s in rounds.items()}}
    plain = figures["handler"]["no review"]
    granted = figures["handler"]["under a grant"]
    figures["added_ms"] = {
        "p50": (granted["p50_us"] - plain["p50_us"]) / 1000,
        "p99": (granted["p99_us"] - plain["p99_us"]) / 1000,
    }
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls per case and round")
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls = 300
    cpu = pin_one_cpu()
    figures = asyncio.run(measure(args.calls))
    print(f"\nReviews (in-process, CPU {cpu}): the data-path handler at concurrency 1")
    print(f"{'case':<16}{'p50 µs':>10}{'p99 µs':>10}")
    for name, figure in figures["handler"].items():
        print(f"{name:<16}{figure['p50_us']:>10.1f}{figure['p99_us']:>10.1f}")
    added = figures["added_ms"]
    print(f"a call under a grant: +{added['p50']:.3f} ms p50, +{added['p99']:.3f} ms p99")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cpu": cpu, **figures}
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
