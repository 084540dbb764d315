"""Bearer token (JWT) validation: the only way a request gets a principal.

Checks, in order, each failing with :class:`TokenError` (a 401):
size (before any parsing) -> compact JWS shape -> ``alg`` among the pinned asymmetric
algorithms (so never ``none`` and never HS256 with a public key as the secret) -> a key for the
``kid`` from the key source (one refetch on an unknown kid, see ``jwks.py``) -> signature ->
``iss`` exact match, ``aud`` contains ours, ``exp`` required, ``nbf`` and ``iat`` with leeway ->
a user claim -> roles from the configured claim, mapped to our role names.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import KeySet

from cmdb.identity.jwks import KeySource
from cmdb.identity.principal import MAX_ROLES, MAX_USER_LENGTH, ROLES, Principal
from cmdb.settings import Settings

BEARER = "bearer"


class TokenError(Exception):
    """The token is missing or not acceptable; ``reason`` is safe to show the caller."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header value."""
    if not authorization:
        raise TokenError("a bearer token is required (Authorization: Bearer <token>)")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != BEARER or not token.strip():
        raise TokenError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def claim_at(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted claim path (``realm_access.roles``), or None."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def roles_from_claims(claims: Mapping[str, Any], path: str,
                      role_map: Mapping[str, str]) -> frozenset[str]:
    """Our roles from the token's role or group claim: mapped if a map is set, else as named."""
    raw = claim_at(claims, path)
    if isinstance(raw, str):
        raw = raw.replace(",", " ").split()
    if not isinstance(raw, list):
        return frozenset()
    names = [v.strip() for v in raw if isinstance(v, str) and v.strip()]
    if role_map:
        mapped = {role_map[n] for n in names if n in role_map}
    else:
        mapped = {n.lower() for n in names}
    return frozenset(r for r in mapped if r in ROLES)


# Verified tokens are remembered for a short while: a front end sends the same token with
# every request, and the signature check is most of the cost of authentication.
VERIFIED_CACHE_SIZE = 4096
VERIFIED_CACHE_S = 60.0


class TokenVerifier:
    def __init__(self, settings: Settings, keys: KeySource, issuer: str,
                 now: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._keys = keys
        self._issuer = issuer
        self._now = now
        self._algorithms = list(settings.auth_algorithms)
        self._verified: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def principal(self, authorization: str | None) -> Principal:
        """The caller named by a valid token in this Authorization header value."""
        if authorization is not None and len(authorization) > self._settings.auth_max_header_bytes:
            raise TokenError("the Authorization header is too large")
        token = bearer_token(authorization)
        cached = self._verified.get(token)
        if cached is not None:
            if self._now() < cached[1]:
                return cached[0]
            del self._verified[token]
        principal, exp = await self._verify(token)
        # Until the token expires, and never longer than the cache period.
        self._verified[token] = (principal, min(exp, self._now() + VERIFIED_CACHE_S))
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> tuple[Principal, float]:
        header = self._header(token)
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenError("the token's kid must be a string")
        keys = await self._keys.key_set(kid)
        key = _pick(keys, kid)
        try:
            decoded = jwt.decode(token, key, algorithms=self._algorithms)
        except BadSignatureError as e:
            raise TokenError("the token's signature is not valid") from e
        except JoseError as e:
            raise TokenError(f"the token cannot be verified ({e.error})") from e
        claims = decoded.claims
        self._validate_claims(claims)
        return self._principal(claims), float(claims["exp"]) + self._settings.auth_leeway_s

    def _header(self, token: str) -> dict[str, Any]:
        if token.count(".") != 2:
            raise TokenError("the token is not a signed JWT (compact JWS)")
        try:
            header = dict(jws.extract_compact(token.encode("ascii")).headers())
        except (JoseError, ValueError, UnicodeEncodeError) as e:
            raise TokenError("the token's header cannot be read") from e
        alg = header.get("alg")
        if alg not in self._algorithms:
            raise TokenError(f"the token's algorithm {alg!r} is not accepted")
        return header

    def _validate_claims(self, claims: dict[str, Any]) -> None:
        s = self._settings
        registry = jwt.JWTClaimsRegistry(
            now=lambda: int(self._now()), leeway=s.auth_leeway_s,
            iss={"essential": True, "value": self._issuer},
            aud={"essential": True, "value": s.auth_audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as e:
            raise TokenError("the token has expired") from e
        except MissingClaimError as e:
            raise TokenError(
                f"the token lacks the required claim {getattr(e, 'claim', '?')!r}") from e
        except InvalidClaimError as e:
            raise TokenError(_claim_reason(e)) from e
        except JoseError as e:
            raise TokenError(f"the token's claims are not valid ({e.error})") from e

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        s = self._settings
        user = next((v for c in s.auth_user_claims
                     if isinstance(v := claims.get(c), str) and v.strip()), None)
        if user is None or len(user) > MAX_USER_LENGTH or not user.isprintable():
            raise TokenError("the token names no usable user "
                             f"(claims tried: {', '.join(s.auth_user_claims)})")
        roles = roles_from_claims(claims, s.auth_roles_claim, s.auth_role_map)
        if len(roles) > MAX_ROLES:
            raise TokenError("the token carries too many roles")
        return Principal(user=user.strip(), roles=roles)


def _pick(keys: KeySet | None, kid: str | None) -> KeySet:
    if keys is None:
        raise TokenError("no signing keys are available to verify the token")
    if kid is None:
        if len(keys.keys) != 1:
            raise TokenError("the token has no kid and the issuer has several keys")
        return keys
    try:
        return KeySet([keys.get_by_kid(kid)])
    except (ValueError, KeyError, JoseError) as e:
        raise TokenError("the token's signing key (kid) is not known") from e


_CLAIM_REASONS = {
    "iss": "the token's issuer is not accepted",
    "aud": "the token's audience is not this API",
    "nbf": "the token is not valid yet",
    "iat": "the token was issued in the future",
}


def _claim_reason(e: InvalidClaimError) -> str:
    claim = getattr(e, "claim", None)
    return _CLAIM_REASONS.get(str(claim), f"the token's claim {claim!r} is not valid")
