"""Keys and token builders for the authentication tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

NOW = 1_700_000_000
ISSUER = "https://issuer.test"
AUDIENCE = "aldero-app"
USER_ID = "user_123"
SECRET = "test-shared-secret-" + "0123456789abcdef" * 3  # 67 bytes, enough for HS512
OTHER_SECRET = "other-shared-secret-" + "0123456789abcdef" * 3

# Passed as a claim value to leave that claim out of the payload.
OMIT: Any = object()


def claims(**changes: Any) -> dict[str, Any]:
    """Return valid claims for NOW, with ``changes`` applied; OMIT removes a claim."""
    payload: dict[str, Any] = {
        "sub": USER_ID,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW,
        "exp": NOW + 300,
    }
    for name, value in changes.items():
        if value is OMIT:
            payload.pop(name, None)
        else:
            payload[name] = value
    return payload


def sign_hs256(payload: Mapping[str, Any], secret: str = SECRET) -> str:
    return jwt.encode(dict(payload), secret, algorithm="HS256")


def sign_with_key(
    payload: Mapping[str, Any],
    private_key: Any,
    *,
    algorithm: str = "RS256",
    kid: str | None = None,
) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(dict(payload), private_key, algorithm=algorithm, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _segments(header: Mapping[str, Any], payload: Mapping[str, Any]) -> str:
    return (
        _b64(json.dumps(dict(header)).encode("utf-8"))
        + "."
        + _b64(json.dumps(dict(payload)).encode("utf-8"))
    )


def unsigned(payload: Mapping[str, Any]) -> str:
    """Build an ``alg: none`` token with an empty signature."""
    return _segments({"alg": "none", "typ": "JWT"}, payload) + "."


def sign_hmac_raw(
    payload: Mapping[str, Any], key: bytes, *, header: Mapping[str, Any] | None = None
) -> str:
    """
    Sign an HS256 token with any bytes as the key and any extra header members.

    PyJWT refuses a PEM key as an HMAC secret and a non-string kid, so these tokens are
    built by hand. The HS/RS confusion attack uses the published RSA public key as the
    HMAC secret.
    """
    full_header = {"alg": "HS256", "typ": "JWT", **(header or {})}
    signing_input = _segments(full_header, payload)
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64(signature)


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def new_ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def new_ed25519_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(private_key: Any, kid: str | None, **members: Any) -> dict[str, Any]:
    """Return the public JWK of ``private_key`` with ``kid`` and extra ``members``."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk.pop("key_ops", None)
    if kid is not None:
        jwk["kid"] = kid
    jwk.update(members)
    return jwk


def private_jwk(private_key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    jwk = RSAAlgorithm.to_jwk(private_key, as_dict=True)
    jwk["kid"] = kid
    return jwk


def public_pem(private_key: rsa.RSAPrivateKey) -> bytes:
    return private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
