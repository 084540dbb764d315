"""Bearer-token attacks against the verifier, the JWKS cache and the app's middleware.

The identity provider's JWKS endpoint is an httpx transport of the test's own (it counts
fetches and can go down or slow); tokens are signed with real RSA keys.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from cmdb.identity.auth import Authenticator
from cmdb.identity.jwks import JWKSCache, http_fetch
from cmdb.identity.principal import Principal
from cmdb.identity.tokens import TokenError, TokenVerifier, roles_from_claims
from cmdb.settings import Settings

ISSUER = "https://idp.example.com/realms/corp"
AUDIENCE = "cmdb-api"
JWKS_URL = "https://idp.example.com/realms/corp/protocol/openid-connect/certs"


class IdP:
    """A stand-in identity provider: signing keys and a JWKS endpoint that can fail."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, auto_kid=True)]
        self.published = list(self.keys)
        self.fetches = 0
        self.down = False
        self.delay_s = 0.0

    def rotate(self) -> RSAKey:
        new = RSAKey.generate_key(2048, auto_kid=True)
        self.keys.append(new)
        self.published = [new]
        return new

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.down:
            return httpx.Response(503, text="unavailable")
        return httpx.Response(200, json={"keys": [k.as_dict(private=False)
                                                  for k in self.published]})

    def token(self, key: RSAKey | None = None, **overrides: Any) -> str:
        key = key or self.keys[0]
        now = int(time.time())
        claims: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1",
                                  "preferred_username": "olga", "iat": now, "nbf": now,
                                  "exp": now + 300, "realm_access": {"roles": ["cmdb-ops"]},
                                  "jti": uuid.uuid4().hex}  # every token distinct
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = dict(
        auth_issuer=ISSUER, auth_audience=AUDIENCE, auth_jwks_url=JWKS_URL,
        auth_roles_claim="realm_access.roles",
        auth_role_map={"cmdb-ops": "operator", "cmdb-exec": "executive"},
        auth_jwks_refetch_cooldown_s=30, auth_jwks_cache_s=300, auth_jwks_timeout_s=0.5)
    base.update(kw)
    return Settings(**base)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def verifier(idp: IdP, clock: Clock | None = None, **kw: Any) -> tuple[TokenVerifier, JWKSCache]:
    s = settings(**kw)
    cache = JWKSCache(http_fetch(JWKS_URL, s.auth_jwks_timeout_s,
                                 httpx.MockTransport(idp.handle)),
                      s.auth_jwks_cache_s, s.auth_jwks_refetch_cooldown_s,
                      clock=clock or Clock())
    return TokenVerifier(s, cache, ISSUER), cache


async def refused(v: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as e:
        await v.principal(f"Bearer {token}")
    return e.value.reason


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_a_valid_token_gives_the_mapped_principal():
    idp = IdP()
    v, _ = verifier(idp)
    principal = await v.principal(f"Bearer {idp.token()}")
    assert principal == Principal("olga", frozenset({"operator"}))


async def test_time_claims_with_leeway():
    idp = IdP()
    v, _ = verifier(idp)
    now = int(time.time())
    assert "expired" in await refused(v, idp.token(exp=now - 120))
    assert (await v.principal(f"Bearer {idp.token(exp=now - 10)}")).user == "olga"  # leeway
    assert "not valid yet" in await refused(v, idp.token(nbf=now + 600))
    assert "future" in await refused(v, idp.token(iat=now + 600))
    assert "'exp'" in await refused(v, idp.token(exp=None))


async def test_issuer_and_audience_must_match_exactly():
    idp = IdP()
    v, _ = verifier(idp)
    assert "issuer" in await refused(v, idp.token(iss=ISSUER + "/"))
    assert "issuer" in await refused(v, idp.token(iss="https://evil.example.com"))
    assert "audience" in await refused(v, idp.token(aud="another-api"))
    assert (await v.principal(f"Bearer {idp.token(aud=['x', AUDIENCE])}")).user == "olga"


async def test_alg_none_is_refused():
    idp = IdP()
    v, _ = verifier(idp)
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64({'iss': ISSUER, 'aud': AUDIENCE})}."
    assert "algorithm 'none'" in await refused(v, unsigned)
    assert idp.fetches == 0  # refused before any key was looked up


async def test_hs256_signed_with_the_public_key_is_refused():
    idp = IdP()
    v, _ = verifier(idp)
    public_pem = idp.keys[0].as_pem(private=False)
    signing_input = (b64({"alg": "HS256", "kid": idp.keys[0].kid}) + "." + b64(
        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60,
         "preferred_username": "mallory", "realm_access": {"roles": ["cmdb-ops"]}}))
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    forged = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert "algorithm 'HS256'" in await refused(v, forged)


async def test_a_token_signed_by_another_key_with_a_known_kid_is_refused():
    idp = IdP()
    v, _ = verifier(idp)
    other = RSAKey.generate_key(2048)
    forged = jwt.encode({"alg": "RS256", "kid": idp.keys[0].kid},
                        {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60,
                         "preferred_username": "mallory"}, other)
    assert "signature" in await refused(v, forged)


async def test_unknown_kid_refetches_once_then_waits_for_the_cooldown():
    idp = IdP()
    clock = Clock()
    v, _ = verifier(idp, clock)
    await v.principal(f"Bearer {idp.token()}")
    assert idp.fetches == 1
    stranger = RSAKey.generate_key(2048, auto_kid=True)
    assert "kid" in await refused(v, idp.token(stranger))
    assert idp.fetches == 2  # one refetch for the unknown kid
    for _ in range(20):
        assert "kid" in await refused(v, idp.token(stranger))
    assert idp.fetches == 2  # a flood of unknown kids does not flood the provider
    clock.now += 31
    assert "kid" in await refused(v, idp.token(stranger))
    assert idp.fetches == 3  # after the cooldown, one more try


async def test_rotated_keys_are_picked_up_by_kid():
    idp = IdP()
    clock = Clock()
    v, _ = verifier(idp, clock)
    await v.principal(f"Bearer {idp.token()}")
    new = idp.rotate()
    assert (await v.principal(f"Bearer {idp.token(new)}")).user == "olga"
    assert idp.fetches == 2
    # The old key left the JWKS: its tokens stop working once the cache refreshes.
    clock.now += 301
    assert "kid" in await refused(v, idp.token(idp.keys[0]))


async def test_jwks_down_keeps_cached_keys_and_fails_closed_on_unknown_kids():
    idp = IdP()
    clock = Clock()
    v, _ = verifier(idp, clock)
    await v.principal(f"Bearer {idp.token()}")
    idp.down = True
    clock.now += 301  # the cache is due for a refresh, which fails
    assert (await v.principal(f"Bearer {idp.token()}")).user == "olga"
    assert idp.fetches == 2
    stranger = RSAKey.generate_key(2048, auto_kid=True)
    clock.now += 31
    assert "kid" in await refused(v, idp.token(stranger))


async def test_jwks_slow_is_cut_off_and_cached_keys_keep_working():
    idp = IdP()
    clock = Clock()
    v, _ = verifier(idp, clock)
    await v.principal(f"Bearer {idp.token()}")
    idp.delay_s = 5.0
    clock.now += 301
    started = time.perf_counter()
    assert (await v.principal(f"Bearer {idp.token()}")).user == "olga"
    assert time.perf_counter() - started < 4.0  # bounded by the 0.5 s fetch timeout


async def test_jwks_down_from_the_start_fails_closed():
    idp = IdP()
    idp.down = True
    v, _ = verifier(idp)
    assert "no signing keys" in await refused(v, idp.token())


async def test_concurrent_cold_requests_share_one_fetch():
    idp = IdP()
    idp.delay_s = 0.05
    v, _ = verifier(idp)
    token = idp.token()
    results = await asyncio.gather(*(v.principal(f"Bearer {token}") for _ in range(20)))
    assert {p.user for p in results} == {"olga"}
    assert idp.fetches == 1


@pytest.mark.parametrize("header, reason", [
    (None, "bearer token is required"),
    ("Basic dXNlcjpwYXNz", "must be 'Bearer"),
    ("Bearer ", "must be 'Bearer"),
    ("Bearer not-a-jwt", "not a signed JWT"),
    ("Bearer a.b.c", "header cannot be read"),
])
async def test_malformed_authorization_headers(header, reason):
    v, _ = verifier(IdP())
    with pytest.raises(TokenError) as e:
        await v.principal(header)
    assert reason in e.value.reason


def test_roles_from_claims_paths_and_maps():
    claims = {"realm_access": {"roles": ["cmdb-ops", "offline_access"]}, "groups": "a, b",
              "roles": ["Operator", "finance", "godmode"]}
    assert roles_from_claims(claims, "realm_access.roles", {"cmdb-ops": "operator"}) == {
        "operator"}
    assert roles_from_claims(claims, "roles", {}) == {"operator", "finance"}  # unknown dropped
    assert roles_from_claims(claims, "groups", {"b": "finance_all"}) == {"finance_all"}
    assert roles_from_claims(claims, "missing.path", {}) == frozenset()


@pytest.mark.parametrize("kw, message", [
    ({"mode": "production", "neo4j_uri": "bolt://db:7687", "neo4j_password": "s3cure-pw"},
     "CMDB_AUTH_ISSUER"),
    ({"auth_issuer": ISSUER}, "CMDB_AUTH_JWKS_URL"),
    ({"auth_algorithms": ["RS256", "HS256"]}, "HS256"),
    ({"auth_algorithms": ["none"]}, "none"),
])
def test_settings_refuse_unsafe_auth(kw, message):
    with pytest.raises(ValueError, match=message):
        Settings(**kw)


def test_production_with_an_external_issuer_does_not_use_the_dev_issuer():
    s = Settings(mode="production", neo4j_uri="bolt://db:7687", neo4j_password="s3cure-pw",
                 auth_issuer=ISSUER, auth_jwks_url=JWKS_URL)
    assert not s.uses_dev_issuer
    auth = Authenticator.from_settings(s)
    assert auth.dev_issuer is None


async def test_a_verified_token_is_remembered_briefly(monkeypatch: pytest.MonkeyPatch):
    idp = IdP()
    v, _ = verifier(idp)
    token = idp.token()
    calls = 0
    original = v._verify

    async def counting(t: str) -> tuple[Principal, float]:
        nonlocal calls
        calls += 1
        return await original(t)

    monkeypatch.setattr(v, "_verify", counting)
    for _ in range(5):
        assert (await v.principal(f"Bearer {token}")).user == "olga"
    assert calls == 1
    assert "expired" in await refused(v, idp.token(exp=int(time.time()) - 120))
    assert calls == 2  # a refused token is never remembered as good
