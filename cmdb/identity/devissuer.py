"""The built-in development issuer: an RSA key of the project's own, a JWKS endpoint and an
OAuth2 client-credentials token endpoint, so that a newcomer can get a token in a minute.

Development mode only: settings refuse production mode without an external issuer, and the app
mounts these routes only when ``settings.uses_dev_issuer``. The signing key and the client
secret live under ``<home>/dev-issuer/`` (git-ignored, mode 0600), so the CLI (``cmdb token``)
and a running server sign and verify with the same key.

Token endpoint (RFC 6749 section 4.4): ``POST /auth/dev/token`` with
``grant_type=client_credentials``, the client authenticated by HTTP Basic or by
``client_id``/``client_secret`` form fields. The client id is the user the token is for, the
secret is the one in ``<home>/dev-issuer/client-secret``, and ``scope`` lists roles.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from cmdb.identity.principal import ROLES
from cmdb.settings import Settings

DEV_ISSUER = "urn:cmdb:development-issuer"
TOKEN_PATH = "/auth/dev/token"
JWKS_PATH = "/auth/dev/jwks"
_MAX_FORM_BYTES = 8192


def _write_private(path: Path, text: str) -> None:
    """Write a secret file atomically with owner-only permissions (no half-written key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        os.link(tmp, path)  # fails if another process created it first: theirs wins
    except FileExistsError:
        pass
    finally:
        tmp.unlink()


class DevIssuer:
    def __init__(self, key: RSAKey, client_secret: str, audience: str, ttl_s: int) -> None:
        self.key = key
        self.client_secret = client_secret
        self.audience = audience
        self.ttl_s = ttl_s

    @classmethod
    def load(cls, settings: Settings) -> DevIssuer:
        """The issuer whose key is under ``<home>/dev-issuer``, created on first use."""
        folder = settings.home / "dev-issuer"
        key_file = folder / "signing-key.json"
        secret_file = folder / "client-secret"
        if not key_file.exists():
            key = RSAKey.generate_key(2048, auto_kid=True)
            _write_private(key_file, json.dumps(key.as_dict(private=True)))
        if not secret_file.exists():
            _write_private(secret_file, secrets.token_urlsafe(24))
        key = RSAKey.import_key(json.loads(key_file.read_text()))
        return cls(key, secret_file.read_text().strip(), settings.auth_audience,
                   settings.dev_issuer_token_ttl_s)

    def public_keys(self) -> KeySet:
        return KeySet([RSAKey.import_key(self.key.as_dict(private=False))])

    def jwks(self) -> dict[str, Any]:
        return dict(self.public_keys().as_dict(private=False))

    def mint(self, user: str, roles: Iterable[str], ttl_s: int | None = None,
             now: float | None = None, **extra: Any) -> str:
        """A signed token for ``user`` with ``roles`` (extra claims override the defaults)."""
        issued = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": DEV_ISSUER, "aud": self.audience, "sub": user,
            "preferred_username": user, "roles": sorted(set(roles)),
            "iat": issued, "nbf": issued, "exp": issued + (ttl_s or self.ttl_s),
            "jti": uuid.uuid4().hex,
        }
        claims.update(extra)
        return jwt.encode({"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}, claims, self.key)


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if error == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="cmdb-dev"'
    return JSONResponse({"error": error, "error_description": description},
                        status_code=status, headers=headers)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, _, secret = decoded.partition(":")
    return user, secret


def dev_issuer_router(issuer: DevIssuer) -> APIRouter:
    router = APIRouter()

    @router.get(JWKS_PATH)
    async def jwks() -> JSONResponse:
        return JSONResponse(issuer.jwks())

    @router.post(TOKEN_PATH)
    async def token(request: Request) -> JSONResponse:
        if "application/x-www-form-urlencoded" not in request.headers.get("content-type", ""):
            return _oauth_error(400, "invalid_request",
                                "send application/x-www-form-urlencoded form fields")
        body = await request.body()
        if len(body) > _MAX_FORM_BYTES:
            return _oauth_error(400, "invalid_request", "the form is too large")
        try:
            fields = dict(parse_qsl(body.decode("utf-8"), strict_parsing=bool(body)))
        except (UnicodeDecodeError, ValueError):
            return _oauth_error(400, "invalid_request", "the form cannot be parsed")
        if fields.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type",
                                "only grant_type=client_credentials is supported")
        basic = _basic_credentials(request.headers.get("authorization"))
        client_id, secret = basic or (fields.get("client_id", ""), fields.get("client_secret", ""))
        if not client_id or not hmac.compare_digest(secret.encode(), issuer.client_secret.encode()):
            return _oauth_error(401, "invalid_client", "unknown client or wrong secret "
                                "(see <home>/dev-issuer/client-secret)")
        roles = fields.get("scope", "").replace(",", " ").split()
        unknown = sorted(set(roles) - set(ROLES))
        if unknown:
            return _oauth_error(400, "invalid_scope",
                                f"unknown roles: {', '.join(unknown)}; known: {', '.join(ROLES)}")
        access = issuer.mint(client_id, roles)
        return JSONResponse(
            {"access_token": access, "token_type": "Bearer", "expires_in": issuer.ttl_s,
             "scope": " ".join(sorted(set(roles)))},
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    return router
