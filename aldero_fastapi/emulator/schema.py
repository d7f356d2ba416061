"""SQL schema of the emulator database."""

from __future__ import annotations

SCHEMA_VERSION = 1

# The CHECK on users.balance is a last line of defence: the credit rules reject an
# overdraft with 402 before the insert, and the constraint turns any bug into a rollback.
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    features TEXT NOT NULL DEFAULT '[]',
    balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
    updated_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    transaction_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    amount INTEGER NOT NULL,
    description TEXT,
    reference_id TEXT,
    reverses_transaction_id TEXT,
    balance_after INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_by_user ON ledger (user_id, seq);
CREATE INDEX IF NOT EXISTS ledger_by_reversed ON ledger (reverses_transaction_id);
CREATE TRIGGER IF NOT EXISTS ledger_append_only BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger rows are append-only');
END;

CREATE TABLE IF NOT EXISTS subscriptions (
    user_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    status TEXT NOT NULL,
    current_period_end TEXT,
    PRIMARY KEY (user_id, product_id)
);

CREATE TABLE IF NOT EXISTS store_purchases (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    purchase_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    store TEXT NOT NULL,
    purchased_at TEXT NOT NULL,
    expires_at TEXT,
    credits_granted INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS store_purchases_by_user ON store_purchases (user_id, seq);

CREATE TABLE IF NOT EXISTS products (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    product_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    interval TEXT NOT NULL,
    price_amount INTEGER NOT NULL,
    price_currency TEXT NOT NULL,
    credits INTEGER,
    features TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE IF NOT EXISTS templates (
    name TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    variables TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE IF NOT EXISTS notifications (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    notification_id TEXT NOT NULL UNIQUE,
    template_name TEXT NOT NULL,
    channel TEXT NOT NULL,
    recipient TEXT NOT NULL,
    variables TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS idempotency_records (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('in_progress', 'completed')),
    status_code INTEGER,
    body BLOB,
    claimed_at REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
"""

# Tables emptied by a reset, children before parents.
ALL_TABLES = (
    "idempotency_records",
    "notifications",
    "store_purchases",
    "subscriptions",
    "ledger",
    "users",
    "templates",
    "products",
)
