"""`make bench`: the data path's cost, as ratios against direct calls in the same run.

Starts, all on 127.0.0.1: two upstreams (the demo LLM, and `bench.upstream`, a minimal one),
a gateway (`geogate up`, API-key authentication and a residency policy on), and a load
generator (`bench.load`). It then measures direct and through-gateway calls, interleaved, at
concurrency 1 and 32 and streaming, prints the figures and writes bench/results/latest.json.
docs/benchmarks.md explains the setup and how to read the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from bench.procs import (
    LOOPBACK,
    BenchError,
    Child,
    Children,
    free_port,
    http_get,
    read_line,
    wait_ready,
)
from bench.report import Case, Run, table

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
UPSTREAM_KEY = "bench-upstream-key"
PROMPT = "Summarise the ticket in one line."
CONNECTIONS = {"minimal": "bench-minimal", "demo": "bench-demo"}

POLICY = """\
version: 1
gateway:
  region: onprem:bench-eu
  listen: 127.0.0.1:{gateway}
  state: sqlite:///state.db
regions:
  onprem:bench-eu:
    jurisdiction: eu
    cidrs: [127.0.0.0/8]
connections:
  bench-minimal:
    type: openai
    url: http://127.0.0.1:{minimal}
    region: onprem:bench-eu
    credentials: {{bearer: {key}}}
  bench-demo:
    type: openai
    url: http://127.0.0.1:{demo}
    region: onprem:bench-eu
    credentials: {{bearer: {key}}}
policies:
  - name: bench
    subjects: {{groups: [bench]}}
    connections: [bench-minimal, bench-demo]
    regions: [eu]
"""

# What the official openai Python SDK sends, so header handling costs what it costs in use.
SDK_HEADERS = (
    "Accept: application/json\r\n"
    "Content-Type: application/json\r\n"
    "User-Agent: OpenAI/Python 1.109.1\r\n"
    "X-Stainless-Lang: python\r\n"
    "X-Stainless-Package-Version: 1.109.1\r\n"
    "X-Stainless-OS: Linux\r\n"
    "X-Stainless-Arch: x64\r\n"
    "X-Stainless-Runtime: CPython\r\n"
    "X-Stainless-Runtime-Version: 3.11.7\r\n"
    "X-Stainless-Async: false\r\n"
    "x-stainless-retry-count: 0\r\n"
    "x-stainless-read-timeout: 600\r\n"
)


@dataclass(frozen=True)
class Settings:
    reps: int
    requests: int
    warmup: int
    duration: float
    warmup_seconds: float
    stream_requests: int
    concurrency: int


@dataclass(frozen=True)
class Placement:
    """Which CPUs each role may use; None leaves the choice to the kernel."""

    client: frozenset[int] | None
    upstream: frozenset[int] | None
    gateway: frozenset[int] | None

    @classmethod
    def for_machine(cls) -> Placement:
        """The gateway gets a core of its own; the client and the upstream share another.

        That is how a gateway runs in use (on its own host, with the callers and targets
        elsewhere), and it gives the direct and the gateway runs the same CPU for the client and
        the upstream, so the only difference between them is the gateway.
        """
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            return cls(None, None, None)
        return cls(frozenset({cpus[0]}), frozenset({cpus[0]}), frozenset({cpus[1]}))

    def describe(self) -> dict[str, list[int] | None]:
        return {
            role: None if cpus is None else sorted(cpus)
            for role, cpus in (
                ("client", self.client),
                ("upstream", self.upstream),
                ("gateway", self.gateway),
            )
        }


@dataclass
class Stack:
    """The running processes and how to reach them."""

    client: Child
    upstreams: dict[str, tuple[Child, int]]
    gateway: Child
    gateway_port: int
    api_key: str


def request_text(port: int, path: str, token: str, stream: bool) -> str:
    """The exact bytes of one chat completion call (built once per run, sent as is)."""
    document: dict[str, Any] = {
        "model": "demo-echo",
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if stream:
        document["stream"] = True
    body = json.dumps(document, separators=(",", ":"))
    return (
        f"POST {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\n{SDK_HEADERS}"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    )


# --- the gateway's own view ---------------------------------------------------------------------

_ADDED = re.compile(
    r'^geogate_added_latency_seconds_(bucket|sum|count)(?:\{(?:.*,)?le="([^"]+)"[^}]*\})?'
    r"\s+(\S+)$"
)


def added_latency_histogram(port: int) -> dict[str, float]:
    """`geogate_added_latency_seconds` from /metrics: `sum`, `count` and cumulative `le:` buckets."""
    status, body = http_get(port, "/metrics")
    if status != 200:
        raise BenchError(f"GET /metrics answered HTTP {status}")
    histogram: dict[str, float] = {}
    for line in body.decode().splitlines():
        match = _ADDED.match(line)
        if match:
            kind, bound, value = match.groups()
            key = f"le:{bound}" if kind == "bucket" else kind
            histogram[key] = histogram.get(key, 0.0) + float(value)
    return histogram


def gateway_view(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Mean and bucket-interpolated p50 of the calls between two /metrics readings."""
    delta = {key: after.get(key, 0.0) - before.get(key, 0.0) for key in after}
    count = delta.get("count", 0.0)
    if not count:
        return {"count": 0.0}
    bounds = sorted(
        (float(key[3:]), value) for key, value in delta.items() if key.startswith("le:")
    )
    p50, lower, below = float("nan"), 0.0, 0.0
    for upper, cumulative in bounds:
        if cumulative >= count / 2:
            inside = cumulative - below
            fraction = (count / 2 - below) / inside if inside else 0.0
            p50 = lower if upper == float("inf") else lower + (upper - lower) * fraction
            break
        lower, below = upper, cumulative
    return {
        "count": count,
        "mean_ms": delta["sum"] / count * 1000,
        "p50_ms": p50 * 1000,
    }


# --- running ------------------------------------------------------------------------------------


def measure(stack: Stack, upstream: str, path: str, job: dict[str, Any]) -> Run:
    """One load-generator job, with the CPU each process spent on it per request."""
    child, port = stack.upstreams[upstream]
    if path == "gateway":
        port = stack.gateway_port
        target = f"/c/{CONNECTIONS[upstream]}/v1/chat/completions"
        token = stack.api_key
    else:
        target, token = "/v1/chat/completions", UPSTREAM_KEY
    roles = {"client": stack.client, "upstream": child, "gateway": stack.gateway}
    request = request_text(port, target, token, stream=job.pop("stream"))
    before = {role: process.cpu_seconds() for role, process in roles.items()}
    line = json.dumps({"host": LOOPBACK, "port": port, "request": request, **job})
    assert stack.client.process.stdin is not None
    stack.client.process.stdin.write(line.encode() + b"\n")
    stack.client.process.stdin.flush()
    answer = json.loads(read_line(stack.client, timeout=job.get("duration", 0) * 2 + 120))
    if "error" in answer:
        raise BenchError(f"the load generator failed on {upstream}/{path}: {answer['error']}")
    run: Run = answer["result"]
    if run["errors"]:
        raise BenchError(
            f"{upstream}/{path}: {run['errors']} of {run['requests']} calls failed "
            f"(statuses {run['statuses']}); see the logs under {stack.gateway.log.parent}"
        )
    calls = run["requests"] + run["warmup_requests"]
    run["cpu_us"] = {
        role: (process.cpu_seconds() - before[role]) * 1e6 / calls
        for role, process in roles.items()
    }
    return run


def run_case(stack: Stack, case: Case, job: dict[str, Any], reps: int) -> None:
    """Direct then gateway, `reps` times, so slow drifts hit both paths alike."""
    before = added_latency_histogram(stack.gateway_port)
    after = before
    for rep in range(reps):
        for path in ("direct", "gateway"):
            if path == "gateway":
                before_run = added_latency_histogram(stack.gateway_port)
            run = measure(stack, case.upstream, path, dict(job))
            if path == "gateway":
                after_run = added_latency_histogram(stack.gateway_port)
                after = {
                    key: after.get(key, 0.0) + after_run.get(key, 0.0) - before_run.get(key, 0.0)
                    for key in after_run
                }
            getattr(case, path).append(run)
            print(
                f"  {case.upstream:<8} {case.name:<12} rep {rep + 1}/{reps} {path:<8}"
                f" p50 {run['p50']:7.3f} ms  p99 {run['p99']:7.3f} ms  {run['rps']:7.0f} req/s",
                flush=True,
            )
    case.gateway_view = gateway_view(before, after)


def run_all(stack: Stack, settings: Settings) -> list[Case]:
    one = {"concurrency": 1, "warmup": settings.warmup, "requests": settings.requests}
    many = {
        "concurrency": settings.concurrency,
        "warmup_seconds": settings.warmup_seconds,
        "duration": settings.duration,
    }
    streamed = {"concurrency": 1, "warmup": settings.warmup, "requests": settings.stream_requests}
    cases: list[Case] = []
    for upstream in ("minimal", "demo"):
        for name, concurrency, streaming, job in (
            ("c=1", 1, False, one),
            (f"c={settings.concurrency}", settings.concurrency, False, many),
            ("stream c=1", 1, True, streamed),
        ):
            case = Case(upstream, name, concurrency, streaming)
            run_case(stack, case, {**job, "stream": streaming}, settings.reps)
            cases.append(case)
    return cases


# --- setting up ---------------------------------------------------------------------------------


def geogate(*args: str) -> list[str]:
    return [sys.executable, "-m", "geogate", *args]


@contextmanager
def started_stack(folder: Path, placement: Placement) -> Iterator[Stack]:
    """Everything the bench runs, stopped again however the block is left."""
    ports = {"minimal": free_port(), "demo": free_port(), "gateway": free_port()}
    policy = folder / "geogate.yaml"
    policy.write_text(POLICY.format(key=UPSTREAM_KEY, **ports))
    created = subprocess.run(
        geogate("keys", "create", "--owner", "bench@example.com", "--groups", "bench")
        + ["--expires", "1d", "--json", "--config", str(policy)],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )
    if created.returncode != 0:
        raise BenchError(f"`geogate keys create` failed:\n{created.stderr or created.stdout}")
    api_key = json.loads(created.stdout)["key"]

    children = Children(folder)
    try:
        minimal = children.start(
            "upstream-minimal",
            [sys.executable, "-m", "bench.upstream", "--listen", f"{LOOPBACK}:{ports['minimal']}"]
            + ["--api-key", UPSTREAM_KEY],
            placement.upstream,
        )
        demo = children.start(
            "upstream-demo",
            geogate("demo-llm", "--listen", f"{LOOPBACK}:{ports['demo']}", "--chunk-delay", "0")
            + ["--api-key", UPSTREAM_KEY],
            placement.upstream,
        )
        gateway = children.start(
            "gateway",
            geogate("up", "--config", str(policy), "--listen", f"{LOOPBACK}:{ports['gateway']}")
            + ["--workers", "1"],
            placement.gateway,
        )
        client = children.start(
            "client",
            [sys.executable, "-m", "bench.load"],
            placement.client,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        wait_ready(minimal, ports["minimal"], "/", ready=None)
        wait_ready(demo, ports["demo"], "/v1/models", ready=None)
        wait_ready(gateway, ports["gateway"], "/readyz", ready=200)
        yield Stack(
            client=client,
            upstreams={"minimal": (minimal, ports["minimal"]), "demo": (demo, ports["demo"])},
            gateway=gateway,
            gateway_port=ports["gateway"],
            api_key=api_key,
        )
    finally:
        children.stop_all()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="direct/gateway pairs per case")
    parser.add_argument("--requests", type=int, default=2000, help="measured calls at c=1")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls first")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per c=32 run")
    parser.add_argument("--stream-requests", type=int, default=500, help="streamed calls, c=1")
    parser.add_argument("--concurrency", type=int, default=32, help="connections, throughput")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about 20 s)")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and its logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.requests, args.duration, args.stream_requests = 1, 300, 1.0, 100
    settings = Settings(
        reps=args.reps,
        requests=args.requests,
        warmup=args.warmup,
        duration=args.duration,
        warmup_seconds=1.0 if args.duration >= 2 else 0.3,
        stream_requests=args.stream_requests,
        concurrency=args.concurrency,
    )
    return settings, args.keep


def main(argv: list[str] | None = None) -> int:
    settings, keep = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    placement = Placement.for_machine()
    folder = Path(tempfile.mkdtemp(prefix="geogate-bench-"))
    started = time.monotonic()
    print(f"GeoGate data-path bench; placement {placement.describe()}; work folder {folder}")
    try:
        with started_stack(folder, placement) as stack:
            cases = run_all(stack, settings)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        keep = True
        return 1
    except KeyboardInterrupt:
        print("bench interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        if keep:
            print(f"logs kept in {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(table(cases))
    write_results(cases, settings, placement, time.monotonic() - started)
    print(f"\nwhole run {time.monotonic() - started:.0f} s; figures in {RESULTS}")
    return 0


def write_results(
    cases: list[Case], settings: Settings, placement: Placement, seconds: float
) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": seconds,
        "machine": {
            "cpus": os.cpu_count(),
            "processor": _processor(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "placement": placement.describe(),
        "gateway_workers": 1,
        "settings": asdict(settings),
        "cases": [
            {
                "upstream": case.upstream,
                "load": case.name,
                **case.summary(),
                "runs": {"direct": case.direct, "gateway": case.gateway},
            }
            for case in cases
        ],
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")


def _processor() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
