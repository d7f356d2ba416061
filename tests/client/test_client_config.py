"""Client construction: base URL, key checks per service, settings and the connection pool."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

import aldero_fastapi.client
from aldero_fastapi.client import AlderoClient
from aldero_fastapi.errors import ConfigurationError, ServerError
from aldero_fastapi.settings import AlderoSettings

from .helpers import (
    BASE_URL,
    BILLING_KEY,
    ENTITLEMENTS_BODY,
    NOTIFICATION_KEY,
    RECEIPT_BODY,
    HarnessFactory,
    ScriptedTransport,
    error_reply,
    json_reply,
)


def make_settings(**values: Any) -> AlderoSettings:
    # _env_file=None keeps a developer's .env out of the test.
    return AlderoSettings(_env_file=None, **values)  # type: ignore[call-arg]


async def test_billing_calls_with_notification_key(make_harness: HarnessFactory) -> None:
    harness = make_harness([], api_key=NOTIFICATION_KEY)
    billing = harness.client.billing
    calls = [
        billing.get_entitlements("alice"),
        billing.adjust_credits("alice", type="usage", amount=-1, reference_id="r"),
        billing.list_credit_transactions("alice"),
        billing.sync_user("alice"),
        billing.list_products(),
    ]

    for call in calls:
        with pytest.raises(ConfigurationError) as caught:
            await call
        assert "'bil_'" in caught.value.message
        assert "ALDERO_BILLING_API_KEY" in caught.value.message
        assert "ntf_ key" in caught.value.message

    with pytest.raises(ConfigurationError):
        async for _ in billing.iter_credit_transactions("alice"):
            pass

    assert harness.requests == []


async def test_send_with_billing_key(make_harness: HarnessFactory) -> None:
    harness = make_harness([], api_key=BILLING_KEY)

    with pytest.raises(ConfigurationError) as caught:
        await harness.client.notifications.send(
            template_name="welcome-email", channel="email", to="a@b.c", variables={"name": "A"}
        )

    assert "'ntf_'" in caught.value.message
    assert "ALDERO_NOTIFICATION_API_KEY" in caught.value.message
    assert harness.requests == []


async def test_key_without_prefix(make_harness: HarnessFactory) -> None:
    harness = make_harness([], api_key="sk_live_0123456789")

    with pytest.raises(ConfigurationError) as caught:
        await harness.client.billing.get_entitlements("alice")
    assert "without a bil_ or ntf_ prefix" in caught.value.message
    assert "ALDERO_BILLING_API_KEY" in caught.value.message

    with pytest.raises(ConfigurationError) as caught:
        await harness.client.notifications.send(template_name="x", channel="push", to="a")
    assert "ALDERO_NOTIFICATION_API_KEY" in caught.value.message

    assert harness.client.service is None
    assert harness.requests == []


def test_service_from_key_prefix() -> None:
    billing = AlderoClient(base_url=BASE_URL, api_key=BILLING_KEY)
    notifications = AlderoClient(base_url=BASE_URL, api_key=SecretStr(NOTIFICATION_KEY))

    assert billing.service == "billing"
    assert notifications.service == "notifications"


@pytest.mark.parametrize("key", ["", "   ", "bil_with space", "bil_\u00e9t\u00e9", "bil_tab\t1"])
def test_unusable_key_rejected(key: str) -> None:
    with pytest.raises(ConfigurationError, match="api_key"):
        AlderoClient(base_url=BASE_URL, api_key=key)


def test_key_whitespace_stripped() -> None:
    client = AlderoClient(base_url=BASE_URL, api_key=f"  {BILLING_KEY}\n")

    assert client.service == "billing"


@pytest.mark.parametrize(
    "location",
    [
        {},
        {"domain": "aldero.io"},
        {"tenant_slug": "myapp"},
        {"base_url": "  "},
    ],
)
def test_missing_base_url(location: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="base URL is missing"):
        AlderoClient(api_key=BILLING_KEY, **location)


@pytest.mark.parametrize("base_url", ["ftp://aldero.io/v1", "aldero.io/v1/tenants/x", "http://"])
def test_invalid_base_url(base_url: str) -> None:
    with pytest.raises(ConfigurationError, match="is invalid"):
        AlderoClient(api_key=BILLING_KEY, base_url=base_url)


def test_base_url_from_domain_and_tenant() -> None:
    client = AlderoClient(domain="aldero.io", tenant_slug="myapp", api_key=BILLING_KEY)

    assert client.base_url == "https://aldero.io/v1/tenants/myapp"


def test_base_url_precedence_and_trailing_slash() -> None:
    client = AlderoClient(
        domain="aldero.io", tenant_slug="myapp", base_url=f"{BASE_URL}/", api_key=BILLING_KEY
    )

    assert client.base_url == BASE_URL


@pytest.mark.parametrize(
    "options",
    [
        {"max_retries": -1},
        {"backoff_seconds": -0.1},
        {"max_backoff_seconds": -1},
        {"max_retry_after_seconds": -1},
        {"max_connections": 0},
    ],
)
def test_invalid_retry_options(options: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        AlderoClient(base_url=BASE_URL, api_key=BILLING_KEY, **options)  # type: ignore[arg-type]


async def test_transport_and_http_client_rejected() -> None:
    async with httpx.AsyncClient() as http_client:
        with pytest.raises(ConfigurationError, match="not both"):
            AlderoClient(
                base_url=BASE_URL,
                api_key=BILLING_KEY,
                http_client=http_client,
                transport=ScriptedTransport([]),
            )


async def test_shared_http_client_not_closed() -> None:
    transport = ScriptedTransport([json_reply(200, ENTITLEMENTS_BODY)])
    async with httpx.AsyncClient(transport=transport) as http_client:
        async with AlderoClient(
            base_url=BASE_URL, api_key=BILLING_KEY, http_client=http_client
        ) as client:
            entitlements = await client.billing.get_entitlements("alice")

        assert entitlements.credits == 10
        assert len(transport.requests) == 1
        assert transport.requests[0].headers["Authorization"] == f"Bearer {BILLING_KEY}"
        assert not http_client.is_closed
        assert client.is_closed is False


async def test_shared_http_client_two_services() -> None:
    transport = ScriptedTransport(
        [json_reply(200, ENTITLEMENTS_BODY), json_reply(202, RECEIPT_BODY)]
    )
    async with httpx.AsyncClient(transport=transport) as http_client:
        billing = AlderoClient(base_url=BASE_URL, api_key=BILLING_KEY, http_client=http_client)
        notifications = AlderoClient(
            base_url=BASE_URL, api_key=NOTIFICATION_KEY, http_client=http_client, max_retries=0
        )

        await billing.billing.get_entitlements("alice")
        await notifications.notifications.send(template_name="x", channel="push", to="a")

    authorizations = [request.headers["Authorization"] for request in transport.requests]
    assert authorizations == [f"Bearer {BILLING_KEY}", f"Bearer {NOTIFICATION_KEY}"]


async def test_own_http_client_closed() -> None:
    client = AlderoClient(base_url=BASE_URL, api_key=BILLING_KEY)
    assert client.is_closed is False

    async with client:
        pass

    assert client.is_closed is True
    await client.aclose()


async def test_from_settings_billing() -> None:
    settings = make_settings(
        base_url=f"{BASE_URL}/",
        billing_api_key=BILLING_KEY,
        max_retries=1,
        retry_backoff_seconds=0,
        retry_max_backoff_seconds=0,
    )
    transport = ScriptedTransport(
        [error_reply(503, "service_unavailable", "x"), error_reply(503, "service_unavailable", "y")]
    )

    async with AlderoClient.from_settings(
        settings, service="billing", transport=transport
    ) as client:
        with pytest.raises(ServerError):
            await client.billing.get_entitlements("alice")

    assert client.base_url == BASE_URL
    assert client.service == "billing"
    assert len(transport.requests) == 2


async def test_from_settings_domain_and_tenant() -> None:
    settings = make_settings(
        domain="aldero.io", tenant_slug="myapp", notification_api_key=NOTIFICATION_KEY
    )

    async with AlderoClient.from_settings(settings, service="notifications") as client:
        assert client.base_url == "https://aldero.io/v1/tenants/myapp"
        assert client.service == "notifications"


@pytest.mark.parametrize(
    ("service", "values", "setting"),
    [
        ("billing", {"notification_api_key": NOTIFICATION_KEY}, "ALDERO_BILLING_API_KEY"),
        ("notifications", {"billing_api_key": BILLING_KEY}, "ALDERO_NOTIFICATION_API_KEY"),
    ],
)
def test_from_settings_missing_key(
    service: str, values: dict[str, str], setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in (
        "ALDERO_BILLING_API_KEY",
        "BILLING_API_KEY",
        "ALDERO_NOTIFICATION_API_KEY",
        "NOTIFICATION_API_KEY",
    ):
        monkeypatch.delenv(variable, raising=False)
    settings = make_settings(base_url=BASE_URL, **values)

    with pytest.raises(ConfigurationError, match=f"{setting} is not set"):
        AlderoClient.from_settings(settings, service=service)  # type: ignore[arg-type]


def test_from_settings_missing_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("ALDERO_BASE_URL", "ALDERO_DOMAIN", "ALDERO_TENANT_SLUG"):
        monkeypatch.delenv(variable, raising=False)
    settings = make_settings(billing_api_key=BILLING_KEY)

    with pytest.raises(ConfigurationError, match="ALDERO_BASE_URL"):
        AlderoClient.from_settings(settings, service="billing")


def test_client_sources_import_no_web_framework() -> None:
    forbidden = ("fastapi", "starlette", "aldero_fastapi.emulator")
    package_dir = Path(aldero_fastapi.client.__file__).parent

    for source in sorted(package_dir.glob("*.py")):
        tree = ast.parse(source.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert not name.startswith(forbidden), f"{source.name} imports {name}"


def test_client_import_loads_no_web_framework() -> None:
    # The aldero_fastapi package itself imports the FastAPI plugin, so the script
    # replaces it with an empty package and lets the client import only what it needs.
    script = """
import importlib.abc
import importlib.util
import sys
import types


class BlockWebFramework(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("fastapi", "starlette") or name.startswith(
            "aldero_fastapi.emulator"
        ):
            raise ImportError(f"the client imported {name}")
        return None


spec = importlib.util.find_spec("aldero_fastapi")
package = types.ModuleType("aldero_fastapi")
package.__path__ = list(spec.submodule_search_locations)
sys.modules["aldero_fastapi"] = package
sys.meta_path.insert(0, BlockWebFramework())

import aldero_fastapi.client

print(aldero_fastapi.client.AlderoClient.__name__)
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )

    assert result.stderr == ""
    assert result.returncode == 0
    assert result.stdout.strip() == "AlderoClient"
