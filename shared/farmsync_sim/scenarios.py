"""Seeded farm scenarios: what Bambuddy and InvenTree hold when a simulated farm starts.

``make_scenario(runs=500, repeat_ratio=0.5, seed=1)`` builds one deterministically (same seed, same data);
``small`` and ``large`` are named presets, and a JSON file (``Scenario.to_json``) can be loaded instead.
A scenario includes, on purpose, the situations farmsync must handle: reprints of one archive (several
print-log runs, one archive id), separate archives sharing a content_hash, failed/cancelled runs, an upload
that is not a print, archives without a thumbnail, spools matched by ``batch == tag_uid``, one InvenTree spool
Bambuddy doesn't know, one Bambuddy spool InvenTree doesn't know, one loaded spool InvenTree still has in
storage, and usage rows not yet subtracted in InvenTree.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from farmsync_sim.bambuddy_state import BambuddyState
from farmsync_sim.common import stable_hex

SCENARIO_DIR = Path(__file__).parent / "scenarios"
START = datetime(2026, 1, 5, 8, 0, 0)

PRINTER_MODELS = [
    ("B1-X1-CARBON", "X1C"),
    ("B2-P1S", "P1S"),
    ("B3-A1", "A1"),
    ("B4-X1-CARBON", "X1C"),
    ("B5-P1S", "P1S"),
    ("B6-H2D", "H2D"),
    ("B7-P1S", "P1S"),
    ("B8-X1-CARBON", "X1C"),
]
# A printer with no slot in the location map; its name sorts before the others.
SPARE_PRINTER = ("A0-A1-MINI", "A1MINI")

FILAMENTS = [
    ("PLA", "Basic", "Black", "000000FF"),
    ("PLA", "Basic", "White", "FFFFFFFF"),
    ("PETG", "HF", "Red", "C12E1FFF"),
    ("PLA", "Matte", "Charcoal", "333333FF"),
    ("PETG", "HF", "Blue", "0A2989FF"),
    ("PLA", "Basic", "Orange", "FF6A13FF"),
    ("PLA", "Silk", "Gold", "E4BD68FF"),
    ("PETG", "Basic", "Translucent", "FFFFFF80"),
]

PART_NAMES = [
    "3DBenchy",
    "Cable_clip",
    "Hinge_pin",
    "Phone stand",
    "Gear_24T",
    "Spool holder",
    "Wall bracket",
    "Control knob",
    "Coat_hook",
    "Enclosure lid",
    "Fan duct",
    "Drawer label",
]
FAILURE_REASONS = ["Spaghetti detected", "Filament runout", "Bed adhesion lost", None]


@dataclass
class Scenario:
    """Seed data for both servers plus the ids and facts a user (or test) needs to point farmsync at them.

    ``ids`` uses farmsync's settings names (``INVENTREE_PART_CATEGORY_ID``, ...). ``facts`` names the special
    cases built in (e.g. ``missing_in_bambuddy_batch``).
    """

    name: str
    seed: int
    bambuddy: dict[str, Any]
    inventree: dict[str, Any]
    ids: dict[str, Any] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Scenario:
        return cls(
            name=str(data.get("name", "custom")),
            seed=int(data.get("seed", 0)),
            bambuddy=dict(data.get("bambuddy", {})),
            inventree=dict(data.get("inventree", {})),
            ids=dict(data.get("ids", {})),
            facts=dict(data.get("facts", {})),
        )


def load_scenario(path: str | Path) -> Scenario:
    """A scenario saved with :meth:`Scenario.to_json` (or written by hand in the same shape)."""
    return Scenario.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def scenario_by_name(name: str | Path, seed: int = 1) -> Scenario:
    """``small``, ``large``, a file in ``sim/scenarios/`` by stem, or a path to a JSON scenario."""
    if name == "small":
        return make_scenario(name="small", runs=12, repeat_ratio=0.3, seed=seed, printers=4, spools=6)
    if name == "large":
        return make_scenario(name="large", runs=500, repeat_ratio=0.5, seed=seed, printers=6, spools=16)
    bundled = SCENARIO_DIR / f"{name}.json"
    return load_scenario(bundled if bundled.exists() else Path(name))


def make_scenario(
    *,
    runs: int = 12,
    repeat_ratio: float = 0.3,
    seed: int = 1,
    printers: int = 4,
    spools: int = 6,
    name: str = "custom",
    start: datetime = START,
) -> Scenario:
    """A deterministic farm with ``runs`` print-log runs on ``printers`` printers (plus a spare) and ``spools``.

    ``repeat_ratio`` is the share of runs that repeat an earlier part: half of them are reprints of an existing
    archive (same archive id, new run), half are new archives with an existing content_hash.
    """
    if not 1 <= printers <= len(PRINTER_MODELS) or spools < 3 or runs < 0 or not 0 <= repeat_ratio <= 1:
        raise ValueError("need 1..8 printers, at least 3 spools, runs >= 0 and repeat_ratio within 0..1")
    rng = random.Random(seed)
    buddy = BambuddyState()
    _add_printers(buddy, printers, seed, start)
    inventree, ids, facts = _inventree_layout(printers)
    _add_spools(buddy, inventree, ids, facts, spools, seed, start, rng)
    _add_runs(buddy, runs, repeat_ratio, printers, rng, start + timedelta(hours=2))
    facts["print_log_runs"] = runs
    facts["archives"] = len(buddy.archives)
    return Scenario(name=name, seed=seed, bambuddy=buddy.dump(), inventree=inventree, ids=ids, facts=facts)


def _add_printers(buddy: BambuddyState, count: int, seed: int, start: datetime) -> None:
    for index, (printer_name, model) in enumerate([*PRINTER_MODELS[:count], SPARE_PRINTER], start=1):
        buddy.printers[index] = {
            "id": index,
            "name": printer_name,
            "serial_number": f"01P00A{stable_hex('serial', seed, index, length=9).upper()}",
            "ip_address": f"192.0.2.{10 + index}",
            "model": model,
            "nozzle_count": 2 if model == "H2D" else 1,
            "created_at": start - timedelta(days=30, minutes=index),
            "updated_at": start - timedelta(days=30, minutes=index),
        }


def _inventree_layout(printers: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Categories, locations and templates; stock and filament parts are added with the spools."""
    categories = [
        {"pk": 1, "name": "Printed parts", "description": "Parts printed by the farm"},
        {"pk": 2, "name": "Filament", "description": "3D printer filament"},
        {"pk": 3, "name": "PLA", "description": "PLA filament", "parent": 2},
        {"pk": 4, "name": "PETG", "description": "PETG filament", "parent": 2},
        {"pk": 5, "name": "Library", "description": "Structural: holds categories only", "structural": True},
    ]
    locations: list[dict[str, Any]] = [
        {"pk": 1, "name": "Storage", "description": "Filament storage root"},
        {"pk": 2, "name": "Filament shelf", "description": "Spare spools", "parent": 1},
        {"pk": 3, "name": "Printers", "description": "Loaded in printers", "structural": True},
    ]
    printer_locations: dict[str, int] = {}
    for index, (printer_name, _model) in enumerate(PRINTER_MODELS[:printers], start=4):
        prefix = printer_name.split("-", 1)[0]
        locations.append(
            {"pk": index, "name": prefix, "description": f"Loaded in {printer_name}", "parent": 3}
        )
        printer_locations[prefix] = index
    output = len(locations) + 1
    locations.append({"pk": output, "name": "Print output", "description": "Finished prints"})
    templates = [
        {"pk": 1, "name": "Weight", "units": "g", "description": "Printed weight in grams"},
        # PrintTime has no units: it takes any text ("5025" or "1h 23m"), like the verified server's template.
        {"pk": 2, "name": "PrintTime", "units": "", "description": "Print time in seconds"},
    ]
    inventree: dict[str, Any] = {
        "categories": categories,
        "locations": locations,
        "templates": templates,
        "parts": [],
        "stock_items": [],
        "parameters": [],
    }
    ids: dict[str, Any] = {
        "INVENTREE_PART_CATEGORY_ID": 1,
        "INVENTREE_STOCK_LOCATION_ID": output,
        "FILAMENT_PART_CATEGORY_ID": 2,
        "FILAMENT_STORAGE_LOCATION_ID": 1,
        "FILAMENT_LOADED_LOCATION_ID": 3,
        "FILAMENT_PRINTER_LOCATION_MAP": ",".join(f"{k}:{v}" for k, v in printer_locations.items()),
        "WEIGHT_TEMPLATE_ID": 1,
        "PRINTTIME_TEMPLATE_ID": 2,
        "STRUCTURAL_CATEGORY_ID": 5,
        "FILAMENT_SHELF_LOCATION_ID": 2,
    }
    return inventree, ids, {"printer_locations": printer_locations}


def _add_spools(
    buddy: BambuddyState,
    inventree: dict[str, Any],
    ids: dict[str, Any],
    facts: dict[str, Any],
    count: int,
    seed: int,
    start: datetime,
    rng: random.Random,
) -> None:
    """Bambuddy spools and the InvenTree stock whose batch is each spool's tag_uid, with the planned mismatches."""
    parts: dict[tuple[str, str, str], int] = {}
    printer_locations: dict[str, int] = facts["printer_locations"]
    loaded_printers = [
        p for p in sorted(buddy.printers) if buddy.printers[p]["name"].split("-", 1)[0] in printer_locations
    ]
    stock_pk = 0
    for index in range(count):
        material, subtype, color, rgba = FILAMENTS[index % len(FILAMENTS)]
        key = (material, subtype, color)
        if key not in parts:
            parts[key] = len(parts) + 1
            inventree["parts"].append(
                {
                    "pk": parts[key],
                    "name": f"Bambu {material} {subtype} {color}",
                    "IPN": f"FIL-{material}-{subtype}-{color}".upper(),
                    "description": f"Bambu Lab {material} {subtype}, {color}, 1 kg spool",
                    "category": 3 if material == "PLA" else 4,
                    "units": "g",
                    "component": True,
                    "purchaseable": True,
                    "creation_date": (start - timedelta(days=60)).isoformat(),
                }
            )
        spool_id = index + 1
        tag = stable_hex("tag", seed, index, length=16).upper()
        used = float(rng.randrange(0, 600, 5))
        created = start - timedelta(days=20, hours=index)
        buddy.spools[spool_id] = {
            "id": spool_id,
            "material": material,
            "subtype": subtype,
            "brand": "Bambu Lab",
            "color_name": color,
            "rgba": rgba,
            "label_weight": 1000,
            "core_weight": 250,
            "weight_used": used,
            "cost_per_kg": 24.99,
            "tag_uid": tag,
            "tray_uuid": stable_hex("tray", seed, index, length=32).upper(),
            "data_origin": "rfid_auto",
            "tag_type": "bambu",
            "created_at": created,
            "updated_at": created,
        }
        slot_printer = loaded_printers[index] if index < min(len(loaded_printers), count - 2) else None
        if slot_printer is not None:
            buddy.assignments[len(buddy.assignments) + 1] = {
                "id": len(buddy.assignments) + 1,
                "spool_id": spool_id,
                "printer_id": slot_printer,
                "ams_id": 0,
                "tray_id": 0,
                "fingerprint_color": rgba,
                "fingerprint_type": material,
                "created_at": created + timedelta(days=1),
            }
        if index == count - 1:
            facts["missing_in_inventree_tag"] = tag
            continue
        location = 2
        if slot_printer is not None:
            location = printer_locations[buddy.printers[slot_printer]["name"].split("-", 1)[0]]
            if index == 1:
                # Loaded in Bambuddy but still on the shelf in InvenTree: location sync has work to do.
                location = 2
                facts["misplaced_spool_tag"] = tag
        stock_pk += 1
        inventree["stock_items"].append(
            {
                "pk": stock_pk,
                "part": parts[key],
                "quantity": 1000.0 - used,
                "batch": tag,
                "location": location,
                "status": 10,
                "updated": created.isoformat(),
            }
        )
    orphan = stable_hex("orphan", seed, length=16).upper()
    inventree["stock_items"].append(
        {
            "pk": stock_pk + 1,
            "part": 1,
            "quantity": 1000.0,
            "batch": orphan,
            "location": 2,
            "status": 10,
            "updated": (start - timedelta(days=5)).isoformat(),
        }
    )
    facts["missing_in_bambuddy_batch"] = orphan
    facts.pop("printer_locations")
    ids["FILAMENT_SHELF_LOCATION_ID"] = 2


def _add_runs(
    buddy: BambuddyState, runs: int, repeat_ratio: float, printers: int, rng: random.Random, start: datetime
) -> None:
    """Print-log runs in time order, with reprints, shared content hashes, failures and a few uploads."""
    at = start
    printer_ids = list(range(1, printers + 1))
    prints: list[int] = []
    new_parts = 0
    uploads_every = 10
    for index in range(runs):
        at += timedelta(minutes=rng.randrange(20, 240))
        if index % uploads_every == uploads_every - 1:
            buddy.add_upload(
                f"Upload {index // uploads_every + 1}", thumbnail=False, at=at - timedelta(minutes=5)
            )
        printer = rng.choice(printer_ids)
        roll = rng.random()
        status = (
            "completed"
            if index == 0 or roll < 0.8
            else "failed"
            if roll < 0.9
            else rng.choice(["cancelled", "aborted"])
        )
        reason = rng.choice(FAILURE_REASONS) if status == "failed" else None
        if prints and rng.random() < repeat_ratio:
            original = buddy.archives[rng.choice(prints)]
            if rng.random() < 0.5:
                buddy.add_print(
                    printer, status=status, reprint_of=original["id"], failure_reason=reason, at=at
                )
                continue
            run = buddy.add_print(
                printer,
                print_name=original["print_name"],
                filename=original["filename"],
                content_hash=original["content_hash"],
                grams=original["filament_used_grams"],
                duration_s=original["print_time_seconds"],
                status=status,
                failure_reason=reason,
                at=at,
            )
        else:
            base = PART_NAMES[new_parts % len(PART_NAMES)]
            cycle = new_parts // len(PART_NAMES)
            new_parts += 1
            run = buddy.add_print(
                printer,
                print_name=base if cycle == 0 else f"{base} v{cycle + 1}",
                grams=round(rng.uniform(3, 150), 1),
                duration_s=rng.randrange(600, 14400, 60),
                status=status,
                failure_reason=reason,
                thumbnail=new_parts % 7 != 3,
                at=at,
            )
        if run["archive_id"] not in prints:
            prints.append(run["archive_id"])
