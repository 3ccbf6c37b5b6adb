"""A fake Prusa MK3S (firmware 3.14) on a pseudo-terminal, so real PrusaLink 0.8 can run without a printer.

PrusaLink talks to an Einsy board over serial; it refuses to leave BUSY until the board has answered its
identification and polling G-codes. This answers exactly those (printer type 302 = MK3S, firmware, serial
number, nozzle, EEPROM ``D3`` reads, ``M220``/``M221``/``M73``/``M27 P``/``M420``/``M20``/``M21``/``M105``), keeps
``M155`` auto-reports going, and says ``ok`` to everything else, so PrusaLink reaches IDLE.

Stdlib only, so it runs under any Python. As a script::

    python fake_mk3.py --link /tmp/x/ttyFAKE [--log /tmp/x/fake_mk3.log]

It creates the pty, symlinks ``--link`` to the slave side (PrusaLink's ``[printer] port``), prints ``READY``
and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import struct
import sys
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

FIRMWARE = "3.14.1-8237"
PRINTER_TYPE = "302"  # MK3S, see prusa.link.const.PRINTER_TYPES
SERIAL_NUMBER = "CZPX1234X004XK12345"  # matches PrusaLink's VALID_SN_REGEX
NOZZLE = "0.40"

# EEPROM addresses PrusaLink reads (prusa.link ... model_classes.EEPROMParams).
EEPROM_SIZE = 4096
ADDR_JOB_ID = 0x0D05
ADDR_SHEETS = 0x0D49  # 8 sheets x 11 bytes: name[7], z offset u16, bed temp u8, PINDA temp u8
ADDR_ACTIVE_SHEET = 0x0DA1
ADDR_TOTAL_PRINT_TIME = 0x0FED  # minutes, u32 little-endian
ADDR_TOTAL_FILAMENT = 0x0FF1  # metres, u32 little-endian
ADDR_FLASH_AIR = 0x0FBB
ADDR_PRINT_MODE = 0x0FFF  # 0 normal, 1 silent, 2 auto

NUMBERED = re.compile(r"^N-?\d+\s+(?P<body>.*?)\s*(\*\d+)?$")
D3 = re.compile(r"^D3\s+Ax(?P<addr>[0-9A-Fa-f]+)\s+C(?P<count>\d+)")
M155 = re.compile(r"^M155(?:\s+S(?P<s>\d+))?(?:\s+C(?P<c>\d+))?")

TEMPS = "T:24.8 /0.0 B:24.3 /0.0 T0:24.8 /0.0 @:0 B@:0 P:24.1 A:31.2"
POSITION = "X:0.00 Y:-3.00 Z:0.15 E:0.00 Count X: 0.00 Y:-3.00 Z:0.15 E:0.00"
FANS = "E0:0 RPM PRN1:0 RPM E0@:0 PRN1@:0"


def default_eeprom() -> bytearray:
    """EEPROM contents of a freshly calibrated MK3S: stock sheets, no jobs, normal mode."""
    data = bytearray(b"\xff" * EEPROM_SIZE)
    data[ADDR_JOB_ID : ADDR_JOB_ID + 4] = struct.pack("<I", 0)
    names = ["Smooth1", "Smooth2", "Textur1", "Textur2", "Satin 1", "Satin 2", "NylonPA", "Custom1"]
    for i, name in enumerate(names):
        z_offset = 0xFFFF - 320 + 1  # about -0.8 mm, encoded as PrusaLink decodes it
        sheet = name.encode("ascii") + struct.pack("<HBB", z_offset, 60, 35)
        data[ADDR_SHEETS + 11 * i : ADDR_SHEETS + 11 * (i + 1)] = sheet
    data[ADDR_ACTIVE_SHEET] = 0
    data[ADDR_TOTAL_PRINT_TIME : ADDR_TOTAL_PRINT_TIME + 4] = struct.pack("<I", 1234)
    data[ADDR_TOTAL_FILAMENT : ADDR_TOTAL_FILAMENT + 4] = struct.pack("<I", 567)
    data[ADDR_FLASH_AIR] = 0
    data[ADDR_PRINT_MODE] = 0
    return data


class FakeMK3:
    """The printer side of the pty: parses G-code lines, writes Prusa-firmware-shaped replies."""

    def __init__(self, link: Path, log: TextIO | None = None) -> None:
        self.link = link
        self.log = log
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo or line discipline before PrusaLink configures its side
        os.set_blocking(self.master, False)
        self.eeprom = default_eeprom()
        self.autoreport_every = 0.0
        self.autoreport_mask = 0
        self.next_autoreport = 0.0
        self.running = True
        self._buffer = b""
        self._handlers: list[tuple[re.Pattern[str], Callable[[re.Match[str]], list[str]]]] = [
            (re.compile(r"^PRUSA Fir"), lambda _m: [FIRMWARE]),
            (re.compile(r"^PRUSA SN"), lambda _m: [SERIAL_NUMBER]),
            (re.compile(r"^M862\.2 Q"), lambda _m: [PRINTER_TYPE]),
            (re.compile(r"^M862\.1 Q"), lambda _m: [NOZZLE]),
            (D3, self._d3),
            (re.compile(r"^M22[01]\b"), lambda _m: ["100%"]),
            (re.compile(r"^M73\s*$"), self._m73),
            (re.compile(r"^M27\b"), lambda _m: ["Not SD printing"]),
            (re.compile(r"^M420\b"), lambda _m: ["Mesh bed leveling not active."]),
            (re.compile(r"^M20\b"), lambda _m: ["Begin file list", "End file list"]),
            (re.compile(r"^M21\b"), lambda _m: ["echo:SD card ok"]),
            (re.compile(r"^M114\b"), lambda _m: [POSITION]),
            (M155, self._m155),
        ]

    @property
    def device(self) -> str:
        """Path of the pty slave (what the symlink points to)."""
        return os.ttyname(self.slave)

    def open(self) -> None:
        """Publish the pty under ``link`` (atomically, so a reader never sees a half-made link)."""
        tmp = self.link.with_name(self.link.name + ".tmp")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(self.device)
        tmp.replace(self.link)

    def close(self) -> None:
        """Remove the link and the pty."""
        self.link.unlink(missing_ok=True)
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _say(self, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode("ascii")
        if self.log:
            for line in lines:
                self.log.write(f"{time.monotonic():.3f} <- {line}\n")
        while data:
            try:
                written = os.write(self.master, data)
            except BlockingIOError:
                select.select([], [self.master], [], 1.0)
                continue
            data = data[written:]

    def _d3(self, match: re.Match[str]) -> list[str]:
        """EEPROM dump, 16 bytes a line, each line labelled with its address like the firmware does."""
        addr = int(match.group("addr"), 16)
        count = int(match.group("count"))
        lines = []
        for start in range(addr, addr + count, 16):
            chunk = self.eeprom[start : min(start + 16, addr + count)]
            lines.append(f"{start:04x}  " + " ".join(f"{b:02x}" for b in chunk))
        return lines

    @staticmethod
    def _m73(_match: re.Match[str]) -> list[str]:
        return [
            f"{mode} MODE: Percent done: -1; print time remaining in mins: -1; Change in mins: -1"
            for mode in ("NORMAL", "SILENT")
        ]

    def _m155(self, match: re.Match[str]) -> list[str]:
        self.autoreport_every = float(match.group("s") or 0)
        self.autoreport_mask = int(match.group("c") or 1)
        self.next_autoreport = time.monotonic() + self.autoreport_every
        return []

    def reply(self, raw: str) -> list[str]:
        """Lines the firmware prints for one received line (``ok`` last), or none for blanks/comments."""
        line = raw.strip()
        if numbered := NUMBERED.match(line):
            line = numbered.group("body")
        line = line.split(";", 1)[0].strip()
        if not line:
            return []
        if line.startswith("M105"):
            return [f"ok {TEMPS}"]
        for pattern, handler in self._handlers:
            if match := pattern.match(line):
                return [*handler(match), "ok"]
        return ["ok"]

    def _autoreport(self) -> None:
        now = time.monotonic()
        if not self.autoreport_every or now < self.next_autoreport:
            return
        self.next_autoreport = now + self.autoreport_every
        lines = []
        if self.autoreport_mask & 1:
            lines.append(TEMPS)
        if self.autoreport_mask & 2:
            lines.append(POSITION)
        if self.autoreport_mask & 4:
            lines.append(FANS)
        self._say(lines)

    def serve(self) -> None:
        """Answer until :attr:`running` goes false."""
        while self.running:
            wait = 0.5
            if self.autoreport_every:
                wait = max(0.0, min(wait, self.next_autoreport - time.monotonic()))
            try:
                ready, _, _ = select.select([self.master], [], [], wait)
            except InterruptedError:
                continue
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except (BlockingIOError, InterruptedError):
                    chunk = b""
                except OSError:  # EIO: nobody has the slave open; we keep it open, so only on shutdown
                    chunk = b""
                self._buffer += chunk
                while b"\n" in self._buffer:
                    raw, self._buffer = self._buffer.split(b"\n", 1)
                    text = raw.decode("ascii", "replace")
                    if self.log:
                        self.log.write(f"{time.monotonic():.3f} -> {text}\n")
                    if answer := self.reply(text):
                        self._say(answer)
                if self.log:
                    self.log.flush()
            self._autoreport()


def main(argv: list[str] | None = None) -> int:
    """Run the fake until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--link", required=True, type=Path, help="symlink to create, pointing at the pty")
    parser.add_argument("--log", type=Path, help="write every line received/sent here")
    args = parser.parse_args(argv)

    log = args.log.open("a", encoding="utf-8") if args.log else None
    printer = FakeMK3(args.link, log)

    def stop(_signum: int, _frame: object) -> None:
        printer.running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    printer.open()
    print(f"READY {printer.device}", flush=True)
    try:
        printer.serve()
    finally:
        printer.close()
        if log:
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
