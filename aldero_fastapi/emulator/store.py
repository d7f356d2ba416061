"""SQLite persistence of the emulator: users, credit ledger, catalogue, messages and more.

All access goes through :meth:`EmulatorStore.transaction`, which runs one SQLite
transaction under a thread lock. A write transaction starts with ``BEGIN IMMEDIATE``, so
it holds the database write lock from its first statement. A balance check and the ledger
insert that depends on it therefore cannot interleave with another writer, also when a
second process shares the database file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .records import (
    IdempotencyRecord,
    LedgerRecord,
    NotificationRecord,
    ProductRecord,
    StorePurchaseRecord,
    SubscriptionRecord,
    TemplateRecord,
    UserRecord,
)
from .schema import ALL_TABLES, SCHEMA, SCHEMA_VERSION
from .timestamps import now_timestamp

BUSY_TIMEOUT_SECONDS = 10.0


class StoreTransaction:
    """Queries and changes inside one open transaction. Use it only inside its ``with``."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def _one(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._connection.execute(sql, parameters).fetchone()
        return row

    def _all(self, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return list(self._connection.execute(sql, parameters).fetchall())

    def _run(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._connection.execute(sql, parameters)

    # Users

    def get_user(self, user_id: str) -> UserRecord | None:
        row = self._one("SELECT * FROM users WHERE user_id = ?", (user_id,))
        return None if row is None else _user(row)

    def ensure_user(self, user_id: str) -> UserRecord:
        """Return the user, creating it with no features and no credits when missing."""
        self._run(
            "INSERT OR IGNORE INTO users (user_id, features, balance, updated_at) "
            "VALUES (?, '[]', 0, ?)",
            (user_id, now_timestamp()),
        )
        user = self.get_user(user_id)
        assert user is not None
        return user

    def set_features(self, user_id: str, features: Sequence[str]) -> None:
        self.ensure_user(user_id)
        self._run(
            "UPDATE users SET features = ?, updated_at = ? WHERE user_id = ?",
            (_encode_list(sorted(set(features))), now_timestamp(), user_id),
        )

    # Ledger

    def append_ledger_row(
        self,
        *,
        transaction_id: str,
        user_id: str,
        type: str,
        amount: int,
        description: str | None,
        reference_id: str | None,
        reverses_transaction_id: str | None,
    ) -> LedgerRecord:
        """Append a ledger row and move the user's balance by ``amount`` in the same step.

        This is the only code that changes a balance, which keeps the balance equal to
        the sum of the user's ledger amounts. Raises ValueError when the balance would
        drop below 0.
        """
        user = self.ensure_user(user_id)
        balance_after = user.balance + amount
        if balance_after < 0:
            raise ValueError(
                f"ledger row of {amount} would take the balance of {user_id!r} below 0"
            )

        created_at = now_timestamp()
        cursor = self._run(
            "INSERT INTO ledger (transaction_id, user_id, type, amount, description, "
            "reference_id, reverses_transaction_id, balance_after, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                transaction_id,
                user_id,
                type,
                amount,
                description,
                reference_id,
                reverses_transaction_id,
                balance_after,
                created_at,
            ),
        )
        self._run(
            "UPDATE users SET balance = ?, updated_at = ? WHERE user_id = ?",
            (balance_after, created_at, user_id),
        )

        seq = cursor.lastrowid
        assert seq is not None
        return LedgerRecord(
            seq=seq,
            transaction_id=transaction_id,
            user_id=user_id,
            type=type,
            amount=amount,
            description=description,
            reference_id=reference_id,
            reverses_transaction_id=reverses_transaction_id,
            balance_after=balance_after,
            created_at=created_at,
        )

    def get_ledger_row(self, transaction_id: str) -> LedgerRecord | None:
        row = self._one("SELECT * FROM ledger WHERE transaction_id = ?", (transaction_id,))
        return None if row is None else _ledger(row)

    def sum_reversals(self, transaction_id: str) -> int:
        """Return the total amount of the refunds that reverse ``transaction_id``."""
        row = self._one(
            "SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE reverses_transaction_id = ?",
            (transaction_id,),
        )
        assert row is not None
        return int(row[0])

    def list_ledger_rows(
        self, user_id: str, *, before_seq: int | None, limit: int
    ) -> list[LedgerRecord]:
        """Return up to ``limit`` rows of the user, newest first, older than ``before_seq``."""
        if before_seq is None:
            rows = self._all(
                "SELECT * FROM ledger WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
                (user_id, limit),
            )
        else:
            rows = self._all(
                "SELECT * FROM ledger WHERE user_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (user_id, before_seq, limit),
            )
        return [_ledger(row) for row in rows]

    def sum_ledger(self, user_id: str) -> int:
        row = self._one("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE user_id = ?", (user_id,))
        assert row is not None
        return int(row[0])

    # Subscriptions

    def upsert_subscription(
        self, user_id: str, product_id: str, status: str, current_period_end: str | None
    ) -> bool:
        """Insert or update a subscription and return whether anything changed."""
        existing = self._one(
            "SELECT status, current_period_end FROM subscriptions "
            "WHERE user_id = ? AND product_id = ?",
            (user_id, product_id),
        )
        if existing is not None and tuple(existing) == (status, current_period_end):
            return False

        self._run(
            "INSERT INTO subscriptions (user_id, product_id, status, current_period_end) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (user_id, product_id) DO UPDATE SET "
            "status = excluded.status, current_period_end = excluded.current_period_end",
            (user_id, product_id, status, current_period_end),
        )
        self._run("UPDATE users SET updated_at = ? WHERE user_id = ?", (now_timestamp(), user_id))
        return True

    def list_subscriptions(self, user_id: str) -> list[SubscriptionRecord]:
        rows = self._all(
            "SELECT * FROM subscriptions WHERE user_id = ? ORDER BY product_id", (user_id,)
        )
        return [
            SubscriptionRecord(
                user_id=row["user_id"],
                product_id=row["product_id"],
                status=row["status"],
                current_period_end=row["current_period_end"],
            )
            for row in rows
        ]

    # Store purchases

    def add_store_purchase(self, purchase: StorePurchaseRecord) -> None:
        self._run(
            "INSERT INTO store_purchases (purchase_id, user_id, product_id, store, "
            "purchased_at, expires_at, credits_granted) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                purchase.purchase_id,
                purchase.user_id,
                purchase.product_id,
                purchase.store,
                purchase.purchased_at,
                purchase.expires_at,
                int(purchase.credits_granted),
            ),
        )

    def list_store_purchases(self, user_id: str) -> list[StorePurchaseRecord]:
        rows = self._all("SELECT * FROM store_purchases WHERE user_id = ? ORDER BY seq", (user_id,))
        return [
            StorePurchaseRecord(
                purchase_id=row["purchase_id"],
                user_id=row["user_id"],
                product_id=row["product_id"],
                store=row["store"],
                purchased_at=row["purchased_at"],
                expires_at=row["expires_at"],
                credits_granted=bool(row["credits_granted"]),
            )
            for row in rows
        ]

    def mark_purchase_credited(self, purchase_id: str) -> None:
        self._run(
            "UPDATE store_purchases SET credits_granted = 1 WHERE purchase_id = ?",
            (purchase_id,),
        )

    # Catalogue

    def add_product(self, product: ProductRecord) -> None:
        self._run(
            "INSERT INTO products (product_id, name, description, interval, price_amount, "
            "price_currency, credits, features) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                product.product_id,
                product.name,
                product.description,
                product.interval,
                product.price_amount,
                product.price_currency,
                product.credits,
                _encode_list(product.features),
            ),
        )

    def get_product(self, product_id: str) -> ProductRecord | None:
        row = self._one("SELECT * FROM products WHERE product_id = ?", (product_id,))
        return None if row is None else _product(row)

    def list_products(self) -> list[ProductRecord]:
        return [_product(row) for row in self._all("SELECT * FROM products ORDER BY position")]

    # Notification templates and sent notifications

    def add_template(self, template: TemplateRecord) -> None:
        self._run(
            "INSERT INTO templates (name, channel, variables) VALUES (?, ?, ?)",
            (template.name, template.channel, _encode_list(template.variables)),
        )

    def get_template(self, name: str) -> TemplateRecord | None:
        row = self._one("SELECT * FROM templates WHERE name = ?", (name,))
        if row is None:
            return None
        return TemplateRecord(
            name=row["name"], channel=row["channel"], variables=_decode_list(row["variables"])
        )

    def add_notification(self, notification: NotificationRecord) -> None:
        self._run(
            "INSERT INTO notifications (notification_id, template_name, channel, recipient, "
            "variables, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (
                notification.notification_id,
                notification.template_name,
                notification.channel,
                notification.recipient,
                json.dumps(notification.variables),
                notification.created_at,
            ),
        )

    def find_notifications(
        self, *, recipient: str | None, template_name: str | None
    ) -> list[NotificationRecord]:
        """Return the notifications that match every given filter, oldest first."""
        rows = self._all(
            "SELECT * FROM notifications WHERE (? IS NULL OR recipient = ?) "
            "AND (? IS NULL OR template_name = ?) ORDER BY seq",
            (recipient, recipient, template_name, template_name),
        )
        return [
            NotificationRecord(
                notification_id=row["notification_id"],
                template_name=row["template_name"],
                channel=row["channel"],
                recipient=row["recipient"],
                variables=json.loads(row["variables"]),
                created_at=row["created_at"],
            )
            for row in rows
        ]

    # Idempotency records

    def get_idempotency_record(self, scope: str, key: str) -> IdempotencyRecord | None:
        row = self._one(
            "SELECT * FROM idempotency_records WHERE scope = ? AND key = ?", (scope, key)
        )
        if row is None:
            return None
        return IdempotencyRecord(
            scope=row["scope"],
            key=row["key"],
            fingerprint=row["fingerprint"],
            state=row["state"],
            status_code=row["status_code"],
            body=row["body"],
            claimed_at=row["claimed_at"],
        )

    def claim_idempotency_key(
        self, scope: str, key: str, fingerprint: str, claimed_at: float
    ) -> None:
        """Insert or take over an ``in_progress`` claim of the key."""
        self._run(
            "INSERT INTO idempotency_records (scope, key, fingerprint, state, claimed_at) "
            "VALUES (?, ?, ?, 'in_progress', ?) ON CONFLICT (scope, key) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, state = 'in_progress', "
            "status_code = NULL, body = NULL, claimed_at = excluded.claimed_at",
            (scope, key, fingerprint, claimed_at),
        )

    def complete_idempotency_key(self, scope: str, key: str, status_code: int, body: bytes) -> None:
        self._run(
            "UPDATE idempotency_records SET state = 'completed', status_code = ?, body = ? "
            "WHERE scope = ? AND key = ?",
            (status_code, body, scope, key),
        )

    def delete_idempotency_key(self, scope: str, key: str) -> None:
        self._run(
            "DELETE FROM idempotency_records WHERE scope = ? AND key = ? AND state = 'in_progress'",
            (scope, key),
        )

    # Whole database

    def list_user_ids(self) -> list[str]:
        return [row["user_id"] for row in self._all("SELECT user_id FROM users ORDER BY user_id")]

    def has_data(self) -> bool:
        row = self._one(
            "SELECT (SELECT COUNT(*) FROM users) + (SELECT COUNT(*) FROM products) "
            "+ (SELECT COUNT(*) FROM templates)"
        )
        assert row is not None
        return int(row[0]) > 0

    def delete_everything(self) -> None:
        for table in ALL_TABLES:
            # The table names are constants of this package, never request input.
            self._run(f"DELETE FROM {table}")


class EmulatorStore:
    """The emulator database: in memory when ``db_path`` is None, else a WAL-mode file."""

    def __init__(self, db_path: str | None = None) -> None:
        self.db_path = db_path
        self._lock = threading.RLock()
        # One connection shared by the server thread and test code, serialised by the lock.
        self._connection = sqlite3.connect(
            db_path or ":memory:",
            timeout=BUSY_TIMEOUT_SECONDS,
            isolation_level=None,
            check_same_thread=False,
        )
        self._connection.row_factory = sqlite3.Row
        self._closed = False

        try:
            self._prepare()
        except BaseException:
            self._connection.close()
            raise

    def _prepare(self) -> None:
        if self.db_path is not None:
            self._connection.execute("PRAGMA journal_mode = WAL")
            self._connection.execute("PRAGMA synchronous = NORMAL")

        version = int(self._connection.execute("PRAGMA user_version").fetchone()[0])
        if version not in (0, SCHEMA_VERSION):
            raise RuntimeError(
                f"Database {self.db_path!r} has schema version {version}, but this emulator "
                f"uses version {SCHEMA_VERSION}. Use a new database file."
            )

        self._connection.executescript(SCHEMA)
        self._connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[StoreTransaction]:
        """Run the block in one transaction: commit when it returns, roll back if it raises.

        Do not await inside the block. The thread lock stays held until the block ends.
        """
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield StoreTransaction(self._connection)
                self._connection.execute("COMMIT")
            except BaseException:
                if self._connection.in_transaction:
                    self._connection.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._connection.close()

    @property
    def closed(self) -> bool:
        return self._closed


def _encode_list(values: Sequence[str]) -> str:
    return json.dumps(list(values))


def _decode_list(text: str) -> tuple[str, ...]:
    return tuple(str(value) for value in json.loads(text))


def _user(row: sqlite3.Row) -> UserRecord:
    return UserRecord(
        user_id=row["user_id"],
        features=_decode_list(row["features"]),
        balance=row["balance"],
        updated_at=row["updated_at"],
    )


def _ledger(row: sqlite3.Row) -> LedgerRecord:
    return LedgerRecord(
        seq=row["seq"],
        transaction_id=row["transaction_id"],
        user_id=row["user_id"],
        type=row["type"],
        amount=row["amount"],
        description=row["description"],
        reference_id=row["reference_id"],
        reverses_transaction_id=row["reverses_transaction_id"],
        balance_after=row["balance_after"],
        created_at=row["created_at"],
    )


def _product(row: sqlite3.Row) -> ProductRecord:
    return ProductRecord(
        product_id=row["product_id"],
        name=row["name"],
        description=row["description"],
        interval=row["interval"],
        price_amount=row["price_amount"],
        price_currency=row["price_currency"],
        credits=row["credits"],
        features=_decode_list(row["features"]),
    )
