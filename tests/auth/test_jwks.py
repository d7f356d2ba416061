"""JWKS fetching, caching, rotation and outages, against a real JWKS server."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from aldero_fastapi.auth import TokenVerifier
from aldero_fastapi.errors import ConfigurationError
from aldero_fastapi.jwks import AuthUnavailableError, JWKSCache

from .conftest import KID, FakeClock, app_client, bearer, build_app, jwks_settings
from .jwks_server import JWKSServer
from .tokens import (
    NOW,
    SECRET,
    USER_ID,
    claims,
    new_ec_key,
    new_ed25519_key,
    private_jwk,
    public_jwk,
    sign_with_key,
)

# Long enough for every test that moves the clock past the cache lifetime.
LONG_LIVED = claims(exp=NOW + 86_400)


def make_verifier(
    server: JWKSServer, http_client: httpx.AsyncClient, clock: FakeClock, **values: Any
) -> TokenVerifier:
    values.setdefault("auth_jwks_cache_seconds", 60)
    verifier = TokenVerifier.from_settings(
        jwks_settings(server.url, **values), http_client, clock=clock
    )
    assert verifier is not None
    return verifier


def jwks_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "aldero_fastapi.jwks" and record.levelno == logging.WARNING
    ]


async def test_rotation_new_kid(
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    verifier = make_verifier(jwks_server, http_client, clock)
    old_token = sign_with_key(LONG_LIVED, rsa_key, kid=KID)
    new_token = sign_with_key(claims(sub="user_456", exp=NOW + 86_400), other_rsa_key, kid="key-2")

    async with app_client(build_app(verifier)) as client:
        first = await client.get("/me", headers=bearer(old_token))
        assert first.status_code == 200
        assert jwks_server.hits == 1

        # The issuer publishes a second key and starts signing with it.
        jwks_server.keys = [
            public_jwk(rsa_key, KID, alg="RS256"),
            public_jwk(other_rsa_key, "key-2", alg="RS256"),
        ]
        rotated = await client.get("/me", headers=bearer(new_token))
        assert rotated.status_code == 200
        assert rotated.json() == {"id": "user_456"}
        assert jwks_server.hits == 2

        # The old key is still published, so its tokens stay valid without a fetch.
        old_again = await client.get("/me", headers=bearer(old_token))
        assert old_again.status_code == 200
        assert jwks_server.hits == 2

        # Once the old key is withdrawn and the cache expires, its tokens are rejected
        # after one fetch: the refresh already brought the newest set.
        jwks_server.keys = [public_jwk(other_rsa_key, "key-2", alg="RS256")]
        clock.advance(61)
        withdrawn = await client.get("/me", headers=bearer(old_token))
        assert withdrawn.status_code == 401
        assert withdrawn.json()["reason"] == "unknown signing key"
        assert jwks_server.hits == 3


async def test_cache_expiry_refetches(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, rsa_key, kid=KID)

    async with app_client(build_app(verifier)) as client:
        await client.get("/me", headers=bearer(token))
        clock.advance(59)
        cached = await client.get("/me", headers=bearer(token))
        assert cached.status_code == 200
        assert jwks_server.hits == 1

        clock.advance(1)
        refreshed = await client.get("/me", headers=bearer(token))
        assert refreshed.status_code == 200
        assert jwks_server.hits == 2


async def test_outage_keeps_cached_keys(
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, rsa_key, kid=KID)

    async with app_client(build_app(verifier)) as client:
        first = await client.get("/me", headers=bearer(token))
        assert first.status_code == 200

        jwks_server.stop()
        clock.advance(61)
        during_outage = await client.get("/me", headers=bearer(token))
        assert during_outage.status_code == 200
        assert during_outage.json() == {"id": USER_ID}

        warnings = jwks_warnings(caplog)
        assert len(warnings) == 1
        assert jwks_server.url in warnings[0]
        assert "ConnectError" in warnings[0]
        assert public_jwk(rsa_key, KID)["n"] not in warnings[0]

        # Within the refresh interval the failed fetch is not retried.
        again = await client.get("/me", headers=bearer(token))
        assert again.status_code == 200
        assert len(jwks_warnings(caplog)) == 1

        # An unknown kid during the outage is a bad token, not an unavailable service.
        stranger = sign_with_key(LONG_LIVED, other_rsa_key, kid="key-unknown")
        unknown = await client.get("/me", headers=bearer(stranger))
        assert unknown.status_code == 401
        assert unknown.json()["reason"] == "unknown signing key"


async def test_first_fetch_error_503(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, rsa_key, kid=KID)
    jwks_server.status_code = 500

    async with app_client(build_app(verifier)) as client:
        failed = await client.get("/me", headers=bearer(token))
        assert failed.status_code == 503
        assert failed.json() == {"error": "Authentication service unavailable"}
        assert failed.headers["Retry-After"] == "30"
        assert jwks_server.hits == 1
        assert "HTTPStatusError: status 500" in jwks_warnings(caplog)[0]

        # The server recovers, but the next attempt waits for the refresh interval.
        jwks_server.status_code = 200
        clock.advance(10)
        waiting = await client.get("/me", headers=bearer(token))
        assert waiting.status_code == 503
        assert waiting.headers["Retry-After"] == "20"
        assert jwks_server.hits == 1

        clock.advance(20)
        recovered = await client.get("/me", headers=bearer(token))
        assert recovered.status_code == 200
        assert jwks_server.hits == 2


async def test_first_fetch_refused_503(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    verifier = make_verifier(jwks_server, http_client, clock)
    jwks_server.stop()

    async with app_client(build_app(verifier)) as client:
        token = sign_with_key(LONG_LIVED, rsa_key, kid=KID)
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"


async def test_unknown_kid_burst(
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    verifier = make_verifier(jwks_server, http_client, clock)
    valid = sign_with_key(LONG_LIVED, rsa_key, kid=KID)
    forged = [
        sign_with_key(LONG_LIVED, other_rsa_key, kid=f"unknown-{number}") for number in range(502)
    ]

    async with app_client(build_app(verifier)) as client:
        warmup = await client.get("/me", headers=bearer(valid))
        assert warmup.status_code == 200

        responses = await asyncio.gather(
            *(client.get("/me", headers=bearer(token)) for token in forged[:500])
        )
        assert [r.status_code for r in responses] == [401] * 500
        assert {r.json()["reason"] for r in responses} == {"unknown signing key"}
        assert jwks_server.hits == 2

        within_interval = await client.get("/me", headers=bearer(forged[500]))
        assert within_interval.status_code == 401
        assert jwks_server.hits == 2

        clock.advance(30)
        after_interval = await client.get("/me", headers=bearer(forged[501]))
        assert after_interval.status_code == 401
        assert jwks_server.hits == 3


async def test_enc_key_ignored(
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    jwks_server.keys = [
        public_jwk(rsa_key, KID, alg="RS256", use="sig"),
        public_jwk(other_rsa_key, "enc-key", alg="RS256", use="enc"),
    ]
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, other_rsa_key, kid="enc-key")

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 401
    assert response.json()["reason"] == "unknown signing key"


async def test_no_kid_single_key(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, rsa_key)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 200


async def test_no_kid_several_keys(
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    jwks_server.keys = [
        public_jwk(rsa_key, KID, alg="RS256"),
        public_jwk(other_rsa_key, "key-2", alg="RS256"),
    ]
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, rsa_key)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 401
    assert response.json()["reason"] == "missing key id (kid)"


async def test_ec_key(
    jwks_server: JWKSServer, http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    ec_key = new_ec_key()
    jwks_server.keys = [public_jwk(ec_key, "ec-1")]
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, ec_key, algorithm="ES256", kid="ec-1")

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 200


async def test_eddsa_key(
    jwks_server: JWKSServer, http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    ed_key = new_ed25519_key()
    jwks_server.keys = [public_jwk(ed_key, "ed-1")]
    verifier = make_verifier(jwks_server, http_client, clock, auth_algorithms=["EdDSA"])
    token = sign_with_key(LONG_LIVED, ed_key, algorithm="EdDSA", kid="ed-1")

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 200


async def test_key_without_alg_ps256(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    jwks_server.keys = [public_jwk(rsa_key, KID)]
    verifier = make_verifier(jwks_server, http_client, clock, auth_algorithms=["RS256", "PS256"])
    token = sign_with_key(LONG_LIVED, rsa_key, algorithm="PS256", kid=KID)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 200


async def test_key_alg_mismatch(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    verifier = make_verifier(jwks_server, http_client, clock, auth_algorithms=["RS256", "PS256"])
    token = sign_with_key(LONG_LIVED, rsa_key, algorithm="PS256", kid=KID)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 401
    assert response.json()["reason"] == "algorithm does not match the signing key"


async def test_private_key_skipped(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    leaked = private_jwk(rsa_key, KID)
    jwks_server.keys = [leaked, {"kty": "oct", "kid": "hs", "k": SECRET}]
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, rsa_key, kid=KID)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    warnings = jwks_warnings(caplog)
    assert response.status_code == 503
    assert "entry 0 (kid 'key-1')" in warnings[0]
    assert "private or symmetric key material" in warnings[0]
    assert "entry 1 (kid 'hs')" in warnings[1]
    assert "no usable signing key" in warnings[2]
    assert leaked["d"] not in caplog.text
    assert SECRET not in caplog.text


async def test_malformed_document_503(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jwks_server.keys = "not a list"  # type: ignore[assignment]
    verifier = make_verifier(jwks_server, http_client, clock)
    token = sign_with_key(LONG_LIVED, rsa_key, kid=KID)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 503
    assert "not a JSON object with a 'keys' list" in jwks_warnings(caplog)[0]


async def test_client_headers_not_sent(
    rsa_key: rsa.RSAPrivateKey, jwks_server: JWKSServer, clock: FakeClock
) -> None:
    # The plugin's shared client may carry the Aldero API key as a default header.
    async with httpx.AsyncClient(
        headers={"Authorization": "Bearer bil_test_key", "X-Api-Key": "bil_test_key"},
        cookies={"session": "cookie-value"},
        auth=("user", "password"),
        timeout=5.0,
    ) as shared_client:
        verifier = make_verifier(jwks_server, shared_client, clock)
        token = sign_with_key(LONG_LIVED, rsa_key, kid=KID)
        async with app_client(build_app(verifier)) as client:
            response = await client.get("/me", headers=bearer(token))

    sent = jwks_server.request_headers[0]
    assert response.status_code == 200
    assert "authorization" not in sent
    assert "x-api-key" not in sent
    assert "cookie" not in sent
    assert sent["accept"] == "application/json"


async def test_cancelled_waiter_keeps_fetch(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    cache = JWKSCache(
        jwks_server.url, http_client, cache_seconds=60, refresh_interval_seconds=30, clock=clock
    )
    first = asyncio.create_task(cache.find_keys(KID))
    # Let the first task start the fetch, then join it from a second task.
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.find_keys(KID))
    await asyncio.sleep(0)
    first.cancel()

    keys = await second
    assert [key.kid for key in keys] == [KID]
    assert first.cancelled()
    assert jwks_server.hits == 1


def test_fetch_of_other_loop_replaced(jwks_server: JWKSServer, clock: FakeClock) -> None:
    # A task of a loop that never runs again, like a fetch left by a stopped test client.
    stopped_loop = asyncio.new_event_loop()
    stuck = stopped_loop.create_task(asyncio.Event().wait())

    async def find_keys() -> list[str | None]:
        async with httpx.AsyncClient(timeout=5.0) as http_client:
            cache = JWKSCache(
                jwks_server.url,
                http_client,
                cache_seconds=60,
                refresh_interval_seconds=30,
                clock=clock,
            )
            cache._fetch_task = stuck  # type: ignore[assignment]
            return [key.kid for key in await cache.find_keys(KID)]

    try:
        kids = asyncio.run(find_keys())
    finally:
        stuck.cancel()
        stopped_loop.run_until_complete(asyncio.gather(stuck, return_exceptions=True))
        stopped_loop.close()

    assert kids == [KID]
    assert jwks_server.hits == 1


async def test_unavailable_before_fetch(
    jwks_server: JWKSServer, http_client: httpx.AsyncClient, clock: FakeClock
) -> None:
    jwks_server.status_code = 503
    cache = JWKSCache(
        jwks_server.url, http_client, cache_seconds=60, refresh_interval_seconds=30, clock=clock
    )

    with pytest.raises(AuthUnavailableError) as raised:
        await cache.find_keys(KID)

    assert raised.value.retry_after_seconds == 30
    assert jwks_server.url in str(raised.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://keys.example.test/jwks.json",
        "ftp://keys.example.test/jwks.json",
        "http://10.0.0.1/jwks.json",
    ],
)
async def test_insecure_url_rejected(url: str, http_client: httpx.AsyncClient) -> None:
    with pytest.raises(ConfigurationError):
        JWKSCache(url, http_client, cache_seconds=60, refresh_interval_seconds=30)


async def test_url_without_credentials(http_client: httpx.AsyncClient) -> None:
    cache = JWKSCache(
        "https://user:password@keys.example.test/jwks.json?token=abc",
        http_client,
        cache_seconds=60,
        refresh_interval_seconds=30,
    )

    assert cache.url == "https://keys.example.test/jwks.json"
