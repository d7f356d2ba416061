"""Configuration of one emulator instance."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import httpx

DEFAULT_TENANT = "myapp"
DEFAULT_BILLING_KEY = "bil_emulator_key"
DEFAULT_NOTIFICATION_KEY = "ntf_emulator_key"
BILLING_KEY_PREFIX = "bil_"
NOTIFICATION_KEY_PREFIX = "ntf_"

_TENANT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,200}")


@dataclass(frozen=True)
class EmulatorConfig:
    """Settings of an emulator instance.

    The keys and the webhook secret are left out of ``repr`` so that logging a config does
    not leak them. ``fault_seed`` seeds the random generator behind fault rule probabilities.
    """

    tenant: str = DEFAULT_TENANT
    billing_key: str = field(default=DEFAULT_BILLING_KEY, repr=False)
    notification_key: str = field(default=DEFAULT_NOTIFICATION_KEY, repr=False)
    db_path: str | None = None
    seed_path: str | None = None
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    load_seed_if_empty: bool = True
    fault_seed: int | None = None
    # Delivers webhooks in-process, for example to the app that embeds the emulator.
    webhook_transport: httpx.AsyncBaseTransport | None = field(
        default=None, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        validate_tenant("tenant", self.tenant)
        validate_key("billing_key", self.billing_key, BILLING_KEY_PREFIX)
        validate_key("notification_key", self.notification_key, NOTIFICATION_KEY_PREFIX)
        if self.webhook_url is not None:
            validate_webhook_url("webhook_url", self.webhook_url)


def validate_tenant(name: str, tenant: str) -> None:
    """Raise ValueError, naming the setting ``name``, unless ``tenant`` is a valid slug."""
    if not _TENANT_PATTERN.fullmatch(tenant):
        raise ValueError(
            f"{name} {tenant!r} is invalid: use 1 to 64 letters, digits, '-' or '_', "
            "starting with a letter or digit."
        )


def validate_key(name: str, key: str, prefix: str) -> None:
    """Raise ValueError, naming the setting ``name``, unless ``key`` is a valid API key."""
    # The key itself stays out of the message because it may be a real secret.
    if not key.startswith(prefix) or len(key) == len(prefix):
        raise ValueError(f"{name} is invalid: it must start with {prefix!r} followed by more text.")

    if not _KEY_PATTERN.fullmatch(key):
        raise ValueError(
            f"{name} is invalid: use at most 200 visible ASCII characters without spaces."
        )


def validate_webhook_url(name: str, url: str) -> None:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"{name} {url!r} is invalid: use an http:// or https:// URL.")
