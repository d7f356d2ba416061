"""API key checks, request ids and JSON errors of the tenant API."""

from __future__ import annotations

import httpx
import pytest

from aldero_fastapi.emulator import DEFAULT_BILLING_KEY, DEFAULT_NOTIFICATION_KEY
from aldero_fastapi.emulator.auth import bearer_token

from .conftest import ROOT

ENTITLEMENTS = "/billing/users/alice/entitlements"


async def test_missing_key_is_401(billing: httpx.AsyncClient) -> None:
    response = await billing.get(ENTITLEMENTS, headers={"Authorization": ""})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_key_without_bearer_is_401(billing: httpx.AsyncClient) -> None:
    response = await billing.get(ENTITLEMENTS, headers={"Authorization": DEFAULT_BILLING_KEY})

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


async def test_unknown_key_is_401(billing: httpx.AsyncClient) -> None:
    response = await billing.get(ENTITLEMENTS, headers={"Authorization": "Bearer bil_other"})

    assert response.status_code == 401
    assert "bil_other" not in response.text


@pytest.mark.parametrize(
    "path", ["/billing/users/a%0Ab/entitlements", "/billing/users/x/entitlements%0A"]
)
async def test_newline_path_needs_key(billing: httpx.AsyncClient, path: str) -> None:
    response = await billing.get(path, headers={"Authorization": ""})

    assert response.status_code == 401


async def test_lowercase_bearer_is_accepted(billing: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"bearer {DEFAULT_BILLING_KEY}"}

    response = await billing.get(ENTITLEMENTS, headers=headers)

    assert response.status_code == 200


async def test_notification_key_on_billing_is_403(billing: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {DEFAULT_NOTIFICATION_KEY}"}

    response = await billing.get(ENTITLEMENTS, headers=headers)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_billing_key_on_notifications_is_403(billing: httpx.AsyncClient) -> None:
    body = {"templateName": "fax-sent", "channel": "push", "to": "u1", "variables": {}}

    response = await billing.post("/notifications/send", json=body)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_other_tenant_is_403(billing: httpx.AsyncClient) -> None:
    response = await billing.get(f"{ROOT}/v1/tenants/othertenant{ENTITLEMENTS}")

    assert response.status_code == 403
    assert "othertenant" in response.json()["error"]["message"]


async def test_other_tenant_without_key_is_401(billing: httpx.AsyncClient) -> None:
    url = f"{ROOT}/v1/tenants/othertenant{ENTITLEMENTS}"

    response = await billing.get(url, headers={"Authorization": ""})

    assert response.status_code == 401


async def test_unknown_tenant_route_is_json_404(billing: httpx.AsyncClient) -> None:
    response = await billing.get("/billing/unknown")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "detail" not in response.json()


async def test_unknown_route_needs_key(billing: httpx.AsyncClient) -> None:
    response = await billing.get("/whatever", headers={"Authorization": ""})

    assert response.status_code == 401


async def test_unknown_root_route_is_json_404(billing: httpx.AsyncClient) -> None:
    response = await billing.get(f"{ROOT}/nothing/here")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_wrong_method_is_json_405(billing: httpx.AsyncClient) -> None:
    response = await billing.delete("/billing/products")

    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


async def test_trailing_slash_is_404(billing: httpx.AsyncClient) -> None:
    response = await billing.get("/billing/products/")

    assert response.status_code == 404


async def test_request_id_is_echoed(billing: httpx.AsyncClient) -> None:
    response = await billing.get(ENTITLEMENTS, headers={"X-Request-Id": "trace-123"})

    assert response.headers["X-Request-Id"] == "trace-123"


async def test_request_id_is_generated(billing: httpx.AsyncClient) -> None:
    response = await billing.get(ENTITLEMENTS)

    assert response.headers["X-Request-Id"].startswith("req_")


async def test_error_response_has_request_id(billing: httpx.AsyncClient) -> None:
    response = await billing.get(
        ENTITLEMENTS, headers={"Authorization": "", "X-Request-Id": "trace-401"}
    )

    assert response.headers["X-Request-Id"] == "trace-401"


async def test_invalid_request_id_is_replaced(billing: httpx.AsyncClient) -> None:
    response = await billing.get(ENTITLEMENTS, headers={"X-Request-Id": "has space"})

    assert response.headers["X-Request-Id"].startswith("req_")


async def test_admin_routes_need_no_key(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/users/alice")

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("Basic abc", None),
        ("Bearer bil_x", "bil_x"),
        ("  BEARER  bil_x  ", "bil_x"),
    ],
)
def test_bearer_token_parsing(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token
