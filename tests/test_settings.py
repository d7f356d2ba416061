"""Settings from the environment: names, fallbacks and errors."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from aldero_fastapi.errors import ConfigurationError
from aldero_fastapi.settings import AlderoSettings, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("ALDERO_") or name in ("BILLING_API_KEY", "NOTIFICATION_API_KEY"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(str(tmp_path))


def test_reads_prefixed_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALDERO_DOMAIN", "aldero.io")
    monkeypatch.setenv("ALDERO_TENANT_SLUG", "myapp")
    monkeypatch.setenv("ALDERO_BILLING_API_KEY", "bil_live_123")
    monkeypatch.setenv("ALDERO_ENTITLEMENTS_TTL_SECONDS", "30")

    settings = load_settings()

    assert settings.resolved_base_url == "https://aldero.io/v1/tenants/myapp"
    assert settings.billing_api_key == SecretStr("bil_live_123")
    assert settings.entitlements_ttl_seconds == 30


def test_node_names_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_API_KEY", "bil_from_node")
    monkeypatch.setenv("NOTIFICATION_API_KEY", "ntf_from_node")

    settings = load_settings()

    assert settings.billing_api_key is not None
    assert settings.billing_api_key.get_secret_value() == "bil_from_node"
    assert settings.notification_api_key is not None
    assert settings.notification_api_key.get_secret_value() == "ntf_from_node"


def test_prefixed_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLING_API_KEY", "bil_node")
    monkeypatch.setenv("ALDERO_BILLING_API_KEY", "bil_prefixed")

    settings = load_settings()

    assert settings.billing_api_key is not None
    assert settings.billing_api_key.get_secret_value() == "bil_prefixed"


def test_dotenv_file_read(tmp_path: object) -> None:
    from pathlib import Path

    Path(".env").write_text("ALDERO_BASE_URL=http://127.0.0.1:8787/v1/tenants/myapp/\nOTHER=1\n")

    settings = load_settings()

    assert settings.base_url == "http://127.0.0.1:8787/v1/tenants/myapp"


def test_wrong_key_prefix_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALDERO_BILLING_API_KEY", "ntf_secret_value_123")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "ALDERO_BILLING_API_KEY" in raised.value.message
    assert "'bil_'" in raised.value.message
    assert "secret_value_123" not in str(raised.value)


def test_malformed_number_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALDERO_MAX_RETRIES", "several")

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert "ALDERO_MAX_RETRIES" in raised.value.message


def test_missing_tenant_named() -> None:
    settings = load_settings()

    with pytest.raises(ConfigurationError) as raised:
        settings.require_tenant()

    assert "ALDERO_DOMAIN" in raised.value.message
    assert "ALDERO_TENANT_SLUG" in raised.value.message
    assert "ALDERO_BILLING_API_KEY" in raised.value.message


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"ALDERO_AUTH_JWT_SECRET": "s", "ALDERO_AUTH_JWKS_URL": "https://idp/jwks"}, "both set"),
        ({"ALDERO_AUTH_JWT_SECRET": "s", "ALDERO_AUTH_ALGORITHMS": "RS256"}, "needs a public key"),
        (
            {"ALDERO_AUTH_JWKS_URL": "https://idp/jwks", "ALDERO_AUTH_ALGORITHMS": "HS256"},
            "cannot verify",
        ),
        ({"ALDERO_AUTH_JWT_SECRET": "s", "ALDERO_AUTH_ALGORITHMS": "none"}, "never accepted"),
    ],
    ids=["secret-and-jwks", "rs256-with-secret", "hs256-with-jwks", "alg-none"],
)
def test_auth_conflicts_rejected(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(ConfigurationError) as raised:
        load_settings()

    assert expected in raised.value.message
    assert "ALDERO_AUTH" in raised.value.message


def test_default_algorithms_follow_key_source() -> None:
    with_secret = AlderoSettings.model_validate({"auth_jwt_secret": "s"})
    with_jwks = AlderoSettings.model_validate({"auth_jwks_url": "https://idp/jwks"})

    assert with_secret.resolved_auth_algorithms == ["HS256"]
    assert with_jwks.resolved_auth_algorithms == ["RS256", "ES256"]


def test_repr_hides_secrets() -> None:
    settings = AlderoSettings.model_validate(
        {
            "billing_api_key": "bil_very_secret",
            "auth_jwt_secret": "jwt-very-secret",
            "cache_url": "redis://:redis-password@127.0.0.1:6379/0",
        }
    )

    text = repr(settings) + str(settings)

    assert "very_secret" not in text
    assert "jwt-very-secret" not in text
    assert "redis-password" not in text


def test_emulator_mode_without_tenant() -> None:
    assert load_settings().uses_emulator is True
    assert AlderoSettings.model_validate({"billing_api_key": "bil_x"}).uses_emulator is False


def test_loggable_url_hides_credentials() -> None:
    settings = AlderoSettings.model_validate(
        {"base_url": "https://user:url-password@aldero.example/v1/tenants/myapp"}
    )

    assert settings.loggable_base_url == "https://aldero.example/v1/tenants/myapp"
