"""What bearer-token authentication costs per request, measured in-process.

    .venv/bin/python -m bench.auth [--n 2000]

Rows: a token verified from scratch (RSA signature, claims), a token seen before (the short
verified-token cache), a token refused early (bad algorithm), a 1 MB header refused by the
middleware, and the middleware + app round trip for a public probe and an authenticated
``{ __typename }`` (no database work in either). Prints a table and records the machine;
writes the "Authentication" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from joserfc.jwk import KeySet

from bench.idp import ISSUER, BenchIdP
from bench.run import DOC, machine
from cmdb.identity.auth import Authenticator, BearerAuthMiddleware
from cmdb.identity.jwks import StaticKeys
from cmdb.identity.tokens import TokenError, TokenVerifier
from cmdb.settings import Settings

SECTION = "## Authentication"


async def timed(n: int, fn: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
    samples = []
    for i in range(n):
        t = time.perf_counter()
        await fn(i)
        samples.append((time.perf_counter() - t) * 1e6)
    samples.sort()
    return {"p50_us": statistics.median(samples), "p95_us": samples[int(len(samples) * .95)],
            "mean_us": statistics.fmean(samples)}


async def run(n: int) -> list[tuple[str, dict[str, float]]]:
    idp = BenchIdP()
    # The keys are handed over directly: this measures verification, not JWKS fetching.
    settings = Settings(auth_issuer=ISSUER, auth_jwks_url="http://127.0.0.1:1/unused")
    keys = StaticKeys(KeySet([idp.key]))
    verifier = TokenVerifier(settings, keys, ISSUER)
    fresh = [f"Bearer {idp.token(user=f'u{i}')}" for i in range(n)]
    same = f"Bearer {idp.token()}"
    rows = [("verify a new token (RSA-2048, claims)",
             await timed(n, lambda i: verifier.principal(fresh[i]))),
            ("a token verified before (cache hit)",
             await timed(n, lambda i: verifier.principal(same)))]

    async def refuse(header: str) -> None:
        with contextlib.suppress(TokenError):
            await verifier.principal(header)

    bad = "Bearer eyJhbGciOiJub25lIn0.e30."
    rows.append(("refuse alg none", await timed(n, lambda i: refuse(bad))))

    app = FastAPI()

    @app.post("/graphql")
    async def graphql() -> dict[str, Any]:
        return {"data": {"__typename": "Query"}}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    auth = Authenticator(settings, verifier, keys, None)
    app.add_middleware(BearerAuthMiddleware, authenticator=auth)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://b") as c:
        huge = {"Authorization": "Bearer " + "A" * (1024 * 1024)}
        rows.append(("1 MB Authorization header -> 431",
                     await timed(max(n // 10, 50), lambda i: c.post("/graphql", headers=huge))))
        rows.append(("app round trip: public /healthz",
                     await timed(n, lambda i: c.get("/healthz"))))
        rows.append(("app round trip: authenticated POST",
                     await timed(n, lambda i: c.post("/graphql", json={},
                                                     headers={"Authorization": same}))))
    return rows


def render(rows: list[tuple[str, dict[str, float]]], n: int) -> str:
    m = machine()
    lines = [SECTION, "",
             f"`python -m bench.auth --n {n}` on {m['cpu']} ({m['cores']} cores), Python "
             f"{m['python']}; in-process, no network. Microseconds per call.", "",
             "| what | p50 µs | p95 µs | mean µs |", "| --- | ---: | ---: | ---: |"]
    for name, r in rows:
        lines.append(f"| {name} | {r['p50_us']:.0f} | {r['p95_us']:.0f} | {r['mean_us']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    rows = asyncio.run(run(args.n))
    text = render(rows, args.n)
    print(text)
    doc = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if SECTION in doc:
        start = doc.index(SECTION)
        end = doc.find("\n## ", start + 1)
        doc = doc[:start] + text + (doc[end + 1:] if end != -1 else "")
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc)


if __name__ == "__main__":
    main()
