"""API keys: which Aldero service a key belongs to, checked before any request is sent."""

from __future__ import annotations

from typing import Literal

from aldero_fastapi.errors import ConfigurationError
from aldero_fastapi.settings import BILLING_KEY_PREFIX, NOTIFICATION_KEY_PREFIX

__all__ = ["Service", "check_key_format", "require_service", "service_of_key"]

Service = Literal["billing", "notifications"]

KEY_PREFIXES: dict[Service, str] = {
    "billing": BILLING_KEY_PREFIX,
    "notifications": NOTIFICATION_KEY_PREFIX,
}
KEY_SETTINGS: dict[Service, str] = {
    "billing": "ALDERO_BILLING_API_KEY",
    "notifications": "ALDERO_NOTIFICATION_API_KEY",
}


def check_key_format(key: str) -> None:
    """
    Raise ConfigurationError unless ``key`` can be sent in an HTTP header.

    The message never repeats the key.
    """
    if not key:
        raise ConfigurationError(
            "api_key is empty; pass the bil_ key for billing or the ntf_ key for "
            "notifications from the Aldero dashboard"
        )
    if not key.isascii() or not key.isprintable() or any(char.isspace() for char in key):
        raise ConfigurationError(
            "api_key contains whitespace, control or non-ASCII characters, so it cannot be "
            "sent in the Authorization header; copy the key again from the Aldero dashboard"
        )


def service_of_key(key: str) -> Service | None:
    """Return the service whose prefix starts ``key``, or None for a key without one."""
    for service, prefix in KEY_PREFIXES.items():
        if key.startswith(prefix):
            return service
    return None


def require_service(key_service: Service | None, expected: Service) -> None:
    """
    Raise ConfigurationError unless the key belongs to the ``expected`` service.

    The message names the expected prefix and the setting to change, never the key.
    """
    if key_service == expected:
        return

    prefix = KEY_PREFIXES[expected]
    if key_service is None:
        found = "a key without a bil_ or ntf_ prefix"
    else:
        found = f"a {KEY_PREFIXES[key_service]} key of the {key_service} API"
    raise ConfigurationError(
        f"The Aldero {expected} API needs a key starting with {prefix!r}, but this client "
        f"was created with {found}. Create the client with the {prefix} key, which "
        f"AlderoClient.from_settings(settings, service={expected!r}) reads from "
        f"{KEY_SETTINGS[expected]}"
    )
