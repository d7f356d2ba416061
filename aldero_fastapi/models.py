"""Typed models of the Aldero API, with the camelCase field names of the wire.

Responses ignore fields they do not know, so that the hosted API can add fields
without breaking this client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "CreditAdjustment",
    "CreditAdjustmentResult",
    "CreditAdjustmentType",
    "CreditLedgerPage",
    "CreditTransaction",
    "Entitlements",
    "Notification",
    "NotificationChannel",
    "NotificationReceipt",
    "Price",
    "Product",
    "ProductInterval",
    "Subscription",
    "SyncError",
    "SyncResult",
    "SyncedEntitlement",
]

CreditAdjustmentType = Literal["usage", "purchase", "grant", "refund", "adjustment"]
NotificationChannel = Literal["push", "email", "sms", "in_app"]
ProductInterval = Literal["one_time", "day", "week", "month", "year"]


class WireModel(BaseModel):
    """
    Base of every model: camelCase aliases on the wire, snake_case in Python.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
    )


class Subscription(WireModel):
    """
    A store subscription that grants features while it is active.
    """

    product_id: str
    status: str
    current_period_end: datetime | None = None


class Entitlements(WireModel):
    """
    A user's features and credit balance.

    ``stale`` is set by the plugin when these entitlements were served from the cache
    past their expiry because the billing service could not be reached.
    """

    user_id: str
    features: tuple[str, ...] = ()
    credits: int = 0
    subscriptions: tuple[Subscription, ...] = ()
    updated_at: datetime | None = None
    stale: bool = Field(default=False, exclude=True)

    def has_feature(self, name: str) -> bool:
        """Return whether the user is entitled to the feature ``name``."""
        return name in self.features


class CreditAdjustment(WireModel):
    """
    A change to a user's credit balance, checked against the sign rules of its type.

    ``usage`` takes a negative amount; ``purchase``, ``grant`` and ``refund`` a positive
    one; ``adjustment`` either sign. Zero is never valid.
    """

    type: CreditAdjustmentType
    amount: int = Field(strict=True)
    description: str | None = Field(default=None, max_length=500)
    reference_id: str | None = Field(default=None, min_length=1, max_length=200)
    reverses_transaction_id: str | None = None

    @model_validator(mode="after")
    def _check_sign(self) -> CreditAdjustment:
        if self.amount == 0:
            raise ValueError("amount must not be 0; pass the number of credits to move")
        if self.type == "usage" and self.amount > 0:
            raise ValueError(
                f"amount {self.amount} is invalid for type 'usage': usage amounts are "
                "negative, for example -3 to consume 3 credits"
            )
        if self.type in ("purchase", "grant", "refund") and self.amount < 0:
            raise ValueError(
                f"amount {self.amount} is invalid for type {self.type!r}: it must be "
                "positive; use type 'usage' or 'adjustment' to take credits away"
            )
        return self

    def to_wire(self) -> dict[str, Any]:
        """Return the JSON body of this adjustment, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True)


class CreditTransaction(WireModel):
    """
    One row of a user's credit ledger.
    """

    id: str
    type: CreditAdjustmentType
    amount: int
    description: str | None = None
    reference_id: str | None = None
    reverses_transaction_id: str | None = None
    balance_after: int
    created_at: datetime


class CreditAdjustmentResult(WireModel):
    """
    The balance after an adjustment and the ledger row it wrote.

    ``replayed`` is True when the service returned the stored result of an earlier
    request with the same reference id instead of applying the adjustment again.
    """

    balance: int
    transaction: CreditTransaction
    replayed: bool = Field(default=False, exclude=True)


class CreditLedgerPage(WireModel):
    """
    One page of a user's ledger, newest first; ``next_cursor`` is None on the last page.
    """

    balance: int
    transactions: tuple[CreditTransaction, ...] = ()
    next_cursor: str | None = None


class SyncedEntitlement(WireModel):
    """
    An entitlement granted by a store purchase during a sync.
    """

    entitlement: str
    product_id: str
    expires_at: datetime | None = None


class SyncError(WireModel):
    """
    A store purchase that a sync could not turn into an entitlement.
    """

    code: str
    message: str
    product_id: str | None = None


class SyncResult(WireModel):
    """
    The outcome of syncing a user's store purchases from RevenueCat.
    """

    synced: tuple[SyncedEntitlement, ...] = ()
    errors: tuple[SyncError, ...] = ()


class Price(WireModel):
    """
    A price in minor units of ``currency`` (cents for USD).
    """

    amount: int
    currency: str


class Product(WireModel):
    """
    A product of the catalogue: a credit pack (``interval == "one_time"``) or a subscription.
    """

    id: str
    name: str
    description: str | None = None
    interval: ProductInterval
    price: Price
    credits: int | None = None
    features: tuple[str, ...] = ()

    @property
    def is_subscription(self) -> bool:
        """Whether the product renews, as opposed to a one-time credit pack."""
        return self.interval != "one_time"


class Notification(WireModel):
    """
    A template message to send over one channel.
    """

    template_name: str = Field(min_length=1)
    channel: NotificationChannel
    to: str = Field(min_length=1)
    variables: dict[str, Any] = Field(default_factory=dict)


class NotificationReceipt(WireModel):
    """
    The service's acknowledgement that a notification was queued.
    """

    id: str
    status: str
    channel: NotificationChannel
    to: str
    template_name: str
    replayed: bool = Field(default=False, exclude=True)
