"""One pooled client per system and credentials per process.

Connection pools belong to the event loop that opened them: a client cached under one loop and used under
another (``asyncio.run`` per request in a Cloud Function) fails. So each cached client remembers its loop and
is replaced, without awaiting anything on the dead loop, when asked for under a different one.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, TypeVar

import httpx

from farmsync.clients.bambuddy import BambuddyClient, normalise_base
from farmsync.clients.inventree import InvenTreeClient, normalise_root

Client = BambuddyClient | InvenTreeClient
C = TypeVar("C", BambuddyClient, InvenTreeClient)

_CLIENTS: dict[tuple[Any, ...], tuple[Client, asyncio.AbstractEventLoop | None]] = {}


def get_bambuddy(
    base_url: str,
    api_key: str = "",
    *,
    timeout: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> BambuddyClient:
    """The process's client for this Bambuddy and key (the key is keyed by hash, never stored twice)."""
    key = ("bambuddy", normalise_base(base_url), _hash(api_key), timeout, id(transport))
    client = _cached(key, BambuddyClient)
    if client is None:
        client = BambuddyClient(base_url, api_key, timeout=timeout, transport=transport)
        _store(key, client)
    return client


def get_inventree(
    base_url: str,
    token: str = "",
    *,
    timeout: float = 30.0,
    web_url: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> InvenTreeClient:
    """The process's client for this InvenTree and token."""
    key = ("inventree", normalise_root(base_url), _hash(token), timeout, web_url or "", id(transport))
    client = _cached(key, InvenTreeClient)
    if client is None:
        client = InvenTreeClient(base_url, token, timeout=timeout, web_url=web_url, transport=transport)
        _store(key, client)
    return client


async def aclose_all() -> None:
    """Close every cached client that belongs to the running loop and forget all of them."""
    loop = _running_loop()
    entries = list(_CLIENTS.values())
    _CLIENTS.clear()
    for client, owner in entries:
        if owner is None or owner is loop:
            await client.aclose()


def _cached(key: tuple[Any, ...], kind: type[C]) -> C | None:
    entry = _CLIENTS.get(key)
    if entry is None:
        return None
    client, owner = entry
    if not isinstance(client, kind):  # the key names the system, so this never happens
        return None
    loop = _running_loop()
    if client.http.is_closed or (owner is not None and loop is not None and owner is not loop):
        del _CLIENTS[key]
        return None
    if owner is None and loop is not None:
        _CLIENTS[key] = (client, loop)
    return client


def _store(key: tuple[Any, ...], client: Client) -> None:
    _CLIENTS[key] = (client, _running_loop())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]
