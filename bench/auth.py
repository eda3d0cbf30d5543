"""`make bench` (second part): what authentication costs per call, in-process.

Builds the gateway's real `Authenticator` (API keys, OIDC tokens, the directory check) on a
SQLite state store in a temporary folder, with an IdP whose keys are handed to the verifier
directly (no network), and times `authenticate()` call by call:

- `api key`: a `gk_` key already seen (the steady state of every caller);
- `jwt cached`: an OIDC token already verified once (cached until it expires);
- `jwt RS256 first use` / `jwt ES256 first use`: a token never seen before (signature and
  claims checked; every call a different token).

Each figure includes the directory check (a deactivation is seen by the very next call), which
reads one row of the state store. Target: a cached token or an API key adds at most 20 µs.
Writes bench/results/auth.json.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from bench.micro import report, summary
from geogate.config import OidcIssuer
from geogate.identity import ApiKeyAuthenticator, Authenticator, DirectoryWatch, TokenVerifier
from geogate.store import open_store

RESULTS = Path(__file__).resolve().parent / "results" / "auth.json"
ISSUER = "https://id.bench.test"
TARGET_US = 20.0


class Idp:
    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, {"kid": "rsa", "alg": "RS256"}, private=True)
        self.ec = ECKey.generate_key("P-256", {"kid": "ec", "alg": "ES256"}, private=True)

    async def fetch(self, url: str) -> Mapping[str, Any]:
        if url.endswith("openid-configuration"):
            return {"issuer": ISSUER, "jwks_uri": ISSUER + "/jwks"}
        return KeySet([self.rsa, self.ec]).as_dict(private=False)

    def token(self, n: int, alg: str) -> str:
        key = self.rsa if alg == "RS256" else self.ec
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": "geogate",
            "sub": f"user-{n}",
            "email": f"user-{n}@example.eu",
            "groups": ["support-eu", "bench"],
            "iat": now,
            "exp": now + 3600,
            "jti": f"t-{n}",
        }
        return jwt.encode({"alg": alg, "kid": key.kid}, claims, key)


async def timed(authenticator: Authenticator, tokens: list[str]) -> list[float]:
    """Microseconds per call, one figure per token."""
    clock = time.perf_counter
    spent = []
    for token in tokens:
        started = clock()
        await authenticator.authenticate(token)
        spent.append((clock() - started) * 1e6)
    return spent


async def measure(calls: int, fresh: int, reps: int) -> dict[str, dict[str, float]]:
    idp = Idp()
    with tempfile.TemporaryDirectory(prefix="geogate-auth-bench-") as folder:
        store = await open_store(f"sqlite:///{folder}/state.db")
        directory = DirectoryWatch(store)
        tokens = TokenVerifier([OidcIssuer(issuer=ISSUER, audience="geogate")], fetch=idp.fetch)
        try:
            await directory.start()
            await tokens.start()
            authenticator = Authenticator(ApiKeyAuthenticator(store), tokens, directory)
            key = (
                await store.create_key("bench@example.eu", groups=["bench"], expires_in=3600)
            ).key
            cached = idp.token(0, "RS256")
            await authenticator.authenticate(key)
            await authenticator.authenticate(cached)
            fresh_tokens = {
                alg: [idp.token(n, alg) for n in range(1, fresh * reps + 1)]
                for alg in ("RS256", "ES256")
            }
            results: dict[str, list[float]] = {}
            for rep in range(reps):
                batches = {
                    "api key": [key] * calls,
                    "jwt cached": [cached] * calls,
                    "jwt RS256 first use": fresh_tokens["RS256"][rep * fresh : (rep + 1) * fresh],
                    "jwt ES256 first use": fresh_tokens["ES256"][rep * fresh : (rep + 1) * fresh],
                }
                for name, batch in batches.items():
                    results.setdefault(name, []).extend(await timed(authenticator, batch))
        finally:
            await directory.close()
            await tokens.close()
            await store.close()
    return {name: summary(samples) for name, samples in results.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.auth", description=__doc__)
    parser.add_argument("--calls", type=int, default=20_000, help="calls per cached case and rep")
    parser.add_argument("--fresh", type=int, default=500, help="new tokens per case and rep")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.calls, args.fresh, args.reps))
    report(
        f"Authentication per call (in-process, {args.reps} repetitions)",
        figures,
        {"api key": TARGET_US, "jwt cached": TARGET_US},
        RESULTS,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
