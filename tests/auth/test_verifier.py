"""TokenVerifier and AuthenticatedUser, called directly with HS256 tokens."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
import pytest
from pydantic import SecretStr

from aldero_fastapi.auth import AuthenticatedUser, InvalidTokenError, TokenVerifier
from aldero_fastapi.errors import ConfigurationError

from .conftest import FakeClock, hs256_settings, make_settings
from .tokens import (
    NOW,
    SECRET,
    USER_ID,
    claims,
    new_rsa_key,
    public_pem,
    sign_hmac_raw,
    sign_hs256,
)


def make_verifier(http_client: httpx.AsyncClient, clock: FakeClock, **values: Any) -> TokenVerifier:
    verifier = TokenVerifier.from_settings(hs256_settings(**values), http_client, clock=clock)
    assert verifier is not None
    return verifier


async def rejection_reason(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(InvalidTokenError) as raised:
        await verifier.verify(token)
    return raised.value.reason


async def test_from_settings_unconfigured(http_client: httpx.AsyncClient) -> None:
    assert TokenVerifier.from_settings(make_settings(), http_client) is None


async def test_valid_token_claims(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock)

    user = await verifier.verify(sign_hs256(claims(plan="pro")))

    assert user.id == USER_ID
    assert user.claims["plan"] == "pro"
    assert user.claims["iss"] == "https://issuer.test"


async def test_clock_moves_past_exp(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock)
    token = sign_hs256(claims(exp=NOW + 300))

    assert (await verifier.verify(token)).id == USER_ID
    clock.advance(299)
    assert (await verifier.verify(token)).id == USER_ID
    clock.advance(1)
    assert await rejection_reason(verifier, token) == "token expired"


async def test_leeway_applies(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock, auth_leeway_seconds=10)

    assert (await verifier.verify(sign_hs256(claims(exp=NOW - 9)))).id == USER_ID
    assert (await verifier.verify(sign_hs256(claims(nbf=NOW + 10)))).id == USER_ID
    assert (await verifier.verify(sign_hs256(claims(iat=NOW + 10)))).id == USER_ID
    assert await rejection_reason(verifier, sign_hs256(claims(exp=NOW - 10))) == "token expired"
    assert await rejection_reason(verifier, sign_hs256(claims(nbf=NOW + 11))) == (
        "token not yet valid"
    )
    assert await rejection_reason(verifier, sign_hs256(claims(iat=NOW + 11))) == (
        "token issued in the future"
    )


@pytest.mark.parametrize(
    "exp",
    [float("nan"), float("inf"), "2030-01-01", True, None, [NOW + 300]],
    ids=["nan", "infinity", "string", "bool", "null", "list"],
)
async def test_invalid_exp(exp: Any, http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock)
    expected = "missing 'exp' claim" if exp is None else "invalid 'exp' claim"

    assert await rejection_reason(verifier, sign_hs256(claims(exp=exp))) == expected


async def test_huge_exp_accepted(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock)

    user = await verifier.verify(sign_hs256(claims(exp=10**400)))

    assert user.id == USER_ID


async def test_custom_user_id_claim(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock, auth_user_id_claim="uid")

    user = await verifier.verify(sign_hs256(claims(uid="user_789")))
    missing = await rejection_reason(verifier, sign_hs256(claims()))

    assert user.id == "user_789"
    assert missing == "missing user id claim 'uid'"


async def test_control_characters_in_user_id(
    http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(http_client, clock)

    reason = await rejection_reason(verifier, sign_hs256(claims(sub="user\n123")))

    assert reason == "user id claim 'sub' contains control characters"


async def test_missing_audience(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock)

    reason = await rejection_reason(verifier, sign_hs256(claims(aud=None)))

    assert reason == "missing 'aud' claim"


async def test_audience_not_configured(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    settings = make_settings(auth_jwt_secret=SECRET)
    verifier = TokenVerifier.from_settings(settings, http_client, clock=clock)
    assert verifier is not None

    without_audience = await verifier.verify(sign_hs256(claims(aud=None, iss="any")))
    reason = await rejection_reason(verifier, sign_hs256(claims()))

    assert without_audience.id == USER_ID
    assert reason == "token has an audience, but none is configured"


async def test_audience_in_list(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock)

    user = await verifier.verify(sign_hs256(claims(aud=["other", "aldero-app"])))

    assert user.id == USER_ID


async def test_size_checked_first(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock, auth_max_token_bytes=256)

    # Garbage that would be "malformed token" if it were parsed.
    assert await rejection_reason(verifier, "x" * 257) == "token too large"
    assert await rejection_reason(verifier, "x" * 256) == "malformed token"
    # 200 characters, but 400 bytes in UTF-8.
    assert await rejection_reason(verifier, "é" * 200) == "token too large"


@pytest.mark.parametrize(
    "header",
    [{"kid": 5}, {"b64": False, "crit": ["b64"]}],
    ids=["numeric_kid", "detached_payload"],
)
async def test_malformed_header(
    header: dict[str, Any], http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    verifier = make_verifier(http_client, clock)
    token = sign_hmac_raw(claims(), SECRET.encode("ascii"), header=header)

    assert await rejection_reason(verifier, token) == "malformed token"


async def test_algorithm_allow_list(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock, auth_algorithms=["HS384"])

    # Signed with another secret of the 48 bytes that HS384 needs.
    hs384 = jwt.encode(claims(), "x" * 48, algorithm="HS384")
    hs256 = sign_hs256(claims())

    assert await rejection_reason(verifier, hs256) == "algorithm not allowed"
    assert await rejection_reason(verifier, hs384) == "signature verification failed"


async def test_pem_secret_rejected() -> None:
    pem = public_pem(new_rsa_key()).decode("ascii")

    with pytest.raises(ConfigurationError):
        TokenVerifier(algorithms=["HS256"], secret=SecretStr(pem))


async def test_no_key_source_rejected() -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(algorithms=["HS256"])


async def test_asymmetric_with_secret_rejected() -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(algorithms=["RS256"], secret=SecretStr(SECRET))


async def test_none_algorithm_rejected() -> None:
    with pytest.raises(ConfigurationError):
        TokenVerifier(algorithms=["none"], secret=SecretStr(SECRET))


async def test_verifier_repr(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = make_verifier(http_client, clock)

    assert repr(verifier) == "TokenVerifier(key_source='secret', algorithms=['HS256'])"


def test_user_repr_hides_claims() -> None:
    user = AuthenticatedUser(id=USER_ID, claims={"email": "someone@example.test"})

    assert repr(user) == "AuthenticatedUser(id='user_123')"


def test_user_claims_copied() -> None:
    source = {"plan": "pro"}
    user = AuthenticatedUser(id=USER_ID, claims=source)
    source["plan"] = "free"

    assert user.claims == {"plan": "pro"}


def test_user_hashable() -> None:
    user = AuthenticatedUser(id=USER_ID, claims={"plan": "pro"})

    assert {user} == {AuthenticatedUser(id=USER_ID, claims={"plan": "pro"})}


@pytest.mark.parametrize("user_id", ["", "user\x00", "user\x7f", "user\x85"])
def test_user_id_invalid(user_id: str) -> None:
    with pytest.raises(ValueError):
        AuthenticatedUser(id=user_id)
