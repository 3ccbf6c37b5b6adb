"""What a handler needs, built once per process and only when first used.

A function instance serves many requests; settings, the store and one pooled HTTP client per upstream are made on
first use (cold start pays only for what the target touches) and reused after. Tests build their own
:class:`Services` with explicit settings and transports instead of the process-wide one.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from farmsync.logs import configure as configure_logs
from farmsync.logs import register_secrets
from farmsync.security import secret_parts, url_secrets
from farmsync.settings import URL_FIELDS, Settings, get_settings
from farmsync.store import AsyncStore, Store, open_store

if TYPE_CHECKING:
    import httpx

    from farmsync.clients.bambuddy import BambuddyClient
    from farmsync.clients.inventree import InvenTreeClient


class Services:
    """Settings, store and upstream clients of one process (or one test)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        bambuddy_transport: httpx.AsyncBaseTransport | None = None,
        inventree_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._async_store: AsyncStore | None = None
        self._bambuddy: BambuddyClient | None = None
        self._inventree: InvenTreeClient | None = None
        self._bambuddy_transport = bambuddy_transport
        self._inventree_transport = inventree_transport
        self._lock = threading.Lock()
        self.started_at = time.time()
        self.state: dict[str, Any] = {}  # last tick results etc., for status pages of this process
        register_secrets(
            [
                settings.bambuddy_api_key.get_secret_value(),
                settings.inventree_token.get_secret_value(),
                settings.service_api_token.get_secret_value(),
                settings.webhook_shared_secret.get_secret_value(),
                *secret_parts(settings.notify_url.get_secret_value()),
                *(secret for name in URL_FIELDS for secret in url_secrets(getattr(settings, name))),
            ]
        )

    @property
    def store(self) -> AsyncStore:
        """The store, with its blocking calls moved off the event loop."""
        if self._async_store is None:
            with self._lock:
                if self._store is None:
                    self._store = open_store(self.settings)
                self._async_store = AsyncStore(self._store)
        return self._async_store

    @property
    def sync_store(self) -> Store:
        return self.store.sync

    def bambuddy(self) -> BambuddyClient:
        if self._bambuddy is None:
            from farmsync.clients.bambuddy import BambuddyClient

            s = self.settings
            self._bambuddy = BambuddyClient(
                s.bambuddy_base_url,
                s.bambuddy_api_key.get_secret_value(),
                timeout=s.http_timeout_seconds,
                transport=self._bambuddy_transport,
            )
        return self._bambuddy

    def inventree(self) -> InvenTreeClient:
        if self._inventree is None:
            from farmsync.clients.inventree import InvenTreeClient

            s = self.settings
            self._inventree = InvenTreeClient(
                s.inventree_root_url,
                s.inventree_token.get_secret_value(),
                timeout=s.http_timeout_seconds,
                web_url=s.inventree_browser_url,
                transport=self._inventree_transport,
            )
        return self._inventree

    async def aclose(self) -> None:
        for client in (self._bambuddy, self._inventree):
            if client is not None:
                await client.aclose()
        self._bambuddy = self._inventree = None
        if self._async_store is not None:
            await asyncio.to_thread(self._async_store.shutdown)
            self._async_store = None
        if self._store is not None:
            self._store.close()


_process_services: Services | None = None
_process_lock = threading.Lock()


def get_services() -> Services:
    """The process-wide services, from the environment and ``.env`` (ConfigError if invalid)."""
    global _process_services
    if _process_services is None:
        with _process_lock:
            if _process_services is None:
                settings = get_settings()
                configure_logs(settings.log_format, settings.log_level)
                _process_services = Services(settings)
    return _process_services


def set_services(services: Services | None) -> None:
    """Install the services a process uses (``farmsync serve``, the demo, tests)."""
    global _process_services
    _process_services = services
