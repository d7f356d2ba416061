"""Async HTTP client of the Aldero billing and notification APIs.

It imports neither FastAPI nor Starlette, so it also works outside a FastAPI app::

    async with AlderoClient(base_url=url, api_key="bil_...") as client:
        entitlements = await client.billing.get_entitlements("alice")
"""

from aldero_fastapi.client.billing import BillingAPI
from aldero_fastapi.client.client import AlderoClient
from aldero_fastapi.client.notifications import NotificationsAPI

__all__ = ["AlderoClient", "BillingAPI", "NotificationsAPI"]
