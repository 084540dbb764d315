"""Signing keys from a JWKS URL: cached, refreshed, and kept when the endpoint is down.

- Keys are fetched on first use and again once ``cache_s`` has passed.
- A token with a ``kid`` we do not know triggers one refetch, and no more than one per
  ``cooldown_s``: a flood of made-up kids cannot turn into a flood of requests to the provider.
- When a fetch fails (down, slow, garbage), the last good keys stay in use; a kid that is not
  among them fails closed.
- Concurrent requests share one fetch (a lock), so a cold start does not stampede.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger("cmdb.identity.jwks")

MAX_JWKS_BYTES = 256 * 1024

Fetch = Callable[[], Awaitable[dict[str, Any]]]


class KeySource:
    """Where a verifier finds the public key for a token's ``kid``."""

    async def key_set(self, kid: str | None) -> KeySet | None:  # pragma: no cover - interface
        raise NotImplementedError


class StaticKeys(KeySource):
    """A fixed key set (the development issuer's own public key)."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    async def key_set(self, kid: str | None) -> KeySet | None:
        return self._keys


def http_fetch(url: str, timeout_s: float,
               transport: httpx.AsyncBaseTransport | None = None) -> Fetch:
    """A fetch of the JWKS document at ``url`` with a timeout and a size cap."""

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(timeout=timeout_s, transport=transport,
                                     follow_redirects=False) as client:
            return await client.get(url, headers={"Accept": "application/json"})

    async def fetch() -> dict[str, Any]:
        # httpx's timeout is per read; this bounds the whole fetch (a slow drip included).
        try:
            response = await asyncio.wait_for(get(), timeout_s)
        except TimeoutError as e:
            raise httpx.TimeoutException(f"JWKS fetch took longer than {timeout_s} s") from e
        response.raise_for_status()
        if len(response.content) > MAX_JWKS_BYTES:
            raise ValueError(f"JWKS document larger than {MAX_JWKS_BYTES} bytes")
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("JWKS document is not a JSON object")
        # Only public asymmetric keys verify tokens; a shared secret in a JWKS is ignored.
        keys = body.get("keys")
        if not isinstance(keys, list):
            raise ValueError("JWKS document has no keys list")
        return {"keys": [k for k in keys if isinstance(k, dict) and k.get("kty") != "oct"
                         and "d" not in k]}

    return fetch


class JWKSCache(KeySource):
    def __init__(self, fetch: Fetch, cache_s: float, cooldown_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._cache_s = cache_s
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._keys: KeySet | None = None
        self._kids: frozenset[str] = frozenset()
        self._fetched_at: float | None = None  # last successful fetch
        self._tried_at: float | None = None  # last attempt, successful or not
        self._kid_refetch_at: float | None = None  # last refetch for an unknown kid
        self._lock = asyncio.Lock()
        self._finished = 0  # fetch attempts completed: lets waiters skip a duplicate fetch
        self.fetches = 0  # attempts, for operators and tests

    async def key_set(self, kid: str | None) -> KeySet | None:
        now = self._clock()
        if self._keys is None or self._expired(now):
            await self._refresh()
        elif kid is not None and kid not in self._kids and (
                self._kid_refetch_at is None or now - self._kid_refetch_at >= self._cooldown_s):
            self._kid_refetch_at = now
            await self._refresh()
        return self._keys

    def _expired(self, now: float) -> bool:
        if self._fetched_at is None or now - self._fetched_at >= self._cache_s:
            # After a failed attempt, wait out the cooldown before trying again.
            return self._cooled_down(now)
        return False

    def _cooled_down(self, now: float) -> bool:
        return self._tried_at is None or now - self._tried_at >= self._cooldown_s

    async def _refresh(self) -> None:
        finished_before = self._finished
        async with self._lock:
            if self._finished != finished_before:
                return  # another request fetched while we waited
            self._tried_at = self._clock()
            self.fetches += 1
            try:
                document = await self._fetch()
                keys = KeySet.import_key_set(document)  # type: ignore[arg-type]
            except (httpx.HTTPError, ValueError, JoseError, TypeError, KeyError) as e:
                self._finished += 1
                log.warning("JWKS fetch failed (%s); keeping %s cached keys",
                            type(e).__name__, len(self._kids))
                return
            self._keys = keys
            self._kids = frozenset(k.kid for k in keys.keys if k.kid)
            self._fetched_at = self._clock()
            self._finished += 1
