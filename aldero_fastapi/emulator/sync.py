"""Turning store purchases into entitlements and credits (syncUser and admin purchases)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from .ids import new_id
from .models import SyncedEntitlement, SyncError, SyncResponse
from .records import ProductRecord, StorePurchaseRecord
from .store import StoreTransaction
from .timestamps import format_timestamp, timestamp_after, utc_now

# NOTE: a month and a year are approximated as 30 and 365 days for simulated purchases.
_PERIODS = {
    "day": timedelta(days=1),
    "week": timedelta(weeks=1),
    "month": timedelta(days=30),
    "year": timedelta(days=365),
}


@dataclass(frozen=True)
class Changes:
    """Flags for the kinds of user state that a step changed, which select the webhook events."""

    entitlements: bool = False
    credits: bool = False

    def __or__(self, other: Changes) -> Changes:
        return Changes(
            entitlements=self.entitlements or other.entitlements,
            credits=self.credits or other.credits,
        )


@dataclass(frozen=True)
class SyncOutcome:
    response: SyncResponse
    changes: Changes


def sync_user(tx: StoreTransaction, user_id: str) -> SyncOutcome:
    """Apply every store purchase of the user that is not applied yet.

    The synced list has one entry per feature of each known product, on every run, so a
    second sync reports the same list while adding nothing twice. Purchases of products
    missing from the catalogue become ``unknown_product`` errors.
    """
    synced: list[SyncedEntitlement] = []
    errors: list[SyncError] = []
    changes = Changes()

    for purchase in tx.list_store_purchases(user_id):
        product = tx.get_product(purchase.product_id)
        if product is None:
            errors.append(
                SyncError(
                    code="unknown_product",
                    message=(
                        f"Store purchase {purchase.purchase_id!r} is for product "
                        f"{purchase.product_id!r}, which is not in the catalogue. "
                        "Add the product to the catalogue to grant it."
                    ),
                    product_id=purchase.product_id,
                )
            )
            continue

        changes |= apply_purchase(tx, purchase, product)
        synced.extend(
            SyncedEntitlement(
                entitlement=feature,
                product_id=product.product_id,
                expires_at=purchase.expires_at,
            )
            for feature in product.features
        )

    return SyncOutcome(response=SyncResponse(synced=synced, errors=errors), changes=changes)


def apply_purchase(
    tx: StoreTransaction, purchase: StorePurchaseRecord, product: ProductRecord
) -> Changes:
    """Grant what ``product`` gives for ``purchase``. Running it again changes nothing."""
    user = tx.ensure_user(purchase.user_id)
    changes = Changes()

    features = set(user.features) | set(product.features)
    if features != set(user.features):
        tx.set_features(purchase.user_id, sorted(features))
        changes |= Changes(entitlements=True)

    if product.interval != "one_time":
        changed = tx.upsert_subscription(
            purchase.user_id, product.product_id, "active", purchase.expires_at
        )
        changes |= Changes(entitlements=changed)

    if product.credits and not purchase.credits_granted:
        tx.append_ledger_row(
            transaction_id=new_id("txn_"),
            user_id=purchase.user_id,
            type="purchase",
            amount=product.credits,
            description=f"Store purchase of {product.name}",
            reference_id=purchase.purchase_id,
            reverses_transaction_id=None,
        )
        tx.mark_purchase_credited(purchase.purchase_id)
        changes |= Changes(credits=True)

    return changes


def record_purchase(tx: StoreTransaction, user_id: str, product: ProductRecord) -> Changes:
    """Record a completed store purchase of ``product`` and apply it at once."""
    now = utc_now()
    period = _PERIODS.get(product.interval)
    purchase = StorePurchaseRecord(
        purchase_id=new_id("store_"),
        user_id=user_id,
        product_id=product.product_id,
        store="app_store",
        purchased_at=format_timestamp(now),
        expires_at=None if period is None else timestamp_after(now, period),
        credits_granted=False,
    )
    tx.add_store_purchase(purchase)
    return apply_purchase(tx, purchase, product)
