"""Request and response bodies of the tenant API, with camelCase names on the wire."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel
from starlette.responses import Response

CreditType = Literal["usage", "purchase", "grant", "refund", "adjustment"]
Channel = Literal["push", "email", "sms", "in_app"]
Interval = Literal["one_time", "day", "week", "month", "year"]

# Bounds the amount of one adjustment, so balances stay far inside SQLite's 64-bit integers.
MAX_CREDIT_AMOUNT = 1_000_000_000


class RequestBody(BaseModel):
    """Base of request bodies: camelCase names only, strict types, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        extra="forbid",
        strict=True,
    )


class ResponseBody(BaseModel):
    """Base of response bodies: built from snake_case names, serialised in camelCase."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
    )


def encode_body(body: BaseModel) -> bytes:
    return body.model_dump_json(by_alias=True).encode()


def json_response(body: BaseModel, status_code: int = 200) -> Response:
    return Response(encode_body(body), status_code=status_code, media_type="application/json")


# Billing


class SubscriptionView(ResponseBody):
    product_id: str
    status: str
    current_period_end: str | None


class EntitlementsResponse(ResponseBody):
    user_id: str
    features: list[str]
    credits: int
    subscriptions: list[SubscriptionView]
    updated_at: str


class CreditAdjustmentRequest(RequestBody):
    type: CreditType
    amount: int = Field(ge=-MAX_CREDIT_AMOUNT, le=MAX_CREDIT_AMOUNT)
    description: str | None = Field(default=None, max_length=500)
    reference_id: str | None = Field(default=None, min_length=1, max_length=200)
    reverses_transaction_id: str | None = Field(default=None, min_length=1, max_length=200)


class TransactionView(ResponseBody):
    id: str
    type: str
    amount: int
    description: str | None
    reference_id: str | None
    reverses_transaction_id: str | None
    balance_after: int
    created_at: str


class CreditAdjustmentResponse(ResponseBody):
    balance: int
    transaction: TransactionView


class LedgerPage(ResponseBody):
    balance: int
    transactions: list[TransactionView]
    next_cursor: str | None


class SyncedEntitlement(ResponseBody):
    entitlement: str
    product_id: str
    expires_at: str | None


class SyncError(ResponseBody):
    code: str
    message: str
    product_id: str


class SyncResponse(ResponseBody):
    synced: list[SyncedEntitlement]
    errors: list[SyncError]


class Price(ResponseBody):
    """A price in minor units of the currency (cents for USD)."""

    amount: int
    currency: str


class ProductView(ResponseBody):
    id: str
    name: str
    description: str
    interval: str
    price: Price
    credits: int | None
    features: list[str]


class ProductList(ResponseBody):
    products: list[ProductView]


# Notifications


class NotificationSendRequest(RequestBody):
    template_name: str = Field(min_length=1, max_length=200)
    channel: Channel
    to: str = Field(min_length=1, max_length=320)
    variables: dict[str, JsonValue] = Field(default_factory=dict)


class NotificationSendResponse(ResponseBody):
    id: str
    status: Literal["queued"]
    channel: str
    to: str
    template_name: str
