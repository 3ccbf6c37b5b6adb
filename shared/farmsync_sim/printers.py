"""Fake printers to try the G-code mirror on, and the ``printers.yml`` that points at them.

Used by ``farmsync sim`` (a few of each kind) and ``farmsync demo`` (three). Only the kinds with a pure-Python
fake in :mod:`farmsync_sim` are served: Buddy firmware's PrusaLink (:mod:`farmsync_sim.buddy`) and Moonraker
(:mod:`farmsync_sim.moonraker`). PrusaLink 0.8 (MK3) and OctoPrint are tested against the real software, which
runs in virtualenvs of its own (``make setup-printers``, several minutes to build) and, for PrusaLink 0.8, a
fake MK3 on a pseudo-terminal: too heavy to start from a command meant to answer in a second.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIB = 1 << 20

NOT_SIMULATED = {
    "prusalink-legacy": "PrusaLink 0.8 (MK3/MK3S) has no pure-Python fake: the test suite runs the real "
    "PrusaLink 0.8.1 in its own virtualenv (make setup-printers)",
    "octoprint": "OctoPrint has no pure-Python fake: the test suite runs the real OctoPrint 1.11.8 in its own "
    "virtualenv (make setup-printers)",
}


@dataclass(frozen=True)
class PrinterSpec:
    """One fake printer: its name and ``printer_type`` in printers.yml, and how it behaves."""

    name: str
    printer_type: str
    kind: str  # prusalink | moonraker
    busy: bool = False
    bandwidth: float = 1 * MIB  # bytes per second the printer takes an upload at


SIM_PRINTERS = (
    PrinterSpec("Ash", "MK4", "prusalink"),
    PrinterSpec("Bishop", "MK4", "prusalink", busy=True),
    PrinterSpec("Call", "XL", "prusalink"),
    PrinterSpec("Voron", "Voron", "moonraker", bandwidth=4 * MIB),
    PrinterSpec("Trident", "Voron", "moonraker", bandwidth=4 * MIB),
)
"""What ``farmsync sim`` serves: Buddy printers at about Wi-Fi speed (one printing), Klipper ones faster."""


def write_master(folder: Path) -> list[Path]:
    """A small master folder of G-code in nested folders."""
    files = {
        "apple/prusament pla/apple_0.4n_0.15mm_PLA_MK4IS_4h52m.gcode": 180_000,
        "apple/prusament petg/apple_0.4n_0.15mm_PETG_MK4IS_4h58m.gcode": 220_000,
        "banana/prusament pla/banana_0.4n_0.15mm_PLA_MK4IS_2h12m.gcode": 140_000,
        "banana/prusament petg/banana_0.4n_0.15mm_PETG_MK4IS_2h13m.gcode": 150_000,
        "calibration/first_layer.gcode": 40_000,
    }
    written = []
    for relative, size in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        line = f"; farmsync demo {relative}\nG1 X10 Y10 E0.5 F1800\n"
        path.write_text((line * (size // len(line) + 1))[:size])
        written.append(path)
    return written


class FakePrinters:
    """Start fake printers from specs, write a printers.yml for them, stop them (and their spools) again."""

    def __init__(self, specs: tuple[PrinterSpec, ...], workdir: Path) -> None:
        self.specs = specs
        self.workdir = workdir
        self.printers: dict[str, Any] = {}

    def start(self) -> FakePrinters:
        from farmsync_sim.buddy import FakeBuddy
        from farmsync_sim.moonraker import FakeMoonraker

        try:
            for spec in self.specs:
                secret = f"sim-{spec.name.lower()}-key"
                if spec.kind == "moonraker":
                    printer: Any = FakeMoonraker(api_key=secret, bandwidth=spec.bandwidth)
                    printer.start()
                    if spec.busy:
                        printer.set_state("printing")
                else:
                    printer = FakeBuddy(password=secret, bandwidth=spec.bandwidth, name=spec.name)
                    printer.start()
                    if spec.busy:
                        printer.set_state("PRINTING")
                self.printers[spec.name] = printer
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for printer in reversed(list(self.printers.values())):
            with contextlib.suppress(Exception):
                printer.stop()
        self.printers.clear()

    def __getitem__(self, name: str) -> Any:
        return self.printers[name]

    def printers_yml(self, path: Path | None = None) -> Path:
        """A printers.yml for the fakes (``kind`` only where ``printer_type`` does not imply it); their credentials only."""
        path = path or self.workdir / "printers.yml"
        lines = ["# fake printers on 127.0.0.1 (farmsync_sim); 'kind' is optional"]
        for spec in self.specs:
            printer = self.printers[spec.name]
            lines += [f"{spec.name}:", f"  printer_type: {spec.printer_type}", f"  host: {printer.url}"]
            if spec.kind == "moonraker":
                lines += ["  kind: moonraker", f"  api_key: {printer.api_key}"]
            else:
                lines += ["  username: maker", f"  password: {printer.password}"]
        path.write_text("\n".join(lines) + "\n")
        return path

    def describe(self) -> list[dict[str, Any]]:
        """One entry per printer for the sim's first line: name, kind, URL, state and upload speed."""
        return [
            {
                "name": spec.name,
                "kind": spec.kind,
                "url": self.printers[spec.name].url,
                "state": self.printers[spec.name].state,
                "bytes_per_second": int(spec.bandwidth),
            }
            for spec in self.specs
        ]
