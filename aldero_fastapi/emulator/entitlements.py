"""The entitlements view of a user: features, credit balance and subscriptions."""

from __future__ import annotations

from .models import EntitlementsResponse, SubscriptionView
from .store import StoreTransaction
from .timestamps import now_timestamp


def read_entitlements(tx: StoreTransaction, user_id: str) -> EntitlementsResponse:
    """Return the user's entitlements. An unknown user has none, and its updatedAt is now."""
    user = tx.get_user(user_id)
    subscriptions = [
        SubscriptionView(
            product_id=record.product_id,
            status=record.status,
            current_period_end=record.current_period_end,
        )
        for record in tx.list_subscriptions(user_id)
    ]

    if user is None:
        return EntitlementsResponse(
            user_id=user_id,
            features=[],
            credits=0,
            subscriptions=subscriptions,
            updated_at=now_timestamp(),
        )

    return EntitlementsResponse(
        user_id=user_id,
        features=list(user.features),
        credits=user.balance,
        subscriptions=subscriptions,
        updated_at=user.updated_at,
    )
