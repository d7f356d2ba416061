"""Request and response bodies of the admin API under ``/_emulator``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from .faults import FaultAction
from .models import MAX_CREDIT_AMOUNT, RequestBody, ResponseBody

FeatureName = Annotated[str, Field(min_length=1, max_length=200)]


class UserUpdate(RequestBody):
    """New features and balance of a user. A field that is left out stays unchanged."""

    features: list[FeatureName] | None = None
    credits: int | None = Field(default=None, ge=0, le=MAX_CREDIT_AMOUNT)


class UserView(ResponseBody):
    user_id: str
    features: list[str]
    credits: int
    ledger_sum: int


class PurchaseRequest(RequestBody):
    product_id: str = Field(min_length=1, max_length=200)


class FaultRuleRequest(RequestBody):
    """A new fault rule. ``latencyMs`` is in milliseconds, ``retryAfter`` in seconds."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "*"] = "*"
    path: str = Field(default="*", min_length=1, max_length=500)
    action: FaultAction = "status"
    status: int = Field(default=503, ge=400, le=599)
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    retry_after: int | None = Field(default=None, ge=0, le=86_400)
    count: int | None = Field(default=None, ge=1)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)

    @field_validator("method", mode="before")
    @classmethod
    def _uppercase_method(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _check_path(cls, value: str) -> str:
        if not value.startswith(("/", "*")):
            raise ValueError(
                "path must be a glob relative to the tenant base, such as /billing/users/*"
            )
        return value


class FaultRuleView(ResponseBody):
    id: str
    method: str
    path: str
    action: str
    status: int
    latency_ms: int
    retry_after: int | None
    count: int | None
    probability: float
    remaining: int | None
    applied: int


class FaultRuleList(ResponseBody):
    faults: list[FaultRuleView]


class NotificationView(ResponseBody):
    id: str
    template_name: str
    channel: str
    to: str
    variables: dict[str, Any]
    created_at: str


class NotificationList(ResponseBody):
    notifications: list[NotificationView]


class RequestView(ResponseBody):
    """A logged tenant API request. ``status`` is None while running or after a drop."""

    method: str
    path: str
    status: int | None
    request_id: str
    created_at: str
    user_agent: str | None
    fault_id: str | None


class RequestList(ResponseBody):
    requests: list[RequestView]


class WebhookDeliveryView(ResponseBody):
    event_id: str
    type: str
    user_id: str
    status: str
    attempts: int


class WebhookDeliveryList(ResponseBody):
    deliveries: list[WebhookDeliveryView]


class DeletedCount(ResponseBody):
    deleted: int
