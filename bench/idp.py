"""The benchmarks' identity provider: the tests' local stand-in (``tests/idp.py``) on a fixed
port with the benchmark issuer.

The API under test runs in production mode, which trusts only an external issuer; this gives
it one on loopback so that every benchmarked request carries and verifies a real bearer token.
"""

from __future__ import annotations

from tests.idp import LocalIdP

ISSUER = "https://idp.bench.invalid/realms/bench"
AUDIENCE = "cmdb-api"


class BenchIdP(LocalIdP):
    def __init__(self, port: int = 27900) -> None:
        super().__init__(port=port, issuer=ISSUER, audience=AUDIENCE)
