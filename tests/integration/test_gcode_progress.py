"""The G-code progress bar tells the truth: it never shows more bytes than the printer has received.

A throttled fake Buddy printer (1 MiB/s) takes about 2.5 s for 2.5 MiB; the kernel's socket buffers take the
same bytes in a blink, which is what the old bar counted (``4.0/4.0 MB 155 MB/s`` after one second).
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from farmsync.gcode.backends import backend_for
from farmsync.gcode.cli import gcode
from farmsync.gcode.config import load_printers
from farmsync.gcode.engine import MirrorOptions, run_mirror
from farmsync.gcode.progress import ProgressDisplay
from farmsync_sim.buddy import FakeBuddy
from tests.unit.gcode_fakes import ctx

RATE = 1 << 20  # bytes per second


def farm(tmp_path: Path, printer: FakeBuddy, name: str = "Ash") -> tuple[Path, Path]:
    config = tmp_path / "printers.yml"
    config.write_text(
        f"{name}:\n  printer_type: MK4\n  host: {printer.url}\n  username: maker\n  password: {printer.password}\n"
    )
    source = tmp_path / "master"
    (source / "zz").mkdir(parents=True)  # after small.gcode: an ETA shows while it goes
    (source / "zz" / "benchy.gcode").write_bytes(b"G1 X1 Y1\n" * (2 * RATE // 9))
    (source / "small.gcode").write_bytes(b"G1 X2\n" * (RATE // 12))
    return config, source


class CheckedDisplay(ProgressDisplay):
    """Compares what the bar shows with what the printer has read, every time the engine reports bytes."""

    def __init__(self, printer: FakeBuddy, console: Console) -> None:
        super().__init__(console)
        self.printer = printer
        self.samples: list[tuple[int, int]] = []  # (shown, received)

    def _check(self) -> None:
        # recorded, not asserted here: the engine switches off a display that raises, and carries on
        self.samples.append((max(self.confirmed("Ash"), self.confirmed()), self.printer.body_bytes_read))

    def progress(self, printer, action, nbytes):  # type: ignore[no-untyped-def]
        super().progress(printer, action, nbytes)
        self._check()

    def action_finished(self, printer, action, report):  # type: ignore[no-untyped-def]
        super().action_finished(printer, action, report)
        self._check()


async def test_the_bar_never_runs_ahead_of_the_printer(tmp_path: Path) -> None:
    with FakeBuddy(password="pw-ash", bandwidth=RATE, spool_dir=tmp_path / "spool") as printer:
        config, source = farm(tmp_path, printer)
        printers = load_printers(config)
        console = Console(file=io.StringIO(), width=80, force_terminal=True, record=True)
        display = CheckedDisplay(printer, console)
        started = time.monotonic()
        with display:
            report = await run_mirror(
                printers,
                source,
                MirrorOptions(dry_run=False),
                ctx(backend_for, listener=display),
            )
        elapsed = time.monotonic() - started
    assert report.exit_code == 0, report
    total = sum(f.stat().st_size for f in source.rglob("*.gcode"))
    assert elapsed >= total / RATE * 0.8  # the printer really was slow
    ahead = [(shown, received) for shown, received in display.samples if shown > received]
    assert not ahead, f"the bar showed more than the printer had received (shown, received): {ahead[:3]}"
    assert display.confirmed("Ash") == display.confirmed() == total
    assert len(display.samples) > 10 and display.samples[-1] == (total, total)
    text = console.export_text()
    assert "MiB" in text and not re.search(r"\d MB", text)
    assert "all printers" in text and re.search(r"ETA [\d.]+ s", text)  # an ETA once the rate is known
    # The rate shown is the printer's, never the socket's: at most its 1 MiB/s (slower on a loaded machine).
    rate = re.search(r"2\.5/2\.5 MiB ([\d.]+) (KiB|MiB)/s", text)
    assert rate, text
    shown = float(rate[1]) * (1024 if rate[2] == "KiB" else 1024 * 1024)
    assert 0 < shown <= RATE * 1.05, rate[0]


def test_cli_go_ends_with_a_totals_line_at_80_columns(tmp_path: Path) -> None:
    with FakeBuddy(password="pw-ash", bandwidth=4 * RATE, spool_dir=tmp_path / "spool") as printer:
        config, source = farm(tmp_path, printer)
        result = CliRunner().invoke(
            gcode,
            ["-c", str(config), "-s", str(source), "-g", "--data-dir", str(tmp_path / "data")],
            env={"COLUMNS": "80"},
        )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 80
    totals = out.strip().splitlines()[-1]
    assert re.fullmatch(
        r"sent 2 file\(s\), 2\.\d MiB, to 1 printer\(s\) in \d\.\d s \(\d\.\d MiB/s\)", totals
    ), out
    assert "zz/benchy.gcode" in out
