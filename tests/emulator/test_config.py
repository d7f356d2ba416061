"""Validation and repr of EmulatorConfig."""

from __future__ import annotations

import pytest

from aldero_fastapi.emulator import (
    DEFAULT_BILLING_KEY,
    DEFAULT_NOTIFICATION_KEY,
    DEFAULT_TENANT,
    EmulatorConfig,
)


def test_defaults() -> None:
    config = EmulatorConfig()

    assert config.tenant == DEFAULT_TENANT == "myapp"
    assert config.billing_key == DEFAULT_BILLING_KEY == "bil_emulator_key"
    assert config.notification_key == DEFAULT_NOTIFICATION_KEY == "ntf_emulator_key"
    assert config.db_path is None
    assert config.load_seed_if_empty is True


def test_repr_hides_secrets() -> None:
    config = EmulatorConfig(
        billing_key="bil_secret_one",
        notification_key="ntf_secret_two",
        webhook_secret="whsec_three",
    )

    text = repr(config)

    assert "secret_one" not in text
    assert "secret_two" not in text
    assert "whsec_three" not in text
    assert "myapp" in text


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        ({"billing_key": "ntf_wrong"}, "billing_key"),
        ({"billing_key": "bil_"}, "billing_key"),
        ({"billing_key": "bil_has space"}, "billing_key"),
        ({"notification_key": "bil_wrong"}, "notification_key"),
        ({"tenant": ""}, "tenant"),
        ({"tenant": "a/b"}, "tenant"),
        ({"webhook_url": "ftp://example"}, "webhook_url"),
    ],
)
def test_invalid_setting_is_named(settings: dict[str, str], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        EmulatorConfig(**settings)  # type: ignore[arg-type]


def test_key_error_hides_key() -> None:
    with pytest.raises(ValueError) as raised:
        EmulatorConfig(billing_key="bil_secret value")

    assert "secret" not in str(raised.value)
