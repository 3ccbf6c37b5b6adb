"""What farmsync reads from InvenTree (see /work/shared/reference/inventree-api.md).

Liberal on purpose: unknown fields are ignored, most fields are nullable, and both parameter layouts (legacy
``part`` and generic ``model_type``/``model_id``) parse into one :class:`PartParameter`.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from farmsync.clients.parsing import FloatOrZero
from farmsync.clients.timeutil import UtcDatetime

GENERIC_PARAMETERS_API = 430
"""From this API version parameters live at ``/api/parameter/`` (PR #10699); 429 is still legacy."""
TRACKING_BY_PART_API = 450
"""From this API version tracking rows survive item deletion and ``/api/stock/track/`` filters by ``part``."""
WEB_PREFIX_API = 327
"""From this API version the part page is ``/web/part/<pk>/`` (326 may still say ``/platform/``)."""


class StockStatus(IntEnum):
    """Built-in stock status codes. Send them as JSON integers: a string or unknown code silently becomes OK."""

    OK = 10
    ATTENTION = 50
    DAMAGED = 55
    DESTROYED = 60
    REJECTED = 65
    LOST = 70
    QUARANTINED = 75
    RETURNED = 85


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, defer_build=True)


class ServerInfo(_Model):
    """``GET /api/``: ``api_version`` is the integer to branch on; ``version`` is free text."""

    server: str | None = None
    version: str | None = None
    instance: str | None = None
    api_version: int | None = Field(default=None, alias="apiVersion")


class PartDetail(_Model):
    """The nested ``part_detail`` of a stock item."""

    pk: int
    ipn: str | None = Field(default=None, alias="IPN")
    name: str | None = None
    full_name: str | None = None
    description: str | None = None
    image: str | None = None
    thumbnail: str | None = None
    units: str | None = None


class Part(_Model):
    pk: int
    name: str
    ipn: str | None = Field(default=None, alias="IPN")
    description: str | None = None
    category: int | None = None
    category_name: str | None = None
    full_name: str | None = None
    revision: str | None = None
    image: str | None = None
    thumbnail: str | None = None
    units: str | None = None
    active: bool | None = None
    component: bool | None = None
    trackable: bool | None = None
    assembly: bool | None = None
    purchaseable: bool | None = None
    salable: bool | None = None
    virtual: bool | None = None
    in_stock: float | None = None
    total_in_stock: float | None = None
    link: str | None = None
    keywords: str | None = None
    creation_date: str | None = None

    @property
    def has_image(self) -> bool:
        """``image`` is null without one (``thumbnail`` is never null: it points at a blank image)."""
        return bool(self.image)


class PartCategory(_Model):
    pk: int
    name: str
    description: str | None = None
    parent: int | None = None
    pathstring: str | None = None
    level: int | None = None
    structural: bool = False
    default_location: int | None = None
    part_count: int | None = None


class StockLocation(_Model):
    """``structural`` locations cannot hold stock: creating or moving stock there gives 400."""

    pk: int
    name: str
    description: str | None = None
    parent: int | None = None
    pathstring: str | None = None
    level: int | None = None
    structural: bool = False
    external: bool | None = None
    items: int | None = None


class LocationDetail(_Model):
    pk: int
    name: str | None = None
    pathstring: str | None = None


class StockItem(_Model):
    pk: int
    part: int
    quantity: FloatOrZero = 0.0
    batch: str | None = None
    serial: str | None = None
    location: int | None = None
    status: int | None = None
    status_text: str | None = None
    notes: str | None = None
    in_stock: bool | None = None
    delete_on_deplete: bool | None = None
    updated: UtcDatetime = None
    part_detail: PartDetail | None = None
    location_detail: LocationDetail | None = None


class ParameterTemplate(_Model):
    pk: int
    name: str
    units: str | None = None
    description: str | None = None
    model_type: str | None = None
    checkbox: bool | None = None
    choices: str | None = None


class PartParameter(_Model):
    """A part parameter in either layout. :attr:`part_pk` reads ``part`` (legacy) or ``model_id`` (generic)."""

    pk: int
    template: int
    data: str | None = None
    data_numeric: float | None = None
    note: str | None = None
    part: int | None = None
    model_type: str | None = None
    model_id: int | None = None
    updated: UtcDatetime = None
    template_detail: ParameterTemplate | None = None

    @property
    def part_pk(self) -> int | None:
        return self.part if self.part is not None else self.model_id


class AdjustedItem(_Model):
    """One item echoed by remove/transfer. ``pk`` is None when a removal depleted and deleted the item."""

    pk: int | None = None
    quantity: float | None = None
    status: int | None = None


class StockAdjustment(_Model):
    """The echo of ``/api/stock/remove/`` or ``/transfer/`` (InvenTree returns no stock items)."""

    items: list[AdjustedItem] = Field(default_factory=list)
    notes: str | None = None
    location: int | None = None


class StockTrackingEntry(_Model):
    """A stock history row. ``item`` is None once the item was deleted (API ≥ 450 keeps the row)."""

    pk: int
    item: int | None = None
    part: int | None = None
    date: UtcDatetime = None
    deltas: dict[str, Any] | None = None
    label: str | None = None
    notes: str | None = None
    tracking_type: int | None = None
    user: int | None = None


class InvenTreeProbe(_Model):
    """What ``/validate`` learns from one look at InvenTree. ``missing_roles`` lists ``"stock.add"``-style needs."""

    reachable: bool
    version: str | None = None
    api_version: int | None = None
    token_valid: bool | None = None
    username: str | None = None
    missing_roles: list[str] = Field(default_factory=list)
    parameter_layout: str | None = None
    problems: list[str] = Field(default_factory=list)
