"""FastAPI integration for the Aldero billing and notification service.

::

    from aldero_fastapi import Aldero, CurrentUser, Credits, require_feature

    aldero = Aldero()
    app = FastAPI(lifespan=aldero.lifespan)
    aldero.install(app)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from aldero_fastapi.auth import AuthenticatedUser
from aldero_fastapi.client import AlderoClient
from aldero_fastapi.credits import CreditSession, Deduction
from aldero_fastapi.dependencies import (
    Credits,
    CurrentUser,
    Notifier,
    UserEntitlements,
    current_user,
    deduct_credits,
    get_aldero,
    require_feature,
    user_entitlements,
)
from aldero_fastapi.errors import (
    AlderoAPIError,
    AlderoConnectionError,
    AlderoError,
    AlderoTimeoutError,
    AlderoTransportError,
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    IdempotencyMismatchError,
    InsufficientCreditsError,
    InvalidRequestError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    UnauthorizedError,
)
from aldero_fastapi.http_errors import AlderoHTTPException
from aldero_fastapi.models import (
    CreditAdjustment,
    CreditAdjustmentResult,
    CreditLedgerPage,
    CreditTransaction,
    Entitlements,
    Notification,
    NotificationReceipt,
    Price,
    Product,
    Subscription,
    SyncedEntitlement,
    SyncError,
    SyncResult,
)
from aldero_fastapi.notify import NotificationSender
from aldero_fastapi.plugin import Aldero
from aldero_fastapi.resolvers import bearer_token_user, trusted_header_user
from aldero_fastapi.settings import AlderoSettings, load_settings

try:
    __version__ = version("aldero-fastapi")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0"

__all__ = [
    "Aldero",
    "AlderoAPIError",
    "AlderoClient",
    "AlderoConnectionError",
    "AlderoError",
    "AlderoHTTPException",
    "AlderoSettings",
    "AlderoTimeoutError",
    "AlderoTransportError",
    "AuthenticatedUser",
    "ConfigurationError",
    "ConflictError",
    "CreditAdjustment",
    "CreditAdjustmentResult",
    "CreditLedgerPage",
    "CreditSession",
    "CreditTransaction",
    "Credits",
    "CurrentUser",
    "Deduction",
    "Entitlements",
    "ForbiddenError",
    "IdempotencyMismatchError",
    "InsufficientCreditsError",
    "InvalidRequestError",
    "NotFoundError",
    "Notification",
    "NotificationReceipt",
    "NotificationSender",
    "Notifier",
    "Price",
    "Product",
    "RateLimitedError",
    "ServerError",
    "Subscription",
    "SyncError",
    "SyncResult",
    "SyncedEntitlement",
    "UnauthorizedError",
    "UserEntitlements",
    "__version__",
    "bearer_token_user",
    "current_user",
    "deduct_credits",
    "get_aldero",
    "load_settings",
    "require_feature",
    "trusted_header_user",
    "user_entitlements",
]
