"""`make bench`: the data path's cost, as ratios against direct calls in the same run.

Starts, all on 127.0.0.1: three upstreams (`bench.upstream`, a minimal one; the demo LLM; and
the demo LLM again with 1 ms between streamed events, `paced`), the gateway (`geogate up`,
API-key authentication and a residency policy on), a bare proxy on the same server stack
(`bench.passthrough`, the floor), and a load generator (`bench.load`). It then calls each
upstream directly, through the bare proxy and through the gateway, and the demo upstreams also
through the gateway on a connection whose policy masks request and response (`masked`), one
after the other in every repetition: minimal and demo at concurrency 1 (plain and streaming)
and 32, paced streaming at concurrency 1. It prints the figures and writes
bench/results/latest.json. docs/benchmarks.md explains how to read them.
"""

from __future__ import annotations

import argparse
import http.client
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
    machine_busy_seconds,
    read_line,
    wait_ready,
)
from bench.report import MASKED, PATHS, Case, Run, table

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
UPSTREAM_KEY = "bench-upstream-key"
CARD = "4990 6958 4830 4011"
PROMPT = f"Summarise in one line: card {CARD} was charged twice; reply to jane.doe@example.com."
"""A card number and an email, so that the masked path has something to mask."""
CONNECTIONS = {"minimal": "bench-minimal", "demo": "bench-demo", "paced": "bench-paced"}
MASKED_UPSTREAMS = ("demo", "paced")
PACED_DELAY = "0.001"
"""Seconds between the paced upstream's events: each reaches the gateway on its own."""
"""Upstreams also called through a connection with masking on (`CONNECTIONS[...]-masked`)."""
MASK = "[us_ssn, credit_card, iban, email, phone, secret]"

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
  bench-minimal: {{type: openai, url: "http://127.0.0.1:{minimal}", {target}}}
  bench-demo: {{type: openai, url: "http://127.0.0.1:{demo}", {target}}}
  bench-demo-masked: {{type: openai, url: "http://127.0.0.1:{demo}", {target}}}
  bench-paced: {{type: openai, url: "http://127.0.0.1:{paced}", {target}}}
  bench-paced-masked: {{type: openai, url: "http://127.0.0.1:{paced}", {target}}}
policies:
  - name: bench
    subjects: {{groups: [bench]}}
    connections: [bench-minimal, bench-demo, bench-paced]
    regions: [eu]
  - name: bench-masked
    subjects: {{groups: [bench]}}
    connections: [bench-demo-masked, bench-paced-masked]
    regions: [eu]
    mask:
      request: {mask}
      response: {mask}
      style: redact
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
    paced_requests: int
    concurrency: int


@dataclass(frozen=True)
class Layout:
    """Which CPUs each role may use during one kind of measurement."""

    name: str
    client: frozenset[int] | None
    upstream: frozenset[int] | None
    proxies: frozenset[int] | None
    """The gateway and the bare proxy (only one of them carries load at a time)."""

    def describe(self) -> dict[str, list[int] | str]:
        roles = {"client": self.client, "upstream": self.upstream, "proxies": self.proxies}
        return {role: "any" if cpus is None else sorted(cpus) for role, cpus in roles.items()}


def workers() -> int:
    """Worker processes for the gateway and the bare proxy: one per CPU, as `geogate up` does."""
    return len(os.sched_getaffinity(0))


def layouts() -> tuple[Layout, Layout]:
    """(latency layout, throughput layout); docs/benchmarks.md shows what the choice changes.

    Latency (concurrency 1): every process on one CPU. A call is a chain in which one process
    works at a time, so sharing a CPU costs little, and no call is handed from one virtual CPU
    to another, which on a VM costs tens of microseconds and, when the host is busy, millisecond
    tails that would be blamed on whichever path hands over more often.
    Throughput (concurrency 32): nothing pinned. Client, upstream and proxy share the whole
    machine as they would with `geogate up` on it, and the gateway runs a worker per CPU.
    """
    cpus = sorted(os.sched_getaffinity(0))
    one = frozenset(cpus[:1])
    return Layout("latency", one, one, one), Layout("throughput", None, None, None)


@dataclass
class Stack:
    """The running processes and how to reach them."""

    client: Child
    upstreams: dict[str, tuple[Child, int]]
    proxy: tuple[Child, int]
    gateway: tuple[Child, int]
    api_key: str

    def place(self, layout: Layout) -> None:
        self.client.pin(layout.client)
        for child, _ in self.upstreams.values():
            child.pin(layout.upstream)
        self.proxy[0].pin(layout.proxies)
        self.gateway[0].pin(layout.proxies)

    def roles(self, upstream: str) -> dict[str, Child]:
        return {
            "client": self.client,
            "upstream": self.upstreams[upstream][0],
            "proxy": self.proxy[0],
            "gateway": self.gateway[0],
        }


def request_body(stream: bool) -> str:
    document: dict[str, Any] = {
        "model": "demo-echo",
        "messages": [{"role": "user", "content": PROMPT}],
    }
    if stream:
        document["stream"] = True
    return json.dumps(document, separators=(",", ":"))


def request_text(port: int, path: str, token: str, stream: bool) -> str:
    """The exact bytes of one chat completion call (built once per run, sent as is)."""
    body = request_body(stream)
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
    """`geogate_added_latency_seconds` from /metrics: `sum`, `count`, cumulative `le:` buckets."""
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


def gateway_view(delta: dict[str, float]) -> dict[str, float]:
    """Mean and bucket-interpolated p50 of the calls counted in a /metrics difference."""
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
    """One load-generator job, with the CPU each process spent on it per call."""
    upstream_port = stack.upstreams[upstream][1]
    if path == "direct":
        port, target, token = upstream_port, "/v1/chat/completions", UPSTREAM_KEY
    elif path == "proxy":
        port, token = stack.proxy[1], "bench-caller-key"
        target = f"/c/{CONNECTIONS[upstream]}/v1/chat/completions"
    else:
        port, token = stack.gateway[1], stack.api_key
        target = f"/c/{connection(upstream, path)}/v1/chat/completions"
    job = dict(job)
    request = request_text(port, target, token, stream=job.pop("stream"))
    roles = stack.roles(upstream)
    before = {role: child.cpu_seconds() for role, child in roles.items()}
    machine_before, wall_before = machine_busy_seconds() - _own_cpu(), time.monotonic()
    line = json.dumps({"host": LOOPBACK, "port": port, "request": request, **job})
    assert stack.client.process.stdin is not None
    stack.client.process.stdin.write(line.encode() + b"\n")
    stack.client.process.stdin.flush()
    answer = json.loads(read_line(stack.client, timeout=job.get("duration", 0) * 2 + 120))
    wall = time.monotonic() - wall_before
    used = {role: child.cpu_seconds() - before[role] for role, child in roles.items()}
    outside = machine_busy_seconds() - _own_cpu() - machine_before - sum(used.values())
    if "error" in answer:
        raise BenchError(f"the load generator failed on {upstream}/{path}: {answer['error']}")
    run: Run = answer["result"]
    if run["errors"]:
        raise BenchError(
            f"{upstream}/{path}: {run['errors']} of {run['requests']} calls failed "
            f"(statuses {run['statuses']}); the logs are in {stack.client.log.parent}"
        )
    calls = run["requests"] + run["warmup_requests"]
    run["cpu_us"] = {role: seconds * 1e6 / calls for role, seconds in used.items()}
    run["outside_cpus"] = max(0.0, outside / wall)
    return run


def connection(upstream: str, path: str) -> str:
    """The gateway connection a path calls: the masked one for the `masked` path."""
    name = CONNECTIONS[upstream]
    return f"{name}-masked" if path == MASKED else name


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def run_case(stack: Stack, case: Case, job: dict[str, Any], reps: int) -> None:
    """Every path once per repetition, back to back, so slow drifts hit all paths alike."""
    views: dict[str, dict[str, float]] = {}
    for rep in range(reps):
        for path in case.paths:
            through_gateway = path in ("gateway", MASKED)
            before = added_latency_histogram(stack.gateway[1]) if through_gateway else {}
            run = measure(stack, case.upstream, path, job)
            if through_gateway:
                after = added_latency_histogram(stack.gateway[1])
                view = views.setdefault(path, {})
                for key, value in after.items():
                    view[key] = view.get(key, 0.0) + value - before.get(key, 0.0)
            case.runs[path].append(run)
            ttfb = f"  ttfb p50 {run['ttfb_p50']:7.3f} ms" if case.streaming else ""
            print(
                f"  {case.upstream:<8} {case.name:<10} {rep + 1}/{reps} {path:<8}"
                f" p50 {run['p50']:7.3f} ms  p99 {run['p99']:7.3f} ms  {run['rps']:7.0f} req/s"
                f"{ttfb}",
                flush=True,
            )
    case.gateway_view = {path: gateway_view(delta) for path, delta in views.items()}


def run_all(stack: Stack, settings: Settings, latency: Layout, throughput: Layout) -> list[Case]:
    one = {"concurrency": 1, "warmup": settings.warmup, "requests": settings.requests}
    many = {
        "concurrency": settings.concurrency,
        "warmup_seconds": settings.warmup_seconds,
        "duration": settings.duration,
    }
    streamed = {"concurrency": 1, "warmup": settings.warmup, "requests": settings.stream_requests}
    shapes = (
        ("c=1", 1, False, one, latency),
        ("stream c=1", 1, True, streamed, latency),
        (f"c={settings.concurrency}", settings.concurrency, False, many, throughput),
    )
    cases: list[Case] = []
    paced = {"concurrency": 1, "warmup": 20, "requests": settings.paced_requests}
    runs = [("minimal", shape) for shape in shapes] + [("demo", shape) for shape in shapes]
    runs.append(("paced", ("stream c=1", 1, True, paced, latency)))
    for upstream, (name, concurrency, streaming, job, layout) in runs:
        stack.place(layout)
        paths = (*PATHS, MASKED) if upstream in MASKED_UPSTREAMS else PATHS
        case = Case(upstream, name, concurrency, streaming, paths, paced=upstream == "paced")
        run_case(stack, case, {**job, "stream": streaming}, settings.reps)
        cases.append(case)
    return cases


# --- setting up ---------------------------------------------------------------------------------


def command(module: str, *args: str) -> list[str]:
    """`python -m MODULE ARGS` with the interpreter running the bench (the project's venv)."""
    return [sys.executable, "-m", module, *args]


def create_key(policy: Path) -> str:
    """A key for a caller in the `bench` group, made with the CLI as an operator would."""
    created = subprocess.run(
        command(
            "geogate",
            "keys",
            "create",
            "--owner",
            "bench@example.com",
            "--groups",
            "bench",
            "--expires",
            "1d",
            "--json",
            "--config",
            str(policy),
        ),
        cwd=policy.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    if created.returncode != 0:
        raise BenchError(f"`geogate keys create` failed:\n{created.stderr or created.stdout}")
    key: str = json.loads(created.stdout)["key"]
    return key


@contextmanager
def started_stack(folder: Path) -> Iterator[Stack]:
    """Everything the bench runs, stopped again however the block is left."""
    ports = {name: free_port() for name in (*CONNECTIONS, "proxy", "gateway")}
    policy = folder / "geogate.yaml"
    target = f"region: onprem:bench-eu, credentials: {{bearer: {UPSTREAM_KEY}}}"
    policy.write_text(POLICY.format(target=target, mask=MASK, **ports))
    api_key = create_key(policy)
    listen = {name: f"--listen={LOOPBACK}:{port}" for name, port in ports.items()}
    key = f"--api-key={UPSTREAM_KEY}"
    routes = [
        f"--route={CONNECTIONS[name]}=http://{LOOPBACK}:{ports[name]}" for name in CONNECTIONS
    ]
    children = Children(folder)
    try:
        minimal = children.start(
            "upstream-minimal", command("bench.upstream", listen["minimal"], key)
        )
        demo = children.start(
            "upstream-demo",
            command("geogate", "demo-llm", listen["demo"], "--chunk-delay=0", key),
        )
        paced = children.start(
            "upstream-paced",
            command("geogate", "demo-llm", listen["paced"], f"--chunk-delay={PACED_DELAY}", key),
        )
        count = f"--workers={workers()}"
        proxy = children.start(
            "proxy", command("bench.passthrough", listen["proxy"], key, count, *routes)
        )
        gateway = children.start(
            "gateway", command("geogate", "up", f"--config={policy}", listen["gateway"], count)
        )
        client = children.start(
            "client",
            command("bench.load"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        wait_ready(minimal, ports["minimal"], "/", ready=None)
        wait_ready(demo, ports["demo"], "/v1/models", ready=None)
        wait_ready(paced, ports["paced"], "/v1/models", ready=None)
        wait_ready(proxy, ports["proxy"], "/", ready=None)
        wait_ready(gateway, ports["gateway"], "/readyz", ready=200)
        stack = Stack(
            client=client,
            upstreams={
                "minimal": (minimal, ports["minimal"]),
                "demo": (demo, ports["demo"]),
                "paced": (paced, ports["paced"]),
            },
            proxy=(proxy, ports["proxy"]),
            gateway=(gateway, ports["gateway"]),
            api_key=api_key,
        )
        for upstream in MASKED_UPSTREAMS:
            check_masking(stack, upstream)
        yield stack
    finally:
        children.stop_all()


def check_masking(stack: Stack, upstream: str) -> None:
    """The masked path masks (and the plain gateway does not), or its figures mean nothing."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {stack.api_key}"}
    echoed = f'"{CARD.split()[-1]} '  # the demo streams the echo word by word: `"4011 "`
    for path, masked in (("gateway", False), (MASKED, True)):
        call = http.client.HTTPConnection(LOOPBACK, stack.gateway[1], timeout=10)
        try:
            call.request(
                "POST",
                f"/c/{connection(upstream, path)}/v1/chat/completions",
                body=request_body(stream=True).encode(),
                headers=headers,
            )
            response = call.getresponse()
            answer = response.read().decode()
        finally:
            call.close()
        header = response.getheader("x-geogate-masked")
        if response.status != 200 or masked != (header is not None) or masked == (echoed in answer):
            raise BenchError(
                f"{upstream}/{path}: expected the card to be "
                f"{'masked' if masked else 'echoed'}, got HTTP {response.status}, "
                f"x-geogate-masked {header!r}: {answer[:300]}"
            )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> tuple[Settings, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every case")
    parser.add_argument("--requests", type=int, default=2000, help="measured calls at c=1")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured calls first, c=1")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per c=32 run")
    parser.add_argument("--stream-requests", type=int, default=500, help="streamed calls, c=1")
    parser.add_argument(
        "--paced-requests", type=int, default=200, help="streamed calls to the paced upstream"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="connections, throughput")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (about 20 s)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.requests, args.duration, args.stream_requests = 1, 300, 1.0, 100
        args.paced_requests = 50
    settings = Settings(
        reps=args.reps,
        requests=args.requests,
        warmup=args.warmup,
        duration=args.duration,
        warmup_seconds=1.0 if args.duration >= 2 else 0.3,
        stream_requests=args.stream_requests,
        paced_requests=args.paced_requests,
        concurrency=args.concurrency,
    )
    return settings, args.keep


def main(argv: list[str] | None = None) -> int:
    settings, keep = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    latency, throughput = layouts()
    folder = Path(tempfile.mkdtemp(prefix="geogate-bench-"))
    started = time.monotonic()
    print(
        f"GeoGate data-path bench on {os.cpu_count()} CPUs; CPUs per role: "
        f"c=1 {latency.describe()}, c={settings.concurrency} {throughput.describe()}"
    )
    try:
        with started_stack(folder) as stack:
            cases = run_all(stack, settings, latency, throughput)
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        keep = True
        return 1
    except KeyboardInterrupt:
        print("bench interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    finally:
        if keep:
            print(f"work folder with the logs kept: {folder}", file=sys.stderr)
        else:
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(table(cases))
    seconds = time.monotonic() - started
    write_results(cases, settings, (latency, throughput), seconds)
    print(f"\nwhole run {seconds:.0f} s; figures in {RESULTS.relative_to(Path.cwd())}")
    return 0


def write_results(
    cases: list[Case], settings: Settings, placement: tuple[Layout, ...], seconds: float
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
        "placement": {layout.name: layout.describe() for layout in placement},
        "workers": workers(),
        "settings": asdict(settings),
        "cases": [
            {"upstream": case.upstream, "load": case.name, **case.summary(), "runs": case.runs}
            for case in cases
        ],
    }
    RESULTS.write_text(json.dumps(document, indent=2) + "\n")


def _processor() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
