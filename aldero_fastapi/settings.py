"""Settings read from ``ALDERO_*`` environment variables and a ``.env`` file."""

from __future__ import annotations

from typing import Any

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from aldero_fastapi.errors import ConfigurationError

__all__ = ["AlderoSettings", "load_settings"]

BILLING_KEY_PREFIX = "bil_"
NOTIFICATION_KEY_PREFIX = "ntf_"

SYMMETRIC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _env_name(field: str) -> str:
    return f"ALDERO_{field.upper()}"


class AlderoSettings(BaseSettings):
    """
    Configuration of the client and the plugin.

    Every field is read from ``ALDERO_<FIELD>`` (``ALDERO_TENANT_SLUG`` for
    ``tenant_slug``); the keys also from the Node SDK's ``BILLING_API_KEY`` and
    ``NOTIFICATION_API_KEY``, with the ``ALDERO_`` name taking precedence. Values are
    checked when the settings are built; whether the tenant is complete is checked by
    ``require_tenant()`` when the plugin starts.
    """

    model_config = SettingsConfigDict(
        env_prefix="ALDERO_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # Tenant and keys.
    domain: str | None = None
    tenant_slug: str | None = None
    base_url: str | None = None
    billing_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ALDERO_BILLING_API_KEY", "BILLING_API_KEY", "billing_api_key"
        ),
    )
    notification_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "ALDERO_NOTIFICATION_API_KEY", "NOTIFICATION_API_KEY", "notification_api_key"
        ),
    )
    emulator: bool | None = None

    # HTTP client.
    timeout_seconds: float = Field(default=10.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=10)
    retry_backoff_seconds: float = Field(default=0.25, ge=0)
    retry_max_backoff_seconds: float = Field(default=5.0, ge=0)
    max_connections: int = Field(default=100, ge=1)

    # Entitlements cache.
    entitlements_ttl_seconds: float = Field(default=60.0, ge=0)
    entitlements_cache_size: int = Field(default=10_000, ge=1)
    entitlements_stale_if_error_seconds: float = Field(default=0.0, ge=0)
    # A Redis URL can carry a password, so it is kept out of reprs like a key.
    cache_url: SecretStr | None = None

    # Webhooks.
    webhook_secret: SecretStr | None = None
    webhook_tolerance_seconds: float = Field(default=300.0, gt=0)

    # Authentication of the end user.
    auth_jwt_secret: SecretStr | None = None
    auth_jwks_url: str | None = None
    auth_algorithms: list[str] | None = None
    auth_issuer: str | None = None
    auth_audience: str | None = None
    auth_leeway_seconds: float = Field(default=0.0, ge=0)
    auth_user_id_claim: str = Field(default="sub", min_length=1)
    auth_jwks_cache_seconds: float = Field(default=300.0, gt=0)
    auth_jwks_refresh_interval_seconds: float = Field(default=30.0, ge=0)
    auth_max_token_bytes: int = Field(default=8192, ge=256)

    # Refunds of failed requests.
    refund_max_attempts: int = Field(default=8, ge=1)
    refund_backoff_seconds: float = Field(default=0.5, ge=0)

    @field_validator("billing_api_key")
    @classmethod
    def _check_billing_prefix(cls, key: SecretStr | None) -> SecretStr | None:
        return _check_key_prefix(key, BILLING_KEY_PREFIX, "ALDERO_BILLING_API_KEY")

    @field_validator("notification_api_key")
    @classmethod
    def _check_notification_prefix(cls, key: SecretStr | None) -> SecretStr | None:
        return _check_key_prefix(key, NOTIFICATION_KEY_PREFIX, "ALDERO_NOTIFICATION_API_KEY")

    @field_validator("base_url", "auth_jwks_url")
    @classmethod
    def _strip_trailing_slash(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        return url.strip().rstrip("/")

    @field_validator("auth_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: Any) -> Any:
        # A comma-separated list reads better in an environment variable than JSON.
        if isinstance(value, str) and not value.lstrip().startswith("["):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check_auth(self) -> AlderoSettings:
        if self.auth_jwt_secret is not None and self.auth_jwks_url is not None:
            raise ValueError(
                "ALDERO_AUTH_JWT_SECRET and ALDERO_AUTH_JWKS_URL are both set; set only "
                "one: the secret for HS256 tokens, the JWKS URL for RS256/ES256 tokens"
            )

        for algorithm in self.auth_algorithms or ():
            if algorithm.lower() == "none":
                raise ValueError(
                    "ALDERO_AUTH_ALGORITHMS contains 'none'; unsigned tokens are never accepted"
                )
            if algorithm not in SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"ALDERO_AUTH_ALGORITHMS contains unknown algorithm {algorithm!r}; use "
                    f"one of {', '.join(sorted(SYMMETRIC_ALGORITHMS | ASYMMETRIC_ALGORITHMS))}"
                )
            if self.auth_jwt_secret is not None and algorithm not in SYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"ALDERO_AUTH_ALGORITHMS contains {algorithm!r}, which needs a public "
                    "key, but ALDERO_AUTH_JWT_SECRET is a shared secret; use HS256, HS384 "
                    "or HS512, or set ALDERO_AUTH_JWKS_URL instead of the secret"
                )
            if self.auth_jwks_url is not None and algorithm not in ASYMMETRIC_ALGORITHMS:
                raise ValueError(
                    f"ALDERO_AUTH_ALGORITHMS contains {algorithm!r}, a shared-secret "
                    "algorithm, which a JWKS URL cannot verify; use RS256 or ES256"
                )
        return self

    @property
    def loggable_base_url(self) -> str | None:
        """The base URL without any user name or password it carries, for log lines."""
        url = self.resolved_base_url
        if url is None or "@" not in url:
            return url
        scheme, separator, rest = url.partition("://")
        return f"{scheme}{separator}{rest.split('@', 1)[1]}"

    @property
    def resolved_base_url(self) -> str | None:
        """The tenant's API base URL, or None when neither it nor domain and tenant are set."""
        if self.base_url is not None:
            return self.base_url
        if self.domain and self.tenant_slug:
            return f"https://{self.domain.strip('/')}/v1/tenants/{self.tenant_slug}"
        return None

    @property
    def resolved_auth_algorithms(self) -> list[str]:
        """The allowed token algorithms: the configured list, else the key source's default."""
        if self.auth_algorithms:
            return list(self.auth_algorithms)
        if self.auth_jwks_url is not None:
            return ["RS256", "ES256"]
        return ["HS256"]

    @property
    def uses_emulator(self) -> bool:
        """Whether an app should run on the embedded emulator: forced, or no tenant configured."""
        if self.emulator is not None:
            return self.emulator
        return self.resolved_base_url is None and self.billing_api_key is None

    def require_tenant(self) -> None:
        """Raise ConfigurationError naming each variable a real tenant still needs."""
        missing: list[str] = []
        if self.base_url is None:
            if not self.domain:
                missing.append("ALDERO_DOMAIN (for example aldero.io)")
            if not self.tenant_slug:
                missing.append("ALDERO_TENANT_SLUG (for example myapp)")
        if self.billing_api_key is None:
            missing.append("ALDERO_BILLING_API_KEY (a key starting with bil_)")
        if missing:
            raise ConfigurationError(
                "Aldero settings are incomplete; set "
                + ", ".join(missing)
                + " in the environment or in .env, or set ALDERO_BASE_URL instead of the "
                "domain and tenant"
            )


def _check_key_prefix(key: SecretStr | None, prefix: str, variable: str) -> SecretStr | None:
    if key is None:
        return None
    value = key.get_secret_value().strip()
    if not value:
        return None
    if not value.startswith(prefix):
        # Name the prefix that was given, never the key itself.
        prefixes = (BILLING_KEY_PREFIX, NOTIFICATION_KEY_PREFIX)
        other_prefix = value[:4] if value[:4] in prefixes else None
        found = (
            f"a key starting with {other_prefix!r}"
            if other_prefix
            else "a key without a service prefix"
        )
        raise ValueError(
            f"{variable} must start with {prefix!r}, but it is {found}; copy the "
            f"{prefix} key of this service from the Aldero dashboard"
        )
    return SecretStr(value)


def load_settings(**overrides: Any) -> AlderoSettings:
    """
    Read the settings from the environment and ``.env``.

    Raises:
        ConfigurationError: a value is malformed; the message names the variable and
            never repeats the value of a key or secret.
    """
    try:
        return AlderoSettings(**overrides)
    except ValidationError as error:
        problems = []
        for detail in error.errors(include_input=False, include_url=False):
            location = detail.get("loc") or ()
            field = str(location[0]) if location else ""
            variable = _env_name(field) if field else "ALDERO settings"
            message = str(detail.get("msg", "invalid value")).removeprefix("Value error, ")
            problems.append(message if message.startswith("ALDERO_") else f"{variable}: {message}")
        raise ConfigurationError("Invalid Aldero settings: " + "; ".join(problems)) from None
