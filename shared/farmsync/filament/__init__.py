"""The filament pipeline: InvenTree spools ↔ Bambuddy spools, locations and usage.

InvenTree is the source of truth for spools (a StockItem of a filament part; its batch is the spool key);
Bambuddy knows where each spool is loaded and how much every print used. Three independent steps run in the
order usage → locations → spools (:mod:`farmsync.filament.run`); each plans its writes as
:class:`~farmsync.filament.writes.Write` objects that a dry run returns and a real run performs.
"""

from __future__ import annotations
