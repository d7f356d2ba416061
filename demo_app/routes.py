"""The demo's routes: a pricing page and a small API that uses every dependency."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from pydantic.alias_generators import to_camel

from aldero_fastapi import (
    Aldero,
    Credits,
    CurrentUser,
    Notifier,
    UserEntitlements,
    get_aldero,
    require_feature,
)
from aldero_fastapi.http_errors import AlderoHTTPException

router = APIRouter()
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

AlderoDependency = Annotated[Aldero, Depends(get_aldero)]

DEMO_TOKEN_LIFETIME_SECONDS = 3600


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class TokenRequest(CamelModel):
    user_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")


class Fax(CamelModel):
    page_count: int = Field(ge=1, le=500, strict=True)
    destination: str = Field(pattern=r"^\+[1-9][0-9]{6,14}$", description="E.164 number")


class Order(CamelModel):
    order_number: str = Field(min_length=1, max_length=64)
    total: str = Field(min_length=1, max_length=32)


class Welcome(CamelModel):
    email: EmailStr
    name: str = Field(min_length=1, max_length=100)


def product_view(product: Any) -> dict[str, Any]:
    return product.model_dump(mode="json", by_alias=True)  # type: ignore[no-any-return]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def pricing_page(request: Request, aldero: AlderoDependency) -> HTMLResponse:
    products = await aldero.billing.list_products()
    context = {
        "credit_packs": [product for product in products if not product.is_subscription],
        "subscriptions": [product for product in products if product.is_subscription],
        "emulator_mode": request.app.state.emulator_mode,
    }
    return templates.TemplateResponse(request, "pricing.html", context)


@router.post("/demo/token")
async def issue_demo_token(
    body: TokenRequest, request: Request, aldero: AlderoDependency
) -> dict[str, str]:
    if not request.app.state.emulator_mode or aldero.settings.auth_jwt_secret is None:
        raise AlderoHTTPException(404, "Demo tokens exist only on the embedded emulator")

    settings = aldero.settings
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": body.user_id,
        "iat": now,
        "exp": now + DEMO_TOKEN_LIFETIME_SECONDS,
    }
    if settings.auth_issuer:
        claims["iss"] = settings.auth_issuer
    if settings.auth_audience:
        claims["aud"] = settings.auth_audience
    token = jwt.encode(claims, settings.auth_jwt_secret.get_secret_value(), algorithm="HS256")
    return {"accessToken": token, "tokenType": "bearer"}


@router.get("/api/me")
async def me(entitlements: UserEntitlements) -> dict[str, Any]:
    return {
        "userId": entitlements.user_id,
        "features": list(entitlements.features),
        "credits": entitlements.credits,
    }


@router.post(
    "/api/premium-action",
    dependencies=[Depends(require_feature("pro_features", message="Pro subscription required"))],
)
async def premium_action(user: CurrentUser) -> dict[str, Any]:
    return {"ok": True, "userId": user.id, "message": "Premium action done"}


@router.post("/api/send-fax")
async def send_fax(
    fax: Fax, user: CurrentUser, credits: Credits, notifier: Notifier
) -> dict[str, Any]:
    result = await credits.deduct(
        fax.page_count,
        description=f"Fax to {fax.destination} ({fax.page_count} pages)",
    )
    fax_id = result.transaction.reference_id

    notifier.send_after_response(
        template_name="fax-sent",
        channel="push",
        to=user.id,
        variables={"destination": fax.destination, "pages": fax.page_count},
    )
    return {"faxId": fax_id, "balance": result.balance}


@router.post("/api/orders", status_code=202)
async def confirm_order(order: Order, user: CurrentUser, notifier: Notifier) -> dict[str, Any]:
    receipt = await notifier.send(
        template_name="order-confirmation",
        channel="push",
        to=user.id,
        variables={"orderNumber": order.order_number, "total": order.total},
    )
    return {"notificationId": receipt.id, "status": receipt.status}


@router.post("/api/welcome", status_code=202)
async def send_welcome(welcome: Welcome, user: CurrentUser, notifier: Notifier) -> dict[str, Any]:
    receipt = await notifier.send(
        template_name="welcome-email",
        channel="email",
        to=str(welcome.email),
        variables={"name": welcome.name},
    )
    return {"notificationId": receipt.id, "status": receipt.status}


@router.post("/api/sync")
async def sync(user: CurrentUser, aldero: AlderoDependency) -> dict[str, int]:
    result = await aldero.sync_user(user.id)
    return {"synced": len(result.synced), "errors": len(result.errors)}


@router.get("/api/products")
async def products(user: CurrentUser, aldero: AlderoDependency) -> dict[str, Any]:
    catalogue = await aldero.billing.list_products()
    return {
        "creditPacks": [product_view(p) for p in catalogue if not p.is_subscription],
        "subscriptions": [product_view(p) for p in catalogue if p.is_subscription],
    }
