"""Facts about Bambu Lab models that the back end and printers.yml share (reference: bambu-printers.md §3, §4).

Kept apart from the back end so that reading printers.yml imports no FTP or MQTT code.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

BAMBU_TYPES: tuple[str, ...] = ("X1C", "X1E", "P1P", "P1S", "P2S", "A1", "A1MINI", "H2D", "H2S")
"""``printer_type`` values of printers.yml (upper-cased, spaces, '-' and '_' removed before matching)."""

_ALIASES = {"X1CARBON": "X1C", "X1": "X1C", "A1M": "A1MINI", "BAMBU": None}

PUSHALL_LIMITED_TYPES = frozenset({"P1P"})
"""Models that lag when asked for a full report too often (OpenBambuAPI: no ``pushall`` more often than every 5
minutes on a P1P). The safe rate on P1S and A1 is an open question (bambu-printers.md §6.8)."""

PUSHALL_INTERVAL = 300.0
"""Seconds between two ``pushall`` requests to one delta-push printer."""

BUSY_STATES = frozenset({"PREPARE", "SLICING", "RUNNING", "PAUSE"})
IDLE_STATES = frozenset({"IDLE", "FINISH", "FAILED"})
"""``print.gcode_state`` values: busy as Bambu Studio's ``is_in_printing_status``; idle = nothing loaded or the last
job ended. Anything else (INIT, OFFLINE, UNKNOWN, missing) is unknown, which the mirror treats as busy."""

BAMBU_SUFFIXES: tuple[str, ...] = (".gcode.3mf", ".3mf", ".gcode")
"""What a Bambu printer can start from its card: sliced projects and plain G-code."""

DEFAULT_STORAGE = "farmsync"
"""The card folder the mirror owns unless printers.yml says ``storage``. Not the card root: Bambu Studio, the
cloud and MakerWorld put their own files in ``/`` and ``/cache``, and a mirror of the root would delete them."""

FTP_PORT = 990
MQTT_PORT = 8883
USER = "bblp"


def bambu_type(printer_type: str | None) -> str | None:
    """The canonical model (``"X1 Carbon"`` -> ``"X1C"``), or None when it is not a Bambu model."""
    if printer_type is None:
        return None
    key = re.sub(r"[\s_-]+", "", printer_type).upper()
    key = _ALIASES.get(key, key) or ""
    return key if key in BAMBU_TYPES else None


def is_idle(gcode_state: str | None) -> bool:
    """Only the known idle states are idle; busy, unknown and missing states are not."""
    return gcode_state is not None and gcode_state.upper() in IDLE_STATES


@dataclass(frozen=True)
class BambuTarget:
    """Where a printer is: from printers.yml, or from Bambuddy's printer list."""

    host: str
    serial: str
    model: str | None = None


Resolver = Callable[[], Awaitable[BambuTarget]]
"""Finds a printer's target when first needed (Bambuddy's printer list)."""
