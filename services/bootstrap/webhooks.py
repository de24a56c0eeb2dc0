"""The webhooks: the worker role's parts (feeder, expiry checker, dispatcher) and the endpoint service the API,
the dashboard and the CLI use, built from the settings."""

from __future__ import annotations

from keyledger.domain.webhook_urls import networks
from keyledger.domain.webhooks import RetrySchedule
from keyledger.services.bootstrap.runtime import Runtime
from keyledger.services.clock import Clock
from keyledger.services.config import Settings
from keyledger.services.keys.views import key_view
from keyledger.services.storage.database import Database
from keyledger.services.storage.webhook_dispatch import WebhookDispatch
from keyledger.services.storage.webhook_feed import WebhookFeed
from keyledger.services.storage.webhooks import WebhookEndpoints
from keyledger.services.webhooks.dispatcher import Dispatcher
from keyledger.services.webhooks.endpoints import WebhookService
from keyledger.services.webhooks.expiry import ExpiryChecker
from keyledger.services.webhooks.feeder import LifecycleFeeder
from keyledger.services.webhooks.transport import Sender
from keyledger.services.webhooks.worker import WebhooksWorker


def retry_schedule(settings: Settings) -> RetrySchedule:
    """The retry schedule of ``KEYLEDGER_WEBHOOK_RETRY_FIRST_MS``, ``_RETRY_MAX`` and ``_RETRY_FOR``."""
    return RetrySchedule(first=settings.webhook_retry_first_ms / 1000, most=float(settings.webhook_retry_max),
                         give_up_after=float(settings.webhook_retry_for))


def webhook_service(db: Database, settings: Settings, clock: Clock) -> WebhookService:
    """Endpoint registration and management on ``db``, under the address policy of ``settings``."""
    return WebhookService(WebhookEndpoints(db), networks(settings.webhook_allowed_networks), clock)


def webhooks_worker(rt: Runtime) -> WebhooksWorker:
    """The ``webhooks`` role's worker on ``rt``: notices carry the key as the API shows it (``key_view``)."""
    feed, settings = WebhookFeed(rt.db), rt.settings
    sender = Sender(networks(settings.webhook_allowed_networks))
    dispatcher = Dispatcher(rt.db, WebhookEndpoints(rt.db), WebhookDispatch(rt.db), sender, retry_schedule(settings),
                            rt.clock)
    return WebhooksWorker(rt.db, LifecycleFeeder(feed, rt.store, key_view),
                          ExpiryChecker(feed, rt.store, key_view, rt.clock), dispatcher, rt.clock)
