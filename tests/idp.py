"""A local stand-in identity provider: an RSA key, its JWKS served over HTTP on loopback, and
the tokens it signs.

Production mode trusts only an external issuer (``CMDB_AUTH_ISSUER`` + ``CMDB_AUTH_JWKS_URL``);
this gives a served API one on 127.0.0.1, so that the tests of production mode and the
benchmarks (``bench/idp.py``) send real bearer tokens that the API verifies against a JWKS it
fetches over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

ISSUER = "https://idp.test.invalid/realms/cmdb"
AUDIENCE = "cmdb-api"
JWKS_PATH = "/jwks"


class LocalIdP:
    """``port=0`` takes a free port when started (see ``port`` afterwards)."""

    def __init__(self, port: int = 0, issuer: str = ISSUER, audience: str = AUDIENCE) -> None:
        self.key = RSAKey.generate_key(2048, auto_kid=True)
        self.port = port
        self.issuer = issuer
        self.audience = audience
        self.server: ThreadingHTTPServer | None = None

    def start(self) -> LocalIdP:
        """Serve the JWKS on loopback (once; a daemon thread, ended by ``stop``)."""
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
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def jwks_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{JWKS_PATH}"

    def env(self) -> dict[str, str]:
        """Settings that make the API trust this provider."""
        return {"CMDB_AUTH_ISSUER": self.issuer, "CMDB_AUTH_AUDIENCE": self.audience,
                "CMDB_AUTH_JWKS_URL": self.jwks_url}

    def token(self, user: str = "bench", roles: tuple[str, ...] = ("operator",),
              ttl_s: int = 6 * 3600, *, claims: dict[str, Any] | None = None,
              signing_key: RSAKey | None = None) -> str:
        """A signed token for ``user`` with ``roles``. ``claims`` overrides or adds claims
        (e.g. another ``aud``); ``signing_key`` signs with another key while the header still
        names this provider's key id (a forgery)."""
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": self.audience, "sub": user,
                   "preferred_username": user, "roles": list(roles),
                   "iat": now, "nbf": now, "exp": now + ttl_s, **(claims or {})}
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, payload,
                          signing_key or self.key)

    def authorization(self, user: str = "bench", roles: tuple[str, ...] = ("operator",)) -> str:
        return f"Bearer {self.token(user, roles)}"
