"""Rows of the emulator database as immutable Python objects."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserRecord:
    user_id: str
    features: tuple[str, ...]
    balance: int
    updated_at: str


@dataclass(frozen=True)
class LedgerRecord:
    """One append-only credit ledger row. ``seq`` orders rows and backs the page cursor."""

    seq: int
    transaction_id: str
    user_id: str
    type: str
    amount: int
    description: str | None
    reference_id: str | None
    reverses_transaction_id: str | None
    balance_after: int
    created_at: str


@dataclass(frozen=True)
class SubscriptionRecord:
    user_id: str
    product_id: str
    status: str
    current_period_end: str | None


@dataclass(frozen=True)
class StorePurchaseRecord:
    """A completed purchase in an app store, as RevenueCat reports it."""

    purchase_id: str
    user_id: str
    product_id: str
    store: str
    purchased_at: str
    expires_at: str | None
    credits_granted: bool


@dataclass(frozen=True)
class ProductRecord:
    """A catalogue product. ``price_amount`` is in minor units (cents)."""

    product_id: str
    name: str
    description: str
    interval: str
    price_amount: int
    price_currency: str
    credits: int | None
    features: tuple[str, ...]


@dataclass(frozen=True)
class TemplateRecord:
    name: str
    channel: str
    variables: tuple[str, ...]


@dataclass(frozen=True)
class NotificationRecord:
    notification_id: str
    template_name: str
    channel: str
    recipient: str
    variables: dict[str, object]
    created_at: str


@dataclass(frozen=True)
class IdempotencyRecord:
    """A claimed or completed idempotency key.

    ``state`` is ``in_progress`` while the first request runs and ``completed`` once its
    response is stored. ``claimed_at`` is in Unix seconds.
    """

    scope: str
    key: str
    fingerprint: str
    state: str
    status_code: int | None
    body: bytes | None
    claimed_at: float
