"""Seed data: the catalogue, templates and users that an empty or reset emulator starts with.

The packaged ``seed.json`` is used unless a seed file path is given.
"""

from __future__ import annotations

from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from .ids import new_id
from .models import MAX_CREDIT_AMOUNT, Channel, Interval
from .records import ProductRecord, StorePurchaseRecord, TemplateRecord
from .store import StoreTransaction

SEED_DESCRIPTION = "Initial credits from the emulator seed"
_PACKAGE = __name__.rpartition(".")[0]


class _SeedModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, extra="forbid")


class SeedPrice(_SeedModel):
    amount: int = Field(ge=0)
    currency: str = Field(min_length=3, max_length=3)


class SeedProduct(_SeedModel):
    id: str = Field(min_length=1)
    name: str
    description: str
    interval: Interval
    price: SeedPrice
    credits: int | None = Field(default=None, ge=1, le=MAX_CREDIT_AMOUNT)
    features: list[str] = Field(default_factory=list)


class SeedTemplate(_SeedModel):
    name: str = Field(min_length=1)
    channel: Channel
    variables: list[str] = Field(default_factory=list)


class SeedSubscription(_SeedModel):
    product_id: str
    status: str = "active"
    current_period_end: str | None = None


class SeedStorePurchase(_SeedModel):
    id: str = Field(min_length=1)
    product_id: str
    store: str = "app_store"
    purchased_at: str
    expires_at: str | None = None


class SeedUser(_SeedModel):
    id: str = Field(min_length=1, max_length=128)
    features: list[str] = Field(default_factory=list)
    credits: int = Field(default=0, ge=0, le=MAX_CREDIT_AMOUNT)
    subscriptions: list[SeedSubscription] = Field(default_factory=list)
    store_purchases: list[SeedStorePurchase] = Field(default_factory=list)


class SeedData(_SeedModel):
    products: list[SeedProduct] = Field(default_factory=list)
    templates: list[SeedTemplate] = Field(default_factory=list)
    users: list[SeedUser] = Field(default_factory=list)


def load_seed(path: str | None = None) -> SeedData:
    """Read and validate a seed file, or the packaged seed when ``path`` is None.

    Raises ValueError naming the file when it cannot be read or is invalid.
    """
    source = path or "packaged seed.json"
    try:
        if path is None:
            text = resources.files(_PACKAGE).joinpath("seed.json").read_text("utf-8")
        else:
            with open(path, encoding="utf-8") as seed_file:
                text = seed_file.read()
        return SeedData.model_validate_json(text)
    except OSError as exc:
        raise ValueError(f"Seed file {source!r} could not be read: {exc}") from exc
    except ValidationError as exc:
        raise ValueError(f"Seed file {source!r} is invalid: {exc}") from exc


def write_seed(tx: StoreTransaction, seed: SeedData) -> None:
    """Insert the seed into an empty database.

    Initial credits become ``grant`` ledger rows, so each balance equals its ledger sum.
    """
    for product in seed.products:
        tx.add_product(
            ProductRecord(
                product_id=product.id,
                name=product.name,
                description=product.description,
                interval=product.interval,
                price_amount=product.price.amount,
                price_currency=product.price.currency,
                credits=product.credits,
                features=tuple(product.features),
            )
        )

    for template in seed.templates:
        tx.add_template(
            TemplateRecord(
                name=template.name,
                channel=template.channel,
                variables=tuple(template.variables),
            )
        )

    for user in seed.users:
        _write_user(tx, user)


def _write_user(tx: StoreTransaction, user: SeedUser) -> None:
    tx.ensure_user(user.id)
    tx.set_features(user.id, user.features)

    if user.credits > 0:
        tx.append_ledger_row(
            transaction_id=new_id("txn_"),
            user_id=user.id,
            type="grant",
            amount=user.credits,
            description=SEED_DESCRIPTION,
            reference_id=None,
            reverses_transaction_id=None,
        )

    for subscription in user.subscriptions:
        tx.upsert_subscription(
            user.id,
            subscription.product_id,
            subscription.status,
            subscription.current_period_end,
        )

    for purchase in user.store_purchases:
        tx.add_store_purchase(
            StorePurchaseRecord(
                purchase_id=purchase.id,
                user_id=user.id,
                product_id=purchase.product_id,
                store=purchase.store,
                purchased_at=purchase.purchased_at,
                expires_at=purchase.expires_at,
                credits_granted=False,
            )
        )
