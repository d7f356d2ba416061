"""Forged and broken tokens against a route that needs bearer_token_user."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from aldero_fastapi.auth import InvalidTokenError, TokenVerifier

from .conftest import (
    KID,
    FakeClock,
    app_client,
    bearer,
    build_app,
    hs256_settings,
    jwks_settings,
)
from .jwks_server import JWKSServer
from .tokens import (
    NOW,
    OMIT,
    OTHER_SECRET,
    SECRET,
    USER_ID,
    claims,
    public_pem,
    sign_hmac_raw,
    sign_hs256,
    sign_with_key,
    unsigned,
)


@dataclass(frozen=True)
class Signer:
    """Signs tokens as the issuer of one setup does, and as an attacker would."""

    setup: str
    sign: Callable[[dict[str, Any]], str]
    sign_with_other_key: Callable[[dict[str, Any]], str]
    rsa_key: rsa.RSAPrivateKey
    other_rsa_key: rsa.RSAPrivateKey


@dataclass(frozen=True)
class Case:
    """One Authorization header and the rejection it must get."""

    name: str
    authorization: Callable[[Signer], str | None]
    # None when the request counts as carrying no credentials at all.
    reason: str | None
    setups: tuple[str, ...] = ("hs256", "jwks")


CASES = [
    Case("no_header", lambda s: None, None),
    Case("wrong_scheme", lambda s: "Basic dXNlcjpwYXNzd29yZA==", None),
    Case("empty_bearer", lambda s: "Bearer ", None),
    Case("malformed", lambda s: "Bearer not-a-jwt", "malformed token"),
    Case(
        "bad_signature",
        lambda s: "Bearer " + s.sign_with_other_key(claims()),
        "signature verification failed",
    ),
    Case("alg_none", lambda s: "Bearer " + unsigned(claims()), "algorithm not allowed"),
    Case(
        "hs_rs_confusion",
        lambda s: "Bearer " + sign_hmac_raw(claims(), public_pem(s.rsa_key), header={"kid": KID}),
        "algorithm not allowed",
        setups=("jwks",),
    ),
    Case(
        "rs256_against_secret",
        lambda s: "Bearer " + sign_with_key(claims(), s.rsa_key, kid=KID),
        "algorithm not allowed",
        setups=("hs256",),
    ),
    Case("expired", lambda s: "Bearer " + s.sign(claims(exp=NOW)), "token expired"),
    Case(
        "not_yet_valid",
        lambda s: "Bearer " + s.sign(claims(nbf=NOW + 60)),
        "token not yet valid",
    ),
    Case(
        "iat_future",
        lambda s: "Bearer " + s.sign(claims(iat=NOW + 60)),
        "token issued in the future",
    ),
    Case("missing_exp", lambda s: "Bearer " + s.sign(claims(exp=OMIT)), "missing 'exp' claim"),
    Case(
        "wrong_issuer",
        lambda s: "Bearer " + s.sign(claims(iss="https://attacker.test")),
        "invalid issuer",
    ),
    Case(
        "wrong_audience",
        lambda s: "Bearer " + s.sign(claims(aud="another-app")),
        "invalid audience",
    ),
    Case(
        "missing_user_id",
        lambda s: "Bearer " + s.sign(claims(sub=OMIT)),
        "missing user id claim 'sub'",
    ),
    Case(
        "empty_user_id",
        lambda s: "Bearer " + s.sign(claims(sub="")),
        "empty user id claim 'sub'",
    ),
    Case(
        "numeric_user_id",
        lambda s: "Bearer " + s.sign(claims(sub=123)),
        "user id claim 'sub' is not a string",
    ),
    Case(
        "list_user_id",
        lambda s: "Bearer " + s.sign(claims(sub=[USER_ID])),
        "user id claim 'sub' is not a string",
    ),
    Case(
        "unknown_kid",
        lambda s: "Bearer " + sign_with_key(claims(), s.other_rsa_key, kid="key-unknown"),
        "unknown signing key",
        setups=("jwks",),
    ),
    Case(
        "oversized",
        lambda s: "Bearer " + s.sign(claims(padding="x" * 9000)),
        "token too large",
    ),
]


def cases_for(setup: str) -> list[Any]:
    return [pytest.param(case, id=case.name) for case in CASES if setup in case.setups]


def hs256_signer(rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey) -> Signer:
    return Signer(
        setup="hs256",
        sign=sign_hs256,
        sign_with_other_key=lambda payload: sign_hs256(payload, OTHER_SECRET),
        rsa_key=rsa_key,
        other_rsa_key=other_rsa_key,
    )


def jwks_signer(rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey) -> Signer:
    return Signer(
        setup="jwks",
        sign=lambda payload: sign_with_key(payload, rsa_key, kid=KID),
        sign_with_other_key=lambda payload: sign_with_key(payload, other_rsa_key, kid=KID),
        rsa_key=rsa_key,
        other_rsa_key=other_rsa_key,
    )


def expected_challenge(case: Case) -> str:
    if case.reason is None:
        return "Bearer"
    return f'Bearer error="invalid_token", error_description="{case.reason}"'


def expected_body(case: Case) -> dict[str, str]:
    if case.reason is None:
        return {"error": "Not authenticated"}
    return {"error": "Invalid token", "reason": case.reason}


async def send(
    client: httpx.AsyncClient, authorization: str | None, path: str = "/me"
) -> httpx.Response:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return await client.get(path, headers=headers)


@pytest.mark.parametrize("path", ["/me", "/resolver"], ids=["current-user", "bearer-resolver"])
@pytest.mark.parametrize("case", cases_for("hs256"))
async def test_hs256_rejects(
    case: Case,
    path: str,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    verifier = TokenVerifier.from_settings(hs256_settings(), http_client, clock=clock)
    signer = hs256_signer(rsa_key, other_rsa_key)

    async with app_client(build_app(verifier)) as client:
        response = await send(client, case.authorization(signer), path)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == expected_challenge(case)
    assert response.json() == expected_body(case)


@pytest.mark.parametrize("case", cases_for("jwks"))
async def test_jwks_rejects(
    case: Case,
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    settings = jwks_settings(jwks_server.url)
    verifier = TokenVerifier.from_settings(settings, http_client, clock=clock)
    signer = jwks_signer(rsa_key, other_rsa_key)

    async with app_client(build_app(verifier)) as client:
        response = await send(client, case.authorization(signer))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == expected_challenge(case)
    assert response.json() == expected_body(case)


async def test_hs256_valid_token(http_client: httpx.AsyncClient, clock: FakeClock) -> None:
    verifier = TokenVerifier.from_settings(hs256_settings(), http_client, clock=clock)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(sign_hs256(claims())))

    assert response.status_code == 200
    assert response.json() == {"id": USER_ID}


async def test_jwks_valid_token(
    rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
) -> None:
    settings = jwks_settings(jwks_server.url)
    verifier = TokenVerifier.from_settings(settings, http_client, clock=clock)
    token = sign_with_key(claims(), rsa_key, kid=KID)

    async with app_client(build_app(verifier)) as client:
        response = await client.get("/me", headers=bearer(token))

    assert response.status_code == 200
    assert response.json() == {"id": USER_ID}


async def test_rejection_logged_at_info(
    http_client: httpx.AsyncClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier = TokenVerifier.from_settings(hs256_settings(), http_client, clock=clock)

    async with app_client(build_app(verifier)) as client:
        await client.get("/me", headers=bearer(sign_hs256(claims(exp=NOW))))

    rejections = [r for r in caplog.records if r.name == "aldero_fastapi.auth"]
    assert len(rejections) == 1
    assert rejections[0].levelno == logging.INFO
    assert rejections[0].getMessage() == "rejected bearer token on GET /me: token expired"


# Any run of this many base64url characters shared by an output and a token counts as a
# leak, so that a truncated token or signature is caught too.
LEAK_WINDOW = 12


def secret_fragments(authorization: str | None) -> list[str]:
    """Return the token, each of its segments and the shared secrets."""
    fragments = [SECRET, OTHER_SECRET]
    if authorization is None:
        return fragments

    credentials = authorization.partition(" ")[2]
    if credentials:
        fragments.append(credentials)
        fragments.extend(segment for segment in credentials.split(".") if segment)
    return fragments


async def test_no_token_leaks(
    rsa_key: rsa.RSAPrivateKey,
    other_rsa_key: rsa.RSAPrivateKey,
    jwks_server: JWKSServer,
    http_client: httpx.AsyncClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    setups = {
        "hs256": (hs256_signer(rsa_key, other_rsa_key), hs256_settings()),
        "jwks": (jwks_signer(rsa_key, other_rsa_key), jwks_settings(jwks_server.url)),
    }
    outputs: list[tuple[str, str]] = []
    authorizations: list[str | None] = []

    for setup, (signer, settings) in setups.items():
        verifier = TokenVerifier.from_settings(settings, http_client, clock=clock)
        assert verifier is not None
        valid = "Bearer " + signer.sign(claims())

        async with app_client(build_app(verifier)) as client:
            for case in [c for c in CASES if setup in c.setups]:
                authorization = case.authorization(signer)
                authorizations.append(authorization)
                response = await send(client, authorization)
                outputs.append((f"{setup}/{case.name} body", response.text))
                outputs.append((f"{setup}/{case.name} headers", str(response.headers.items())))

                # The verifier's own exception, as a caller that logs it would see it.
                if authorization is not None and authorization.startswith("Bearer "):
                    try:
                        await verifier.verify(authorization.removeprefix("Bearer "))
                    except InvalidTokenError as error:
                        outputs.append((f"{setup}/{case.name} error", f"{error!s} {error!r}"))

            authorizations.append(valid)
            response = await client.get("/me", headers={"Authorization": valid})
            assert response.status_code == 200
            outputs.append((f"{setup}/valid body", response.text))
            user = await verifier.verify(valid.removeprefix("Bearer "))
            outputs.append((f"{setup}/valid user", repr(user)))

    outputs.extend(("log record", record.getMessage()) for record in caplog.records)
    outputs.append(("log text", caplog.text))
    assert any(record.name == "aldero_fastapi.auth" for record in caplog.records)

    fragments = [f for a in authorizations for f in secret_fragments(a)]
    windows = {f[i : i + LEAK_WINDOW] for f in fragments for i in range(len(f) - LEAK_WINDOW + 1)}
    for where, text in outputs:
        for fragment in fragments:
            assert fragment not in text, f"a token fragment appears in {where}"
        for run in re.findall(rf"[A-Za-z0-9_-]{{{LEAK_WINDOW},}}", text):
            for i in range(len(run) - LEAK_WINDOW + 1):
                assert run[i : i + LEAK_WINDOW] not in windows, f"part of a token is in {where}"
