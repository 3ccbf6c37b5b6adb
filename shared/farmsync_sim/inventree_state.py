"""InvenTree's data in memory: categories, locations, parts, stock, tracking, parameters, users and tokens.

Records are plain dicts keyed by pk (``farm.inventree.state.stock_items[4]["quantity"]``); every access from the
HTTP layer holds ``lock``. ``api_version`` selects the version-dependent behaviour (parameter layout, what
survives a depleted item); the thresholds are the constants below. The ``*_json`` methods give response shapes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from farmsync_sim.common import date_text, dump_records, load_records, minute_text, stable_hex, utcnow
from farmsync_sim.row_index import RowIndex

DEFAULT_API_VERSION = 530
GENERIC_PARAMETERS_API = 430  # /api/parameter/... replaces /api/part/parameter/... (PR #10699)
HISTORY_SURVIVES_API = 450  # tracking rows keep item=null and gain ``part`` and the part filter (PR #11260)
# Assumption: the structural-transfer error text changed together with the 450 tracking change.
STRUCTURAL_TEXT_API = 450
TOKEN_ME_API = 490  # /api/user/me/token/
TRANSFER_MERGE_API = 512  # per-item ``merge`` on transfers
# PR #12358 (mid-2026, "API 519 era"): the removal that empties an item is recorded too.
FINAL_REMOVAL_TRACKED_API = 519

BLANK_THUMBNAIL = "/static/img/blank_image.thumbnail.png"

STOCK_STATUS: dict[int, tuple[str, str, str]] = {
    10: ("OK", "OK", "success"),
    50: ("ATTENTION", "Attention needed", "warning"),
    55: ("DAMAGED", "Damaged", "warning"),
    60: ("DESTROYED", "Destroyed", "danger"),
    65: ("REJECTED", "Rejected", "danger"),
    70: ("LOST", "Lost", "dark"),
    75: ("QUARANTINED", "Quarantined", "info"),
    85: ("RETURNED", "Returned", "warning"),
}
AVAILABLE_STATUS = frozenset({10, 50, 55, 85})

TRACKING_LABELS = {
    1: "Stock item created",
    5: "Edited stock item",
    11: "Stock manually added",
    12: "Stock manually removed",
    20: "Location changed",
    25: "Stock updated",
    40: "Split from parent item",
    42: "Split child item",
    45: "Merged stock items",
}

PART_DEFAULTS: dict[str, Any] = {
    "IPN": None,
    "description": "",
    "category": None,
    "revision": "",
    "keywords": "",
    "link": "",
    "units": "",
    "notes": None,
    "active": True,
    # Flag defaults come from global settings on a fresh server (component and purchaseable on).
    "component": True,
    "trackable": False,
    "assembly": False,
    "purchaseable": True,
    "salable": False,
    "virtual": False,
    "is_template": False,
    "testable": False,
    "locked": False,
    "minimum_stock": 0.0,
    "default_location": None,
    "default_expiry": 0,
    "image": None,
    "creation_user": None,
}

CATEGORY_DEFAULTS: dict[str, Any] = {
    "description": "",
    "default_location": None,
    "default_keywords": None,
    "parent": None,
    "structural": False,
    "icon": "",
}

LOCATION_DEFAULTS: dict[str, Any] = {
    "description": "",
    "parent": None,
    "structural": False,
    "external": False,
    "icon": "",
    "owner": None,
    "location_type": None,
}

STOCK_DEFAULTS: dict[str, Any] = {
    "location": None,
    "batch": "",
    "status": 10,
    "notes": "",
    "serial": None,
    "delete_on_deplete": True,
    "packaging": "",
    "expiry_date": None,
    "purchase_price": None,
    "parent": None,
    "link": "",
}

TEMPLATE_DEFAULTS: dict[str, Any] = {
    "units": "",
    "description": "",
    "model_type": "part.part",
    "checkbox": False,
    "choices": "",
    "selectionlist": None,
    "enabled": True,
    "unique": 0,
}


def version_text(api_version: int) -> str:
    # Assumption: the "version" string shown next to apiVersion; only apiVersion is meant to be branched on.
    if api_version < GENERIC_PARAMETERS_API:
        return "1.2.0 dev"
    if api_version < 470:
        return "1.2.0"
    if api_version < 525:
        return "1.4.0"
    return "1.5.0 dev"


@dataclass
class InvenTreeState:
    """Everything the simulated InvenTree knows. Methods lock; direct dict access should hold ``lock``."""

    api_version: int = DEFAULT_API_VERSION
    categories: dict[int, dict[str, Any]] = field(default_factory=dict)
    locations: dict[int, dict[str, Any]] = field(default_factory=dict)
    parts: dict[int, dict[str, Any]] = field(default_factory=dict)
    stock_items: dict[int, dict[str, Any]] = field(default_factory=dict)
    tracking: dict[int, dict[str, Any]] = field(default_factory=dict)
    templates: dict[int, dict[str, Any]] = field(default_factory=dict)
    parameters: dict[int, dict[str, Any]] = field(default_factory=dict)
    part_images: dict[str, bytes] = field(default_factory=dict)
    users: dict[int, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _counters: dict[str, int] = field(default_factory=dict, repr=False)
    # Candidates for the filters clients send (see row_index.py); writers file rows after changing them.
    _stock_by_part: RowIndex = field(default_factory=lambda: RowIndex(lambda r: r["part"]), repr=False)
    _stock_by_batch: RowIndex = field(
        default_factory=lambda: RowIndex(lambda r: (r["batch"] or "").lower()), repr=False
    )
    _parts_by_ipn: RowIndex = field(
        default_factory=lambda: RowIndex(lambda r: (r["IPN"] or "").lower()), repr=False
    )
    _parts_by_identity: RowIndex = field(
        default_factory=lambda: RowIndex(lambda r: (r["name"], r["IPN"], r["revision"])), repr=False
    )
    _tracking_by_item: RowIndex = field(default_factory=lambda: RowIndex(lambda r: r["item"]), repr=False)
    _tracking_by_part: RowIndex = field(default_factory=lambda: RowIndex(lambda r: r["part"]), repr=False)
    _parts_by_image: RowIndex = field(default_factory=lambda: RowIndex(lambda r: r["image"]), repr=False)
    _parameters_by_model: RowIndex = field(
        default_factory=lambda: RowIndex(lambda r: (r["model_type"], r["model_id"])), repr=False
    )

    # ----------------------------------------------------------------- seed data

    def load(self, seed: dict[str, Any]) -> None:
        """Replace all data with ``seed`` (a scenario's ``inventree`` section); tracking starts from creation."""
        with self.lock:
            self.categories = {
                k: {**CATEGORY_DEFAULTS, **v}
                for k, v in load_records(seed.get("categories", []), "pk").items()
            }
            self.locations = {
                k: {**LOCATION_DEFAULTS, **v}
                for k, v in load_records(seed.get("locations", []), "pk").items()
            }
            now = utcnow()
            self.parts = {
                k: {"creation_date": now, **PART_DEFAULTS, **v}
                for k, v in load_records(seed.get("parts", []), "pk").items()
            }
            self.stock_items = {
                k: {"updated": now, **STOCK_DEFAULTS, **v, "quantity": float(v["quantity"])}
                for k, v in load_records(seed.get("stock_items", []), "pk").items()
            }
            self.templates = {
                k: {**TEMPLATE_DEFAULTS, **v}
                for k, v in load_records(seed.get("templates", []), "pk").items()
            }
            self.parameters = {
                k: {"note": "", "updated": now, "updated_by": None, **v}
                for k, v in load_records(seed.get("parameters", []), "pk").items()
            }
            self.tracking = {}
            self.part_images = {}
            self._counters = {}
            for item in sorted(self.stock_items.values(), key=lambda i: i["pk"]):
                deltas: dict[str, Any] = {"status": item["status"], "quantity": item["quantity"]}
                if item["location"] is not None:
                    deltas["location"] = item["location"]
                self.track(item, 1, deltas=deltas, at=item["updated"], user=None)

    def dump(self) -> dict[str, Any]:
        """The data as a JSON-ready seed. ``tracking`` is there to inspect; :meth:`load` rebuilds it instead."""
        with self.lock:
            return {
                "api_version": self.api_version,
                "categories": dump_records(self.categories),
                "locations": dump_records(self.locations),
                "parts": dump_records(self.parts),
                "stock_items": dump_records(self.stock_items),
                "templates": dump_records(self.templates),
                "parameters": dump_records(self.parameters),
                "tracking": dump_records(self.tracking),
            }

    # ----------------------------------------------------------------- users and tokens

    def add_user(
        self, username: str, password: str, *, roles: bool = True, staff: bool = True
    ) -> dict[str, Any]:
        """A user; ``roles=False`` makes one whose valid token still gets 403 everywhere."""
        with self.lock:
            pk = max(self.users, default=0) + 1
            user = {
                "pk": pk,
                "username": username,
                "password": password,
                "first_name": "",
                "last_name": "",
                "email": f"{username}@example.invalid",
                "is_staff": staff,
                "is_superuser": staff,
                "is_active": True,
                "roles": roles,
            }
            self.users[pk] = user
            return user

    def issue_token(self, user_pk: int, name: str = "farmsync", token: str | None = None) -> str:
        """An ``inv-<40 hex>-<yyyymmdd>`` token for a user; the same (user, name) gets the same token back."""
        with self.lock:
            for key, meta in self.tokens.items():
                if meta["user"] == user_pk and meta["name"] == name and token in (None, key):
                    return key
            expiry = (utcnow() + timedelta(days=365)).date()
            token = token or f"inv-{stable_hex('token', user_pk, name, len(self.tokens))}-{expiry:%Y%m%d}"
            self.tokens[token] = {"user": user_pk, "name": name, "expiry": expiry.isoformat()}
            return token

    def user_for_token(self, token: str) -> dict[str, Any] | None:
        with self.lock:
            meta = self.tokens.get(token)
            return self.users.get(meta["user"]) if meta else None

    # ----------------------------------------------------------------- ids, trees, clock

    def next_pk(self, table_name: str) -> int:
        """Primary keys are never reused, even after a delete (like a database sequence)."""
        with self.lock:
            if table_name not in self._counters:
                # The highest pk is read once (after a load); from then on every row is added through here.
                self._counters[table_name] = max(getattr(self, table_name), default=0)
            self._counters[table_name] += 1
            return self._counters[table_name]

    @staticmethod
    def descendants(table: dict[int, dict[str, Any]], pk: int) -> set[int]:
        """``pk`` and every node below it in a parent-linked tree."""
        found = {pk}
        changed = True
        while changed:
            changed = False
            for key, node in table.items():
                if key not in found and node.get("parent") in found:
                    found.add(key)
                    changed = True
        return found

    @staticmethod
    def path(table: dict[int, dict[str, Any]], pk: int) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = []
        node = table.get(pk)
        while node is not None and len(nodes) < 64:
            nodes.append(node)
            node = table.get(node.get("parent")) if node.get("parent") is not None else None
        return list(reversed(nodes))

    def pathstring(self, table: dict[int, dict[str, Any]], pk: int) -> str:
        return "/".join(n["name"] for n in self.path(table, pk))

    # ----------------------------------------------------------------- stock helpers

    @staticmethod
    def in_stock(item: dict[str, Any]) -> bool:
        return item["quantity"] > 0 and item["status"] in AVAILABLE_STATUS

    def track(
        self,
        item: dict[str, Any],
        code: int,
        *,
        notes: str = "",
        deltas: dict[str, Any] | None = None,
        at: datetime | None = None,
        user: int | None = 1,
        deleted: bool = False,
    ) -> dict[str, Any]:
        """Write a tracking entry for ``item`` (``deleted``: the item is gone, so ``item`` is null)."""
        with self.lock:
            entry = {
                "pk": self.next_pk("tracking"),
                "item": None if deleted else item["pk"],
                "part": item["part"],
                "date": at or utcnow(),
                "deltas": deltas or {},
                "notes": notes or "",
                "tracking_type": code,
                "user": user,
            }
            self.tracking[entry["pk"]] = entry
            self.file_tracking(entry)
            return entry

    def delete_stock_item(self, pk: int) -> None:
        """Delete an item; its history goes with it before API 450 and stays (item=null) from 450 on."""
        with self.lock:
            del self.stock_items[pk]
            self._stock_by_part.drop(self.stock_items, pk)
            self._stock_by_batch.drop(self.stock_items, pk)
            for key in sorted(self.tracking_pks(pk)):
                if self.api_version < HISTORY_SURVIVES_API:
                    del self.tracking[key]
                    self._tracking_by_item.drop(self.tracking, key)
                    self._tracking_by_part.drop(self.tracking, key)
                else:
                    self.tracking[key]["item"] = None
                    self.file_tracking(self.tracking[key])
            for item in self.stock_items.values():
                if item["parent"] == pk:
                    item["parent"] = None

    # ----------------------------------------------------------------- indexes

    def file_stock(self, item: dict[str, Any]) -> None:
        """Call after adding a stock item or changing its batch (its part never changes)."""
        with self.lock:
            self._stock_by_part.file(self.stock_items, item)
            self._stock_by_batch.file(self.stock_items, item)

    def file_part(self, part: dict[str, Any]) -> None:
        """Call after adding a part or changing its name, IPN, revision or image."""
        with self.lock:
            self._parts_by_ipn.file(self.parts, part)
            self._parts_by_identity.file(self.parts, part)
            self._parts_by_image.file(self.parts, part)

    def file_parameter(self, parameter: dict[str, Any]) -> None:
        """Call after adding a parameter (what it belongs to never changes)."""
        with self.lock:
            self._parameters_by_model.file(self.parameters, parameter)

    def file_tracking(self, entry: dict[str, Any]) -> None:
        """Call after adding a tracking entry or changing its item (its part never changes)."""
        with self.lock:
            self._tracking_by_item.file(self.tracking, entry)
            self._tracking_by_part.file(self.tracking, entry)

    @staticmethod
    def _rows(table: dict[int, dict[str, Any]], pks: set[int]) -> list[dict[str, Any]]:
        return [table[pk] for pk in sorted(pks) if pk in table]

    def stock_candidates(self, *, part: int | None = None, batch: str | None = None) -> list[dict[str, Any]]:
        """Stock items (pk order) that may have this part and this batch (case-insensitive); every item
        when neither is given. A superset: callers still apply their whole filter."""
        with self.lock:
            if part is None and not batch:
                return list(self.stock_items.values())
            groups = []
            if part is not None:
                groups.append(self._stock_by_part.pks(self.stock_items, part))
            if batch:
                groups.append(self._stock_by_batch.pks(self.stock_items, batch.lower()))
            return self._rows(self.stock_items, set.intersection(*groups))

    def part_candidates(self, *, ipn: str | None = None) -> list[dict[str, Any]]:
        """Parts (pk order) that may have this IPN (case-insensitive); every part when it is not given."""
        with self.lock:
            if not ipn:
                return list(self.parts.values())
            return self._rows(self.parts, self._parts_by_ipn.pks(self.parts, ipn.lower()))

    def parts_named(self, name: str, ipn: str | None, revision: str) -> list[dict[str, Any]]:
        """Parts that may have exactly this (name, IPN, revision): the set that must be unique."""
        with self.lock:
            return self._rows(self.parts, self._parts_by_identity.pks(self.parts, (name, ipn, revision)))

    def parts_with_image(self, image: str) -> list[dict[str, Any]]:
        """Parts that may show this image file."""
        with self.lock:
            return self._rows(self.parts, self._parts_by_image.pks(self.parts, image))

    def parameters_of(self, model_type: str | None, model_id: int | None) -> list[dict[str, Any]]:
        """Parameters (pk order) that may belong to this model row."""
        with self.lock:
            return self._rows(
                self.parameters, self._parameters_by_model.pks(self.parameters, (model_type, model_id))
            )

    def tracking_pks(self, item_pk: int) -> set[int]:
        """Tracking entries of a stock item."""
        with self.lock:
            pks = self._tracking_by_item.pks(self.tracking, item_pk)
            return {pk for pk in pks if pk in self.tracking and self.tracking[pk]["item"] == item_pk}

    def tracking_candidates(
        self, *, item: int | None = None, part: int | None = None
    ) -> list[dict[str, Any]]:
        """Tracking entries (pk order) that may belong to this item and this part; all when neither is given."""
        with self.lock:
            if item is None and part is None:
                return list(self.tracking.values())
            groups = []
            if item is not None:
                groups.append(self._tracking_by_item.pks(self.tracking, item))
            if part is not None:
                groups.append(self._tracking_by_part.pks(self.tracking, part))
            return self._rows(self.tracking, set.intersection(*groups))

    # ----------------------------------------------------------------- response shapes

    @staticmethod
    def image_urls(image: str | None) -> tuple[str | None, str]:
        if not image:
            return None, BLANK_THUMBNAIL
        path = PurePosixPath(image)
        return f"/media/{image}", f"/media/{path.with_name(path.stem + '.thumbnail' + path.suffix)}"

    def full_name(self, part: dict[str, Any]) -> str:
        text = f"{part['IPN']} | {part['name']}" if part["IPN"] else part["name"]
        return f"{text} | {part['revision']}" if part["revision"] else text

    def part_stock(self, part_pk: int) -> tuple[float, int]:
        items = [i for i in self.stock_candidates(part=part_pk) if i["part"] == part_pk and self.in_stock(i)]
        return sum(i["quantity"] for i in items), len(items)

    def part_json(self, part: dict[str, Any], *, parameters: bool = False) -> dict[str, Any]:
        with self.lock:
            image, thumbnail = self.image_urls(part["image"])
            category = self.categories.get(part["category"]) if part["category"] is not None else None
            quantity, count = self.part_stock(part["pk"])
            out = {
                "pk": part["pk"],
                "name": part["name"],
                "IPN": part["IPN"],
                "description": part["description"],
                "category": part["category"],
                "category_name": category["name"] if category else None,
                "full_name": self.full_name(part),
                "revision": part["revision"],
                "revision_of": None,
                "variant_of": None,
                "keywords": part["keywords"],
                "link": part["link"],
                "units": part["units"],
                "notes": part["notes"],
                "image": image,
                "thumbnail": thumbnail,
                "active": part["active"],
                "component": part["component"],
                "trackable": part["trackable"],
                "assembly": part["assembly"],
                "purchaseable": part["purchaseable"],
                "salable": part["salable"],
                "virtual": part["virtual"],
                "is_template": part["is_template"],
                "testable": part["testable"],
                "locked": part["locked"],
                "starred": False,
                "minimum_stock": part["minimum_stock"],
                "default_location": part["default_location"],
                "default_expiry": part["default_expiry"],
                "barcode_hash": "",
                "creation_date": date_text(part["creation_date"]),
                "creation_user": part["creation_user"],
                "responsible": None,
                "tags": [],
                "in_stock": quantity,
                "total_in_stock": quantity,
                "unallocated_stock": quantity,
                "stock_item_count": count,
                "external_stock": 0.0,
                "ordering": 0.0,
                "building": 0.0,
                "allocated_to_build_orders": 0.0,
                "allocated_to_sales_orders": 0.0,
                "required_for_build_orders": 0.0,
                "required_for_sales_orders": 0.0,
                "pricing_min": None,
                "pricing_max": None,
            }
            if parameters:
                rows = [
                    p
                    for p in self.parameters_of("part.part", part["pk"])
                    if p["model_type"] == "part.part" and p["model_id"] == part["pk"]
                ]
                out["parameters"] = [self.parameter_json(p) for p in sorted(rows, key=lambda p: p["pk"])]
            return out

    def part_brief(self, part: dict[str, Any]) -> dict[str, Any]:
        """``part_detail`` inside stock responses."""
        image, thumbnail = self.image_urls(part["image"])
        return {
            "pk": part["pk"],
            "IPN": part["IPN"],
            "name": part["name"],
            "full_name": self.full_name(part),
            "description": part["description"],
            "category": part["category"],
            "image": image,
            "thumbnail": thumbnail,
            "units": part["units"],
            "active": part["active"],
            "assembly": part["assembly"],
            "is_template": part["is_template"],
            "purchaseable": part["purchaseable"],
            "salable": part["salable"],
            "trackable": part["trackable"],
            "virtual": part["virtual"],
            "testable": part["testable"],
            "revision": part["revision"],
            "pricing_min": None,
            "pricing_max": None,
        }

    def category_json(self, category: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            below = self.descendants(self.categories, category["pk"])
            parent = self.categories.get(category["parent"]) if category["parent"] is not None else None
            return {
                "pk": category["pk"],
                "name": category["name"],
                "description": category["description"],
                "default_location": category["default_location"],
                "default_keywords": category["default_keywords"],
                "level": len(self.path(self.categories, category["pk"])) - 1,
                "parent": category["parent"],
                "part_count": sum(1 for p in self.parts.values() if p["category"] in below),
                "subcategories": len(below) - 1,
                "pathstring": self.pathstring(self.categories, category["pk"]),
                "starred": False,
                "structural": category["structural"],
                "icon": category["icon"],
                "parent_default_location": parent["default_location"] if parent else None,
            }

    def location_brief(self, location: dict[str, Any]) -> dict[str, Any]:
        return {
            "pk": location["pk"],
            "name": location["name"],
            "pathstring": self.pathstring(self.locations, location["pk"]),
        }

    def location_json(self, location: dict[str, Any], *, path_detail: bool = False) -> dict[str, Any]:
        with self.lock:
            below = self.descendants(self.locations, location["pk"])
            out = {
                "pk": location["pk"],
                "barcode_hash": "",
                "name": location["name"],
                "level": len(self.path(self.locations, location["pk"])) - 1,
                "description": location["description"],
                "parent": location["parent"],
                "pathstring": self.pathstring(self.locations, location["pk"]),
                "items": sum(1 for i in self.stock_items.values() if i["location"] in below),
                "sublocations": len(below) - 1,
                "owner": location["owner"],
                "icon": location["icon"],
                "custom_icon": location["icon"] or None,
                "structural": location["structural"],
                "external": location["external"],
                "location_type": location["location_type"],
                "location_type_detail": None,
                "tags": [],
            }
            if path_detail:
                out["path"] = [
                    {"pk": n["pk"], "name": n["name"], "icon": n["icon"]}
                    for n in self.path(self.locations, location["pk"])
                ]
            return out

    def stock_json(
        self,
        item: dict[str, Any],
        *,
        part_detail: bool = False,
        location_detail: bool = False,
        tracking_count: bool = True,
    ) -> dict[str, Any]:
        with self.lock:
            status = item["status"]
            out: dict[str, Any] = {
                "pk": item["pk"],
                "part": item["part"],
                "quantity": float(item["quantity"]),
                "serial": item["serial"],
                "batch": item["batch"],
                "location": item["location"],
                "belongs_to": None,
                "build": None,
                "consumed_by": None,
                "customer": None,
                "delete_on_deplete": item["delete_on_deplete"],
                "expiry_date": item["expiry_date"],
                "in_stock": self.in_stock(item),
                "is_building": False,
                "link": item["link"],
                "notes": item["notes"],
                "owner": None,
                "packaging": item["packaging"],
                "parent": item["parent"],
                "purchase_order": None,
                "purchase_price": item["purchase_price"],
                "purchase_price_currency": "",
                "sales_order": None,
                "status": status,
                "status_text": STOCK_STATUS.get(status, ("OK", "OK", ""))[1],
                "status_custom_key": status,
                "supplier_part": None,
                "SKU": None,
                "MPN": None,
                "barcode_hash": "",
                "updated": minute_text(item["updated"]),
                "stocktake_date": None,
                "tracking_items": len(self.tracking_pks(item["pk"])) if tracking_count else None,
                "stale": False,
                "expired": False,
                "allocated": 0.0,
                "tags": [],
            }
            if part_detail:
                part = self.parts.get(item["part"])
                out["part_detail"] = self.part_brief(part) if part else None
            if location_detail:
                location = self.locations.get(item["location"]) if item["location"] is not None else None
                out["location_detail"] = self.location_brief(location) if location else None
            return out

    def tracking_json(
        self,
        entry: dict[str, Any],
        *,
        item_detail: bool = False,
        part_detail: bool = False,
        user_detail: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {"pk": entry["pk"], "item": entry["item"]}
            if self.api_version >= HISTORY_SURVIVES_API:
                out["part"] = entry["part"]
            out.update(
                {
                    "date": minute_text(entry["date"]),
                    "deltas": dict(entry["deltas"]),
                    "label": TRACKING_LABELS.get(entry["tracking_type"], ""),
                    "notes": entry["notes"],
                    "tracking_type": entry["tracking_type"],
                    "user": entry["user"],
                }
            )
            if item_detail:
                item = self.stock_items.get(entry["item"]) if entry["item"] is not None else None
                out["item_detail"] = self.stock_json(item) if item else None
            if part_detail:
                part = self.parts.get(entry["part"])
                out["part_detail"] = self.part_brief(part) if part else None
            if user_detail:
                out["user_detail"] = self.user_brief(entry["user"])
            return out

    def user_brief(self, pk: int | None) -> dict[str, Any] | None:
        user = self.users.get(pk) if pk is not None else None
        if user is None:
            return None
        return {k: user[k] for k in ("pk", "username", "first_name", "last_name", "email")}

    def template_json(self, template: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            out = {
                "pk": template["pk"],
                "name": template["name"],
                "units": template["units"],
                "description": template["description"],
            }
            if self.api_version >= GENERIC_PARAMETERS_API:
                out["model_type"] = template["model_type"]
            else:
                out["parts"] = sum(1 for p in self.parameters.values() if p["template"] == template["pk"])
            out.update(
                {
                    "checkbox": template["checkbox"],
                    "choices": template["choices"],
                    "selectionlist": template["selectionlist"],
                }
            )
            if self.api_version >= GENERIC_PARAMETERS_API:
                out.update({"enabled": template["enabled"], "unique": template["unique"]})
            return out

    def parameter_json(self, parameter: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            template = self.templates.get(parameter["template"])
            out: dict[str, Any] = {"pk": parameter["pk"]}
            if self.api_version >= GENERIC_PARAMETERS_API:
                out.update(
                    {
                        "template": parameter["template"],
                        "model_type": parameter["model_type"],
                        "model_id": parameter["model_id"],
                    }
                )
            else:
                out.update({"part": parameter["model_id"], "template": parameter["template"]})
            updated = parameter["updated"]
            out.update(
                {
                    "template_detail": self.template_json(template) if template else None,
                    "data": parameter["data"],
                    "data_numeric": parameter["data_numeric"],
                    "note": parameter["note"],
                    # Assumption: DRF's ISO form with Z for this DateTimeField.
                    "updated": updated.isoformat() + "Z" if isinstance(updated, datetime) else updated,
                    "updated_by": parameter["updated_by"],
                    "updated_by_detail": self.user_brief(parameter["updated_by"]),
                }
            )
            return out
