"""Verify the end user's bearer token (a JWT) and return the authenticated user."""

from __future__ import annotations

import math
import time
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
from jwt.algorithms import HMACAlgorithm
from jwt.types import Options
from pydantic import SecretStr

from aldero_fastapi.errors import AlderoError, ConfigurationError
from aldero_fastapi.jwks import AuthUnavailableError, JWKSCache
from aldero_fastapi.settings import ASYMMETRIC_ALGORITHMS, SYMMETRIC_ALGORITHMS, AlderoSettings

__all__ = [
    "AuthUnavailableError",
    "AuthenticatedUser",
    "InvalidTokenError",
    "TokenVerifier",
    "contains_control_characters",
    "find_user_id_problem",
]


# NOTE: the limit of the emulator; the hosted API's limit is not documented.
MAX_USER_ID_LENGTH = 128


def contains_control_characters(value: str) -> bool:
    """Return whether ``value`` contains a C0 or C1 control character or DEL."""
    return any(unicodedata.category(character) == "Cc" for character in value)


def find_user_id_problem(user_id: str) -> str | None:
    """
    Return why ``user_id`` cannot identify a user in the Aldero API, or None when it can.

    User ids travel as one URL path segment, so "." and ".." are rejected (HTTP clients
    resolve them as relative paths), and so is text that is not valid UTF-8.
    """
    if not user_id:
        return "is empty"
    if len(user_id) > MAX_USER_ID_LENGTH:
        return f"is longer than {MAX_USER_ID_LENGTH} characters"
    if user_id in (".", ".."):
        return "is a relative path segment"
    if contains_control_characters(user_id):
        return "contains control characters"
    try:
        user_id.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8"
    return None


@dataclass(frozen=True)
class AuthenticatedUser:
    """
    The end user of a request, as established by a user resolver.

    ``claims`` are the verified token claims, empty when the user did not come from a
    token. They are left out of the repr because they can contain personal data.
    """

    id: str
    claims: Mapping[str, Any] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str):
            raise ValueError("AuthenticatedUser.id must be a string")
        problem = find_user_id_problem(self.id)
        if problem is not None:
            raise ValueError(f"AuthenticatedUser.id {problem}")

        # A copy, so that later changes to the caller's dict do not change the user.
        object.__setattr__(self, "claims", dict(self.claims))


class InvalidTokenError(AlderoError):
    """
    A bearer token was rejected.

    ``reason`` is a short description such as "token expired". It never contains any
    part of the token, so it may be logged and sent to the client.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason, code="invalid_token")
        self.reason = reason


class TokenVerifier:
    """
    Verifies bearer tokens signed with a shared secret or with a key from a JWKS.

    A token is accepted when it fits ``max_token_bytes``, its ``alg`` is allowed, its
    signature is valid and it has an ``exp`` in the future. ``nbf`` and ``iat`` must
    not lie in the future when present. Every time check allows ``leeway_seconds``.
    The issuer is checked when one is configured. The audience is checked when one is
    configured, and otherwise a token that names an audience is rejected, because it
    was issued for a specific recipient (RFC 7519, section 4.1.3). The user id claim
    must be a non-empty string without control characters.
    """

    def __init__(
        self,
        *,
        algorithms: Sequence[str],
        secret: SecretStr | None = None,
        jwks: JWKSCache | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: float = 0.0,
        user_id_claim: str = "sub",
        max_token_bytes: int = 8192,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Raises:
            ConfigurationError: not exactly one of ``secret`` and ``jwks`` is given, an
                algorithm does not fit that key source, or the secret is empty or is a
                PEM, SSH or DER key.
        """
        self._algorithms = frozenset(algorithms)
        self._secret = _check_key_source(self._algorithms, secret, jwks)
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        self._leeway_seconds = leeway_seconds
        self._user_id_claim = user_id_claim
        self._max_token_bytes = max_token_bytes
        self._clock = clock

        # PyJWT checks the signature, the issuer, the audience and the presence of exp.
        # Its time checks read the system clock, so this class checks times itself.
        self._decode_options: Options = {
            "require": ["exp"],
            "verify_exp": False,
            "verify_nbf": False,
            "verify_iat": False,
            "verify_iss": issuer is not None,
            "verify_aud": True,
            "verify_sub": False,
            "verify_jti": False,
        }

    @classmethod
    def from_settings(
        cls,
        settings: AlderoSettings,
        http_client: httpx.AsyncClient,
        *,
        clock: Callable[[], float] = time.time,
    ) -> TokenVerifier | None:
        """
        Build the verifier that the settings describe, or return None when neither
        ALDERO_AUTH_JWT_SECRET nor ALDERO_AUTH_JWKS_URL is set.

        ``http_client`` fetches the JWKS and ``clock`` is used for the token times and
        the JWKS cache.
        """
        jwks: JWKSCache | None = None
        if settings.auth_jwks_url is not None:
            jwks = JWKSCache(
                settings.auth_jwks_url,
                http_client,
                cache_seconds=settings.auth_jwks_cache_seconds,
                refresh_interval_seconds=settings.auth_jwks_refresh_interval_seconds,
                clock=clock,
            )
        elif settings.auth_jwt_secret is None:
            return None

        return cls(
            algorithms=settings.resolved_auth_algorithms,
            secret=settings.auth_jwt_secret,
            jwks=jwks,
            issuer=settings.auth_issuer,
            audience=settings.auth_audience,
            leeway_seconds=settings.auth_leeway_seconds,
            user_id_claim=settings.auth_user_id_claim,
            max_token_bytes=settings.auth_max_token_bytes,
            clock=clock,
        )

    async def verify(self, token: str) -> AuthenticatedUser:
        """
        Verify ``token`` and return its user.

        Raises:
            InvalidTokenError: the token was rejected, and ``reason`` describes why.
            AuthUnavailableError: the JWKS has never been fetched, so the token could
                not be checked.
        """
        self._check_size(token)

        header = _read_header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise InvalidTokenError("algorithm not allowed")

        key = await self._find_key(header.get("kid"), algorithm)
        claims = self._decode(token, key, algorithm)
        self._check_times(claims)

        return AuthenticatedUser(id=self._read_user_id(claims), claims=claims)

    def _check_size(self, token: str) -> None:
        # Checked before any decoding, so that an oversized token costs no parsing.
        if len(token) > self._max_token_bytes:
            raise InvalidTokenError("token too large")

        try:
            size = len(token.encode("utf-8"))
        except UnicodeEncodeError:
            raise InvalidTokenError("malformed token") from None
        if size > self._max_token_bytes:
            raise InvalidTokenError("token too large")

    async def _find_key(self, kid: str | None, algorithm: str) -> jwt.PyJWK | bytes:
        if self._secret is not None:
            return self._secret
        # The constructor requires exactly one key source.
        assert self._jwks is not None

        keys = await self._jwks.find_keys(kid)
        if not keys:
            reason = "unknown signing key" if kid is not None else "missing key id (kid)"
            raise InvalidTokenError(reason)

        for key in keys:
            prepared = key.for_algorithm(algorithm)
            if prepared is not None:
                return prepared
        raise InvalidTokenError("algorithm does not match the signing key")

    def _decode(self, token: str, key: jwt.PyJWK | bytes, algorithm: str) -> dict[str, Any]:
        # Every PyJWT error is mapped to a fixed reason, and "from None" drops PyJWT's
        # message, which may quote parts of the token.
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options=self._decode_options,
                issuer=self._issuer,
                audience=self._audience,
            )
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("signature verification failed") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidTokenError("algorithm not allowed") from None
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("invalid issuer") from None
        except jwt.InvalidAudienceError:
            if self._audience is None:
                raise InvalidTokenError("token has an audience, but none is configured") from None
            raise InvalidTokenError("invalid audience") from None
        except jwt.MissingRequiredClaimError as error:
            # The claim name comes from this verifier's options, never from the token.
            raise InvalidTokenError(f"missing '{error.claim}' claim") from None
        except jwt.InvalidTokenError:
            raise InvalidTokenError("malformed token") from None

    def _check_times(self, claims: Mapping[str, Any]) -> None:
        now = self._clock()

        expires_at = _read_time(claims, "exp")
        if expires_at is not None and expires_at <= now - self._leeway_seconds:
            raise InvalidTokenError("token expired")

        not_before = _read_time(claims, "nbf")
        if not_before is not None and not_before > now + self._leeway_seconds:
            raise InvalidTokenError("token not yet valid")

        issued_at = _read_time(claims, "iat")
        if issued_at is not None and issued_at > now + self._leeway_seconds:
            raise InvalidTokenError("token issued in the future")

    def _read_user_id(self, claims: Mapping[str, Any]) -> str:
        claim = self._user_id_claim
        user_id = claims.get(claim)

        if user_id is None:
            raise InvalidTokenError(f"missing user id claim '{claim}'")
        if not isinstance(user_id, str):
            raise InvalidTokenError(f"user id claim '{claim}' is not a string")
        if not user_id:
            raise InvalidTokenError(f"empty user id claim '{claim}'")
        problem = find_user_id_problem(user_id)
        if problem is not None:
            raise InvalidTokenError(f"user id claim '{claim}' {problem}")

        return user_id

    def __repr__(self) -> str:
        source = "jwks" if self._jwks is not None else "secret"
        return f"TokenVerifier(key_source={source!r}, algorithms={sorted(self._algorithms)!r})"


def _check_key_source(
    algorithms: frozenset[str], secret: SecretStr | None, jwks: JWKSCache | None
) -> bytes | None:
    """Return the secret as bytes after checking that it or the JWKS fits ``algorithms``."""
    if (secret is None) == (jwks is None):
        raise ConfigurationError(
            "TokenVerifier needs exactly one key source: a shared secret "
            "(ALDERO_AUTH_JWT_SECRET) or a JWKS (ALDERO_AUTH_JWKS_URL)"
        )
    if not algorithms:
        raise ConfigurationError("TokenVerifier needs at least one allowed algorithm")

    allowed = SYMMETRIC_ALGORITHMS if secret is not None else ASYMMETRIC_ALGORITHMS
    unfit = sorted(algorithms - allowed)
    if unfit:
        source = "a shared secret" if secret is not None else "a JWKS"
        raise ConfigurationError(
            f"algorithms {', '.join(unfit)} cannot be verified with {source}. "
            f"Use {', '.join(sorted(allowed))}"
        )

    if secret is None:
        return None

    secret_bytes = secret.get_secret_value().encode("utf-8")
    try:
        # The same checks PyJWT applies when it verifies: not empty, and not a PEM,
        # SSH or DER key, which would invite HS/RS algorithm confusion.
        HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(secret_bytes)
    except jwt.InvalidKeyError:
        raise ConfigurationError(
            "ALDERO_AUTH_JWT_SECRET is empty or looks like a public or private key. Set a "
            "random shared secret, or set ALDERO_AUTH_JWKS_URL for public-key tokens"
        ) from None
    return secret_bytes


def _read_header(token: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise InvalidTokenError("malformed token") from None


def _read_time(claims: Mapping[str, Any], claim: str) -> int | float | None:
    """Return the NumericDate ``claim`` in seconds, or None when the token has none."""
    value = claims.get(claim)
    if value is None:
        return None

    # bool is an int in Python, and NaN would pass every comparison. An int is returned
    # as is because converting a huge one to float raises OverflowError.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTokenError(f"invalid '{claim}' claim")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidTokenError(f"invalid '{claim}' claim")
    return value
