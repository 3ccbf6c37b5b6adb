"""What operators read: ``backfill``, ``status`` and ``filament`` captured at 80 columns against the simulator.

Each command's report is rendered by rich at ``COLUMNS=80`` (the width of a plain terminal); the assertions are
the issue's: nothing wider than 80 columns, names instead of ids and HTTP detail, failures listed instead of every
print, times in words for people and ISO 8601 with a zone for scripts.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

from click.testing import CliRunner

from farmsync.cli import cli
from farmsync_sim.server import SimFarm
from tests.e2e.test_cli_commands import env_file  # noqa: F401 - the farm's .env, a fixture

WIDTH = 80


def invoke(env: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--env-file", str(env), *args], env={"COLUMNS": str(WIDTH)})
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def fits(text: str) -> None:
    wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not wide, "\n".join(wide)
    assert "…" not in text, text  # wrapped, never cut short


def iso_with_zone(value: str) -> bool:
    return datetime.fromisoformat(value).tzinfo is not None


def test_backfill_lists_failures_not_every_print(env_file: Path, sim_farm: SimFarm) -> None:  # noqa: F811
    code, out, _ = invoke(env_file, "backfill")
    assert code == 0
    fits(out)
    assert "run " not in out  # nine synced prints: no table at all, only the totals line
    assert re.search(
        r"backfill: 9 print\(s\) in [\d.]+ s: 9 synced\. Requests: Bambuddy \d+, InvenTree \d+\.", out
    )


def test_a_failed_backfill_says_when_prints_go_again(env_file: Path, sim_farm: SimFarm) -> None:  # noqa: F811
    sim_farm.inventree.knobs.update(fault_rate=1.0, fault_timeout=0.05)
    code, out, _ = invoke(env_file, "backfill")
    assert code == 2
    fits(out)
    assert "needs a look" in out and "failed" in out and "next try in " in out
    sim_farm.inventree.knobs.update(fault_rate=0.0)
    code, out, _ = invoke(env_file, "backfill")  # inside the retry delay: pending, and when they will go
    assert code == 0
    fits(out)
    assert "pending" in out
    assert re.search(r"wait for their retry time; the next goes in \d+(\.\d)? s", out.replace("\n", " ")), out
    code, raw, _ = invoke(env_file, "backfill", "--json")
    pending = [i for i in json.loads(raw)["items"] if i["outcome"] == "pending"]
    assert pending and all(iso_with_zone(i["retry_at"]) for i in pending)
    code, out, _ = invoke(env_file, "status")
    fits(out)
    assert re.search(r"waiting run \d+ after 1 attempt\(s\): .*next try in", " ".join(out.split()))


def test_log_lines_go_through_the_live_console(env_file: Path, sim_farm: SimFarm) -> None:  # noqa: F811
    """While the bar is live, log lines are printed by its console (above the bar), not onto the bar."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from farmsync.logs import configure, get_logger, through_console

    stderr = io.StringIO()
    configure("text", "INFO", stream=stderr)
    console = Console(file=io.StringIO(), width=WIDTH, record=True)
    with Progress(console=console) as bar, through_console(console):
        bar.add_task("backfill", total=3)
        get_logger("prints").warning("print sync failed")
    assert stderr.getvalue() == ""
    assert re.search(r"^\d\d:\d\d:\d\d WARNING prints +print sync failed$", console.export_text(), re.M)
    get_logger("prints").warning("after the bar")
    assert "after the bar" in stderr.getvalue()  # the handler has its stream back


def test_status_in_words(env_file: Path, sim_farm: SimFarm) -> None:  # noqa: F811
    invoke(env_file, "tick", "prints")
    code, out, _ = invoke(env_file, "status")
    assert code == 0
    fits(out)
    assert "{" not in out  # no raw JSON
    assert "every print-log run created before" in out and "newer; each tick reads from" in out, out
    assert "one stock item per print-log run" in out
    code, raw, _ = invoke(env_file, "status", "--json")
    status = json.loads(raw)
    assert iso_with_zone(status["cursor"]["print-log"]["time"]) and iso_with_zone(status["last_tick"]["at"])


def test_filament_shows_names_and_changes(env_file: Path, sim_farm: SimFarm) -> None:  # noqa: F811
    code, out, _ = invoke(env_file, "filament")
    assert code == 0
    fits(out)
    assert "/api/" not in out and "POST" not in out and "PATCH" not in out
    assert "location" not in out or re.search(r"location \d", out) is None
    assert "dry run" in out
    flat = " ".join(out.replace("│", " ").split())
    assert "from Storage/Filament shelf to Printers/B2 (loaded in B2-P1S AMS 0 tray 0)" in flat, out
    assert re.search(r"take [\d.]+ g from FIL-\S+ \| Bambu .*\(batch [0-9A-F]+\) for print '", flat)
    assert "create a Bambuddy spool for" in flat
    code, verbose, _ = invoke(env_file, "filament", "--verbose")
    fits(verbose)
    assert "POST" in verbose and "/api/stock/remove/" in verbose and "already there" in verbose
    code, raw, _ = invoke(env_file, "filament", "--json")
    assert json.loads(raw)["writes"][0]["path"].startswith("/api/")


def test_tick_gcode_is_a_report_not_raw_json(env_file: Path, tmp_path: Path) -> None:  # noqa: F811
    from farmsync_sim.printers import FakePrinters, PrinterSpec, write_master

    printers = FakePrinters((PrinterSpec("Ash", "MK4", "prusalink"),), tmp_path).start()
    try:
        write_master(tmp_path / "master")
        with env_file.open("a") as env:
            env.write(
                f"GCODE_PRINTERS_FILE={printers.printers_yml()}\nGCODE_SOURCE_DIR={tmp_path / 'master'}\n"
            )
        code, out, _ = invoke(env_file, "tick", "gcode")
    finally:
        printers.stop()
    assert code == 0, out
    fits(out)
    assert "{" not in out and "Ash (prusalink, IDLE)" in out
    assert out.strip().splitlines()[-1].startswith("would send 5 file(s), ")
