"""Fetch and cache the JSON Web Key Set (JWKS) that verifies end-user tokens."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
import jwt

from aldero_fastapi.errors import AlderoError, ConfigurationError
from aldero_fastapi.settings import ASYMMETRIC_ALGORITHMS

__all__ = ["AuthUnavailableError", "JWKSCache", "SigningKey"]

logger = logging.getLogger(__name__)

# Plain http is accepted only on these hosts, where no one can tamper with the keys in transit.
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

# JWK members that carry private or symmetric key material (RFC 7518, section 6).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class AuthUnavailableError(AlderoError):
    """
    No JWKS has been fetched yet, so no token can be verified.

    The tokens may be valid, so the request should get 503, not 401.
    ``retry_after_seconds`` is the time until the next fetch is allowed.
    """

    def __init__(self, message: str, *, retry_after_seconds: int) -> None:
        super().__init__(message, code="auth_unavailable")
        self.retry_after_seconds = retry_after_seconds


class InvalidKeySetError(ValueError):
    """The JWKS document has the wrong shape or contains no usable signing key."""


class SigningKey:
    """A public signing key from the JWKS, prepared for each algorithm it verifies."""

    def __init__(self, jwk: Mapping[str, Any]) -> None:
        """
        Build the key from one JWK.

        Raises:
            jwt.PyJWTError: the JWK is malformed or of an unsupported type or curve.
        """
        self._jwk = dict(jwk)
        kid = self._jwk.get("kid")
        self.kid: str | None = kid if isinstance(kid, str) else None
        declared = self._jwk.get("alg")
        self._declared_algorithm: str | None = declared if isinstance(declared, str) else None

        default = jwt.PyJWK(self._jwk)
        self._by_algorithm: dict[str, jwt.PyJWK] = {default.algorithm_name: default}

    def for_algorithm(self, algorithm: str) -> jwt.PyJWK | None:
        """
        Return the key prepared for ``algorithm``, or None when it cannot verify it.

        A JWK with an ``alg`` member verifies only that algorithm. A JWK without one
        verifies every algorithm of its key type, so an RSA key serves RS256 and PS256.
        Callers pass only allow-listed algorithms, which bounds the prepared keys kept.
        """
        prepared = self._by_algorithm.get(algorithm)
        if prepared is not None or self._declared_algorithm is not None:
            return prepared

        try:
            prepared = jwt.PyJWK(self._jwk, algorithm=algorithm)
        except (jwt.PyJWTError, NotImplementedError):
            # PyJWT raises NotImplementedError for the "none" algorithm.
            return None

        self._by_algorithm[algorithm] = prepared
        return prepared

    def __repr__(self) -> str:
        return f"SigningKey(kid={self.kid!r}, kty={self._jwk.get('kty')!r})"


class JWKSCache:
    """
    The signing keys published at a JWKS URL, fetched with the app's HTTP client.

    The key set is cached for ``cache_seconds``. A kid missing from the cached set
    triggers a refetch, at most once per ``refresh_interval_seconds``. Concurrent
    requests share one in-flight fetch. A failed fetch is retried no sooner than
    ``refresh_interval_seconds`` later, and meanwhile the last good key set is served.
    ``clock`` returns the current time in seconds, and tests pass a fake one.

    The fetch sends no header, cookie or auth of the shared client, so that an API key
    configured on that client never reaches the key server. Redirects are not followed.
    """

    def __init__(
        self,
        url: str,
        http_client: httpx.AsyncClient,
        *,
        cache_seconds: float,
        refresh_interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = _check_url(url)
        self._http_client = http_client
        self._cache_seconds = cache_seconds
        self._refresh_interval_seconds = refresh_interval_seconds
        self._clock = clock

        self._keys: tuple[SigningKey, ...] | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None
        self._unknown_kid_refetch_at: float | None = None
        self._fetch_task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The JWKS URL without user info, query or fragment, safe to log."""
        return f"{self._url.scheme}://{self._url.netloc.decode('ascii')}{self._url.path}"

    async def find_keys(self, kid: str | None) -> tuple[SigningKey, ...]:
        """
        Return the keys that may have signed a token with this ``kid``.

        The result is empty when no key matches. A token without a kid matches only a
        key set that contains exactly one key.

        Raises:
            AuthUnavailableError: no key set has ever been fetched successfully.
        """
        fetched = await self._refresh_if_stale()
        keys = self._require_keys()

        if kid is None:
            return keys if len(keys) == 1 else ()

        matches = _keys_with_kid(keys, kid)
        if matches or fetched:
            return matches

        # A new kid usually means the issuer rotated its keys since the last fetch.
        # Joining a fetch already in flight costs nothing, but a new fetch is rate-limited
        # because every request can carry a made-up kid.
        if self._fetch_in_flight() is None:
            if not self._may_refetch_for_unknown_kid():
                return ()
            self._unknown_kid_refetch_at = self._clock()

        await self._join_fetch()
        return _keys_with_kid(self._require_keys(), kid)

    async def _refresh_if_stale(self) -> bool:
        """Fetch the key set if none is cached or it expired, and return whether a fetch ran."""
        now = self._clock()
        stale = self._keys is None or now - self._fetched_at >= self._cache_seconds
        if not stale:
            return False

        if self._fetch_in_flight() is None and self._in_failure_backoff(now):
            return False

        await self._join_fetch()
        return True

    def _require_keys(self) -> tuple[SigningKey, ...]:
        if self._keys is not None:
            return self._keys

        retry_after = 1.0
        if self._failed_at is not None:
            retry_after = self._failed_at + self._refresh_interval_seconds - self._clock()
        raise AuthUnavailableError(
            f"The JWKS at {self.url} has not been fetched yet, so tokens cannot be verified",
            retry_after_seconds=max(1, math.ceil(retry_after)),
        )

    def _in_failure_backoff(self, now: float) -> bool:
        if self._failed_at is None:
            return False
        return now - self._failed_at < self._refresh_interval_seconds

    def _may_refetch_for_unknown_kid(self) -> bool:
        now = self._clock()
        if self._in_failure_backoff(now):
            return False
        return (
            self._unknown_kid_refetch_at is None
            or now - self._unknown_kid_refetch_at >= self._refresh_interval_seconds
        )

    def _fetch_in_flight(self) -> asyncio.Task[None] | None:
        task = self._fetch_task
        if task is not None and task.get_loop() is not asyncio.get_running_loop():
            # A task of another event loop cannot be awaited from this one, and if that
            # loop stopped first the task never completes. This loop starts its own fetch.
            self._fetch_task = None
            return None
        return task

    async def _join_fetch(self) -> None:
        task = self._fetch_in_flight()
        if task is None:
            task = asyncio.create_task(self._fetch())
            task.add_done_callback(self._forget_fetch)
            self._fetch_task = task

        # The shield keeps a cancelled request, such as a client that disconnected,
        # from cancelling the fetch that other requests are waiting for.
        await asyncio.shield(task)

    def _forget_fetch(self, task: asyncio.Task[None]) -> None:
        if self._fetch_task is task:
            self._fetch_task = None

        # Retrieve the exception so that asyncio does not report it again when every
        # waiter was cancelled. The waiters that remain still receive it.
        if not task.cancelled():
            task.exception()

    async def _fetch(self) -> None:
        started_at = self._clock()

        try:
            keys = await self._download()
        except (httpx.HTTPError, ValueError) as error:
            self._failed_at = self._clock()
            if self._keys is None:
                logger.warning(
                    "JWKS fetch from %s failed (%s), so requests with a bearer token get 503 "
                    "until a fetch succeeds. The next attempt is allowed in %.0f seconds",
                    self.url,
                    _describe_error(error),
                    self._refresh_interval_seconds,
                )
            else:
                logger.warning(
                    "JWKS refresh from %s failed (%s), so the %d keys fetched %.0f seconds "
                    "ago stay in use",
                    self.url,
                    _describe_error(error),
                    len(self._keys),
                    self._failed_at - self._fetched_at,
                )
            return

        self._keys = keys
        self._fetched_at = started_at
        self._failed_at = None
        logger.debug("fetched %d signing keys from %s", len(keys), self.url)

    async def _download(self) -> tuple[SigningKey, ...]:
        # A bare request instead of client.get() leaves out the client's default
        # headers and cookies, and auth=None leaves out its auth.
        request = httpx.Request(
            "GET",
            self._url,
            headers={"Accept": "application/json"},
            extensions={"timeout": self._http_client.timeout.as_dict()},
        )
        response = await self._http_client.send(request, auth=None, follow_redirects=False)
        response.raise_for_status()
        return self._parse_key_set(response.json())

    def _parse_key_set(self, document: Any) -> tuple[SigningKey, ...]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise InvalidKeySetError("the response is not a JSON object with a 'keys' list")

        keys: list[SigningKey] = []
        for position, jwk in enumerate(document["keys"]):
            key = self._parse_key(position, jwk)
            if key is not None:
                keys.append(key)

        if not keys:
            raise InvalidKeySetError("the key set contains no usable signing key")
        return tuple(keys)

    def _parse_key(self, position: int, jwk: Any) -> SigningKey | None:
        """Build the signing key at ``position`` of the set, or None when it must be skipped."""
        if not isinstance(jwk, dict):
            logger.debug("skipping JWKS entry %d of %s: not a JSON object", position, self.url)
            return None

        if not _PRIVATE_MEMBERS.isdisjoint(jwk):
            # Anyone who can read the JWKS can then sign tokens with this key.
            logger.warning(
                "skipping JWKS entry %d (kid %r) of %s: it contains private or symmetric "
                "key material, which a key set must never publish",
                position,
                jwk.get("kid"),
                self.url,
            )
            return None

        problem = _find_unusable_member(jwk)
        if problem is not None:
            logger.debug("skipping JWKS entry %d of %s: %s", position, self.url, problem)
            return None

        try:
            return SigningKey(jwk)
        except jwt.PyJWTError as error:
            logger.debug(
                "skipping JWKS entry %d of %s: %s", position, self.url, type(error).__name__
            )
            return None


def _find_unusable_member(jwk: Mapping[str, Any]) -> str | None:
    """Return why the JWK cannot verify token signatures, or None when it can."""
    if "kid" in jwk and not isinstance(jwk["kid"], str):
        return "kid is not a string"

    use = jwk.get("use")
    if use is not None and use != "sig":
        return "its use is not 'sig'"

    operations = jwk.get("key_ops")
    if operations is not None and (not isinstance(operations, list) or "verify" not in operations):
        return "its key_ops do not include 'verify'"

    algorithm = jwk.get("alg")
    if algorithm is not None and (
        not isinstance(algorithm, str) or algorithm not in ASYMMETRIC_ALGORITHMS
    ):
        return "its alg is not a supported public-key algorithm"

    if jwk.get("kty") == "oct":
        return "it is a symmetric key"
    return None


def _keys_with_kid(keys: tuple[SigningKey, ...], kid: str) -> tuple[SigningKey, ...]:
    return tuple(key for key in keys if key.kid == kid)


def _check_url(url: str) -> httpx.URL:
    parsed = httpx.URL(url)
    if parsed.scheme == "https":
        return parsed
    if parsed.scheme == "http" and parsed.host in _LOOPBACK_HOSTS:
        return parsed
    raise ConfigurationError(
        "ALDERO_AUTH_JWKS_URL must be an https URL, because anyone who can change the keys "
        "in transit can sign tokens. Plain http is accepted only for 127.0.0.1, ::1 and "
        "localhost"
    )


def _describe_error(error: Exception) -> str:
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTPStatusError: status {error.response.status_code}"
    if isinstance(error, InvalidKeySetError):
        return f"InvalidKeySetError: {error}"
    return type(error).__name__
