"""Planned writes and the one executor that performs them, or only lists them in a dry run.

Every change the filament steps make to Bambuddy or InvenTree is built as a :class:`Write` first (system,
method, wire path, JSON body). A dry run returns exactly these objects; a real run sends exactly these bodies,
so what a dry run shows is what a real run does (given the same state).
"""

from __future__ import annotations

from typing import Any, Literal

import httpx
from pydantic import BaseModel

from farmsync.clients.bambuddy import BambuddyClient
from farmsync.clients.inventree import NOTES_MAX, InvenTreeClient, decimal_text, truncate

System = Literal["bambuddy", "inventree"]


class Write(BaseModel):
    """One write to an upstream. ``path`` is the full URL path as sent (``/api/v1/inventory/spools``)."""

    system: System
    method: Literal["POST", "PATCH"]
    path: str
    body: dict[str, Any]
    purpose: str = ""


class Executor:
    """Performs writes (``dry_run`` False) or only records them; ``writes`` lists both kinds in order."""

    def __init__(self, bambuddy: BambuddyClient, inventree: InvenTreeClient, *, dry_run: bool) -> None:
        self.bambuddy = bambuddy
        self.inventree = inventree
        self.dry_run = dry_run
        self.writes: list[Write] = []

    def prefix(self, system: System) -> str:
        client = self.bambuddy if system == "bambuddy" else self.inventree
        return httpx.URL(client.http.base_url).path.rstrip("/")

    def write(
        self, system: System, method: Literal["POST", "PATCH"], path: str, body: dict[str, Any], purpose: str
    ) -> Write:
        """A Write for ``path`` relative to the client's base (``/inventory/spools``, ``/api/stock/remove/``)."""
        return Write(
            system=system, method=method, path=self.prefix(system) + path, body=body, purpose=purpose
        )

    async def run(self, write: Write) -> Any:
        """Send ``write`` and return the decoded answer; in a dry run record it and return None."""
        self.writes.append(write)
        if self.dry_run:
            return None
        return await self.send_again(write)

    async def send_again(self, write: Write) -> Any:
        """Send a write :meth:`run` already recorded (a retry after InvenTree refused and rolled it back)."""
        client = self.bambuddy if write.system == "bambuddy" else self.inventree
        relative = write.path[len(self.prefix(write.system)) :]
        return await client.http.request_json(write.method, relative, json=write.body)


# --- the bodies, built once here so dry and real runs agree ------------------------------------------------------


def remove_body(item: int, quantity: float, notes: str) -> dict[str, Any]:
    """``POST /api/stock/remove/``: the key is ``notes`` (``note`` is silently ignored), ≤ 5 decimals."""
    return {
        "items": [{"pk": int(item), "quantity": decimal_text(quantity)}],
        "notes": truncate(notes, NOTES_MAX),
    }


def transfer_body(item: int, quantity: float, location: int, notes: str) -> dict[str, Any]:
    """``POST /api/stock/transfer/`` of the whole quantity: a partial one would split the item into a new pk."""
    return {
        "items": [{"pk": int(item), "quantity": decimal_text(quantity)}],
        "location": int(location),
        "notes": truncate(notes, NOTES_MAX),
    }
