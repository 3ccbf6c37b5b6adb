"""One whole farm for the reliability suites: the scenario, the printers, what "the same final state" means.

Every suite compares a farm that went through trouble (faults, killed workers, concurrent callers, a store
outage) with a farm that saw the same scenario without trouble. Ids differ between the two (a part created later
gets a higher pk), so states are compared by natural keys: stock items by batch, parts by IPN, spools by tag,
archive back-links by the IPN of the part they point at, usage deductions by their notes marker.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmsync.errors import FarmsyncError
from farmsync.services import Services
from farmsync.settings import Settings
from farmsync_sim.buddy import FakeBuddy
from farmsync_sim.moonraker import FakeMoonraker
from farmsync_sim.scenarios import Scenario, make_scenario
from farmsync_sim.server import SimFarm
from tests.fixtures.farm import farm_settings

MASTER: dict[str, bytes] = {
    "benchy.gcode": b"G1 X10 ; benchy\n" * 400,
    "widgets/clip.gco": b"G1 Z1 ; clip\n" * 300,
    "widgets/deep/knob.gcode": b"G1 Y20 ; knob\n" * 200,
}
"""The master folder every printer must end up holding, exactly."""

USAGE_MARKER = "bambuddy:usage:"
_PART_LINK = re.compile(r"/part/(\d+)/")


def scenario(seed: int, runs: int = 24) -> Scenario:
    """Prints with reprints (several runs of one archive), failed runs, uploads, spools and usage rows."""
    return make_scenario(name="hardening", runs=runs, repeat_ratio=0.4, seed=seed, printers=4, spools=6)


def prepare(farm: SimFarm) -> None:
    """The same changes on every farm of a comparison: fresh usage rows and two spool moves.

    Spool 5 (on the shelf) goes into printer 2's second AMS; spool 3 moves from printer 3 to printer 4. The
    amounts are small, so no spool runs empty (an emptied item's history may vanish with it on API 425).
    """
    state = farm.bambuddy.state
    for n in range(6):
        state.add_usage(1 + n % 4, 7.5 + n, print_name=f"hardening part {n}")
    state.assign_spool(5, 2, ams_id=1, tray_id=0)
    state.unassign_spool(3, 0, 0)
    state.assign_spool(3, 4, ams_id=1, tray_id=0)


@dataclass(frozen=True)
class FarmAddress:
    """What a settings object (or a child process) needs to reach a simulated farm."""

    bambuddy_url: str
    inventree_url: str
    api_key: str
    token: str
    ids: dict[str, Any]

    @classmethod
    def of(cls, farm: SimFarm) -> FarmAddress:
        return cls(farm.bambuddy_url, farm.inventree_url, farm.api_key, farm.token, farm.ids)


def settings_for(
    address: FarmAddress | SimFarm,
    data_dir: Path,
    *,
    printers_file: Path | None = None,
    master: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Prints, filament (applied, not a dry run) and, given printers, the G-code mirror (applied)."""
    values: dict[str, Any] = {
        "filament_tracking_enabled": True,
        "filament_dry_run": False,
        "sync_max_attempts": 50,
    }
    if printers_file is not None:
        values.update(gcode_printers_file=printers_file, gcode_source_dir=master, gcode_dry_run=False)
    values.update(overrides)
    return farm_settings(address, data_dir, **values)  # type: ignore[arg-type]


# --- printers -----------------------------------------------------------------------------------------------


class ChaosProxy:
    """A TCP proxy on 127.0.0.1 that breaks a share of the connections it carries.

    A faulted connection is either closed at once (the request is never answered) or cut after a random number
    of response bytes (the printer may have done the write; the caller never learns). Decisions come from a
    seeded RNG, one per accepted connection.
    """

    def __init__(self, upstream_port: int, *, fault_rate: float, seed: int) -> None:
        self.upstream_port = upstream_port
        self.fault_rate = fault_rate
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)
        self.port = 0
        self.faults: Counter[str] = Counter()

    def start(self) -> ChaosProxy:
        self._thread.start()

        async def listen() -> int:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            return int(self._server.sockets[0].getsockname()[1])

        self.port = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 2)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _decide(self) -> tuple[str, int | None]:
        if self._rng.random() >= self.fault_rate:
            return "ok", None
        if self._rng.random() < 0.5:
            return "refuse", None
        return "cut", self._rng.randint(1, 2048)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kind, budget = self._decide()
        self.faults[kind] += 1
        if kind == "refuse":
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, limit: int | None) -> None:
            sent = 0
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while True:
                    chunk = await src.read(65536)
                    if not chunk:
                        break
                    if limit is not None and sent + len(chunk) >= limit:
                        dst.write(chunk[: max(0, limit - sent)])
                        await dst.drain()
                        break
                    sent += len(chunk)
                    dst.write(chunk)
                    await dst.drain()

        tasks = [
            asyncio.ensure_future(pipe(reader, up_writer, None)),
            asyncio.ensure_future(pipe(up_reader, writer, budget)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for stream in (writer, up_writer):
            with contextlib.suppress(Exception):
                stream.transport.abort()


@dataclass
class PrinterRig:
    """Two fake Buddy printers and a fake Moonraker, a master folder and the printers.yml that names them.

    Before the first sync, Ash holds an extra file (to delete) and Bishop a stale copy of a master file (to
    replace). ``fault_rate`` puts a :class:`ChaosProxy` between farmsync and each printer.
    """

    root: Path
    fault_rate: float = 0.0
    seed: int = 0
    buddies: dict[str, FakeBuddy] = field(default_factory=dict)
    moonraker: FakeMoonraker | None = None
    proxies: list[ChaosProxy] = field(default_factory=list)

    @property
    def master(self) -> Path:
        return self.root / "master"

    @property
    def printers_file(self) -> Path:
        return self.root / "printers.yml"

    def start(self) -> PrinterRig:
        for rel, data in MASTER.items():
            (self.master / rel).parent.mkdir(parents=True, exist_ok=True)
            (self.master / rel).write_bytes(data)
        for name in ("Ash", "Bishop"):
            printer = FakeBuddy(password=f"pw-{name.lower()}-rig-5678", name=name, spool_dir=self.root / name)
            self.buddies[name] = printer.start()  # type: ignore[assignment]
        self.moonraker = FakeMoonraker(api_key="moonraker-rig-key", spool_dir=self.root / "klipper")
        self.moonraker.start()
        self.buddies["Ash"].add_file("old/extra.gcode", b"G1 ; nobody wants me\n")
        self.buddies["Bishop"].add_file("benchy.gcode", b"G1 ; an old benchy\n")
        self.moonraker.add_file("leftover.gcode", b"G1 ; leftover\n")
        lines = []
        for index, (name, printer) in enumerate(self.buddies.items()):
            lines.append(
                f"{name}:\n  printer_type: MK4\n  host: {self._url(printer.port, index)}\n"
                f"  username: maker\n  password: {printer.password}\n"
            )
        lines.append(
            f"Klipper:\n  kind: moonraker\n  host: {self._url(self.moonraker.port, 9)}\n"
            f"  api_key: {self.moonraker.api_key}\n"
        )
        self.printers_file.write_text("".join(lines), encoding="utf-8")
        return self

    def _url(self, port: int, index: int) -> str:
        if not self.fault_rate:
            return f"http://127.0.0.1:{port}"
        proxy = ChaosProxy(port, fault_rate=self.fault_rate, seed=self.seed * 100 + index).start()
        self.proxies.append(proxy)
        return f"http://127.0.0.1:{proxy.port}"

    def calm(self) -> None:
        """No more faults (for the final, fault-free round)."""
        for proxy in self.proxies:
            proxy.fault_rate = 0.0

    def stop(self) -> None:
        for proxy in self.proxies:
            proxy.stop()
        for printer in self.buddies.values():
            printer.stop()
        if self.moonraker is not None:
            self.moonraker.stop()

    def files(self) -> dict[str, dict[str, bytes]]:
        out = {
            name: {p: f.read() for p, f in printer.files.items()} for name, printer in self.buddies.items()
        }
        assert self.moonraker is not None
        out["Klipper"] = {p: f.read() for p, f in self.moonraker.files.items()}
        return out

    def in_place(self) -> bool:
        """Every printer holds exactly the master folder: nothing missing, stale or extra."""
        return all(files == MASTER for files in self.files().values())

    def writes(self) -> list[tuple[str, str, str]]:
        """Write requests the printers answered (PUT/POST/DELETE), to show a final round changed nothing."""
        printers: list[Any] = [*self.buddies.values(), self.moonraker]
        return [
            (p.name if isinstance(p, FakeBuddy) else "Klipper", e["method"], e["path"])
            for p in printers
            for e in p.request_log
            if e["method"] in ("PUT", "POST", "DELETE")
        ]


# --- what "the same final state" means ---------------------------------------------------------------------


def snapshot(farm: SimFarm) -> dict[str, Any]:
    """InvenTree and Bambuddy as natural keys, read straight from the simulator's state (no faults there)."""
    inv = farm.inventree.state
    ipn = {pk: part.get("IPN") for pk, part in inv.parts.items()}
    items = Counter(
        (
            item["batch"],
            ipn.get(item["part"]),
            round(float(item["quantity"]), 3),
            item["location"],
            item.get("status"),
        )
        for item in inv.stock_items.values()
    )
    parts = Counter(
        (part.get("IPN"), part.get("name"), part.get("category"), bool(part.get("image")))
        for part in inv.parts.values()
    )
    parameters = Counter(
        (
            ipn.get(p.get("part") or p.get("model_id")),
            inv.templates[p["template"]]["name"],
            str(p.get("data")),
        )
        for p in inv.parameters.values()
    )
    markers = Counter(
        row["notes"] for row in inv.tracking.values() if str(row.get("notes", "")).startswith(USAGE_MARKER)
    )
    bb = farm.bambuddy.state
    spools = Counter(
        (
            s.get("tag_uid"),
            s.get("tray_uuid"),
            s.get("material"),
            s.get("subtype"),
            s.get("color_name"),
            s.get("label_weight"),
            s.get("core_weight"),
            round(float(s.get("weight_used") or 0.0), 3),
            s.get("archived_at") is not None,
        )
        for s in bb.spools.values()
    )

    def link(url: str | None) -> str | None:
        found = _PART_LINK.search(url or "")
        return str(ipn.get(int(found.group(1)))) if found else url

    links = {a: link(v.get("external_url")) for a, v in bb.archives.items()}
    return {
        "stock": items,
        "parts": parts,
        "parameters": parameters,
        "usage_markers": markers,
        "spools": spools,
        "links": links,
    }


def diff(actual: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """Only what differs, per section (for a readable assertion message)."""
    out: dict[str, Any] = {}
    for key in expected:
        a, e = actual.get(key), expected[key]
        if a == e:
            continue
        if isinstance(e, Counter):
            out[key] = {"extra": dict(a - e), "missing": dict(e - a)}
        else:
            out[key] = {k: (a.get(k), v) for k, v in e.items() if a.get(k) != v}
    return out


def exactly_once(state: dict[str, Any]) -> list[str]:
    """Duplicates in one state: a batch twice, an IPN twice, a usage marker twice, a spool tag twice."""
    problems = []
    batches = Counter(batch for (batch, *_), n in state["stock"].items() for _ in range(n))
    problems += [f"stock batch {b!r} x{n}" for b, n in batches.items() if n > 1]
    ipns = Counter(ipn for (ipn, *_), n in state["parts"].items() for _ in range(n) if ipn)
    problems += [f"part IPN {i!r} x{n}" for i, n in ipns.items() if n > 1]
    problems += [f"usage marker {m!r} x{n}" for m, n in state["usage_markers"].items() if n > 1]
    tags = Counter(tag for (tag, *_), n in state["spools"].items() for _ in range(n) if tag)
    problems += [f"spool tag {t!r} x{n}" for t, n in tags.items() if n > 1]
    return problems


async def close_clients(services: Services) -> None:
    """Close a Services' HTTP clients but not its store (the test's store fixture owns that)."""
    for client in (services._bambuddy, services._inventree):
        if client is not None:
            await client.aclose()


def sim_writes(farm: SimFarm) -> list[tuple[str, str]]:
    return [(e.method, e.path) for sim in (farm.bambuddy, farm.inventree) for e in sim.log.writes()]


# --- rounds ---------------------------------------------------------------------------------------------------


@dataclass
class Round:
    """One round of every feature: what failed (FarmsyncError only; anything else is a bug and propagates)."""

    errors: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.errors


async def run_round(services: Services, *, gcode: bool = True) -> Round:
    """A print tick, an applied filament run and (with printers) an applied G-code run, as the scheduler does."""
    from farmsync.filament.run import run_filament
    from farmsync.prints.service import run_tick

    result = Round()
    try:
        report = await run_tick(services)
        result.errors += [f"prints {i.key}: {i.error}" for i in report.items if i.error]
        if not report.ok:
            result.errors.append(f"prints: tick not ok ({report.totals()})")
    except FarmsyncError as exc:
        result.errors.append(f"prints: {exc}")
    try:
        filament = await run_filament(services, dry_run=False, trigger="tick")
        result.errors += [f"filament: {e}" for e in filament.errors]
        if not filament.ok:
            result.errors.append("filament: run not ok")
    except FarmsyncError as exc:
        result.errors.append(f"filament: {exc}")
    if gcode:
        from farmsync.gcode.service import run_gcode

        try:
            mirror = await run_gcode(services, dry_run=False)
            if mirror.exit_code != 0:
                result.errors.append(f"gcode: exit code {mirror.exit_code}")
        except FarmsyncError as exc:
            result.errors.append(f"gcode: {exc}")
    return result


async def until_converged(
    services: Services,
    done: Callable[[], bool],
    *,
    advance: Callable[[float], None],
    max_rounds: int,
    gcode: bool = True,
) -> int:
    """Rounds until one is clean and ``done()`` holds after it; ``advance`` moves the store clock past every
    backoff between rounds. (A round that failed may leave the right bytes in place yet unconfirmed, e.g. an
    upload whose answer was lost: the next clean round settles it.)"""
    last: Round | None = None
    for number in range(1, max_rounds + 1):
        last = await run_round(services, gcode=gcode)
        if last.clean and done():
            return number
        advance(3600.0)
    errors = last.errors[:10] if last else []
    raise AssertionError(f"not converged after {max_rounds} rounds; last round's errors: {errors}")


async def reference_state(farm: SimFarm, data_dir: Path) -> dict[str, Any]:
    """The fault-free outcome of the scenario (prints and filament), on a throwaway SQLite store."""
    from farmsync.store.sqlite import SqliteStore

    data_dir.mkdir(parents=True, exist_ok=True)
    services = Services(
        settings_for(farm, data_dir), store=SqliteStore(data_dir / f"reference-{time.monotonic_ns()}.sqlite3")
    )
    try:
        for _ in range(2):
            result = await run_round(services, gcode=False)
            assert result.clean, result.errors
    finally:
        await services.aclose()
    return snapshot(farm)


async def prints_on_wiped_stores(settings: Settings, new_store: Callable[[], Any], *, max_rounds: int) -> int:
    """Print ticks, each on a brand-new empty store (a new box, a lost data volume, a new Firestore prefix),
    until one is clean. The external systems are the ledger: nothing may be created twice. Returns the rounds.
    """
    from farmsync.prints.service import run_tick

    for number in range(1, max_rounds + 1):
        services = Services(settings, store=new_store())
        try:
            report = await run_tick(services)
            if report.ok and report.stopped == "complete" and not any(i.error for i in report.items):
                return number
        except FarmsyncError:
            pass
        finally:
            await close_clients(services)
    raise AssertionError(f"prints on wiped stores not clean after {max_rounds} rounds")
