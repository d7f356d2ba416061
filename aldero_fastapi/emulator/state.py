"""The state of one emulator instance, shared by its routes and middleware."""

from __future__ import annotations

import logging
import random

from .config import EmulatorConfig
from .faults import FaultRegistry
from .request_log import RequestLog
from .seed import SeedData, load_seed, write_seed
from .store import EmulatorStore
from .webhooks import WebhookSender

logger = logging.getLogger(__name__)


class EmulatorState:
    """Store, fault rules, request log and webhook sender of one emulator app.

    Tests reach it as ``app.state.emulator``.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.seed: SeedData = load_seed(config.seed_path)
        self.store = EmulatorStore(config.db_path)
        self.faults = FaultRegistry(random.Random(config.fault_seed))
        self.requests = RequestLog()
        self.webhooks = WebhookSender(
            config.webhook_url, config.webhook_secret, transport=config.webhook_transport
        )

        with self.store.transaction() as tx:
            if config.load_seed_if_empty and not tx.has_data():
                write_seed(tx, self.seed)
                logger.info("Loaded the seed into the empty database")

    def reset(self) -> None:
        """Restore the seed and forget faults, logged requests and webhook deliveries.

        Notifications and idempotency records are database rows, so they go with the rest.
        The fault probability draws restart from ``fault_seed``. Every user that existed
        before or after the reset gets both webhook events, so that caches drop them.
        """
        with self.store.transaction() as tx:
            users_before = tx.list_user_ids()
            tx.delete_everything()
            write_seed(tx, self.seed)
            users_after = tx.list_user_ids()

        self.faults.clear()
        self.faults.reseed(self.config.fault_seed)
        self.requests.clear()
        self.webhooks.clear()
        for user_id in sorted(set(users_before) | set(users_after)):
            self.webhooks.send_user_events(user_id, entitlements=True, credits=True)
        logger.info("Reset the emulator to its seed")

    async def aclose(self) -> None:
        """Stop webhook deliveries, close their HTTP client and close the database."""
        await self.webhooks.aclose()
        self.store.close()
