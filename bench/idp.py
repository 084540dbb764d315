"""A stand-in identity provider for benchmarks: an RSA key, its JWKS over HTTP, and tokens.

The API under test runs in production mode, which trusts only an external issuer; this gives
it one on loopback so that every benchmarked request carries and verifies a real bearer token.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "https://idp.bench.invalid/realms/bench"
AUDIENCE = "cmdb-api"


class BenchIdP:
    def __init__(self, port: int = 27900) -> None:
        self.key = RSAKey.generate_key(2048, auto_kid=True)
        self.port = port
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> BenchIdP:
        """Serve the JWKS on loopback (once; the thread ends with the process)."""
        if self.server is not None:
            return self
        jwks = json.dumps({"keys": [self.key.as_dict(private=False)]}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def env(self) -> dict[str, str]:
        """Settings that make the API trust this provider."""
        return {"CMDB_AUTH_ISSUER": ISSUER, "CMDB_AUTH_AUDIENCE": AUDIENCE,
                "CMDB_AUTH_JWKS_URL": f"http://127.0.0.1:{self.port}/jwks"}

    def token(self, user: str = "bench", roles: tuple[str, ...] = ("operator",),
              ttl_s: int = 6 * 3600) -> str:
        now = int(time.time())
        return jwt.encode({"alg": "RS256", "kid": self.key.kid},
                          {"iss": ISSUER, "aud": AUDIENCE, "sub": user,
                           "preferred_username": user, "roles": list(roles),
                           "iat": now, "nbf": now, "exp": now + ttl_s}, self.key)

    def authorization(self) -> str:
        return f"Bearer {self.token()}"
