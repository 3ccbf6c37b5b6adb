"""``sim``: serve a seeded simulated farm (Bambuddy + InvenTree + fake printers) in the foreground until Ctrl-C.

The first line on stdout is one JSON object with the base URLs, credentials and the category, location and
template ids farmsync's settings need, so scripts can read it and go. With printers (the default) it also names
a ready ``printers.yml`` (``GCODE_PRINTERS_FILE``) and a sample master folder (``GCODE_SOURCE_DIR``), so
``farmsync gcode -c <printers.yml> -s <master>`` works at once. Run it as ``python -m farmsync_sim.cli``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from farmsync_sim.inventree_state import DEFAULT_API_VERSION
from farmsync_sim.printers import NOT_SIMULATED, SIM_PRINTERS, FakePrinters, write_master
from farmsync_sim.server import SimFarm, run_foreground


@click.command("sim")
@click.option("--scenario", default="small", show_default=True, help="small, large, or a scenario JSON file.")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed for data, credentials and faults.")
@click.option("--bambuddy-port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option("--inventree-port", type=int, default=0, show_default=True, help="0 picks a free port.")
@click.option("--latency-ms", type=float, default=0.0, show_default=True, help="Added to every request.")
@click.option(
    "--fault-rate",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Share of requests that fail (503, dropped connection or timeout).",
)
@click.option(
    "--fault-timeout", type=float, default=5.0, show_default=True, help="Seconds a timeout fault outlasts."
)
@click.option("--auth/--no-auth", default=False, show_default=True, help="Require Bambuddy API keys.")
@click.option(
    "--api-version", type=int, default=DEFAULT_API_VERSION, show_default=True, help="InvenTree apiVersion."
)
@click.option(
    "--printers/--no-printers",
    default=True,
    show_default=True,
    help="Also serve fake printers (3 Buddy PrusaLink, one of them printing; 2 Moonraker) and a printers.yml.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where printers.yml and the sample master folder go (default: a temporary folder, removed on exit).",
)
def sim(
    printers: bool,
    workdir: Path | None,
    scenario: str,
    seed: int,
    bambuddy_port: int,
    inventree_port: int,
    latency_ms: float,
    fault_rate: float,
    fault_timeout: float,
    auth: bool,
    api_version: int,
) -> None:
    """Serve a simulated Bambuddy and InvenTree on 127.0.0.1 until interrupted."""
    farm = SimFarm(
        scenario,
        seed=seed,
        auth=auth,
        api_version=api_version,
        latency_ms=latency_ms,
        fault_rate=fault_rate,
        fault_timeout=fault_timeout,
        bambuddy_port=bambuddy_port,
        inventree_port=inventree_port,
    )
    if not printers:
        run_foreground(farm, lambda f: _announce(f, None))
        return
    folder = workdir or Path(tempfile.mkdtemp(prefix="farmsync-sim-"))
    folder.mkdir(parents=True, exist_ok=True)
    fakes = FakePrinters(SIM_PRINTERS, folder)
    try:
        fakes.start()
        run_foreground(farm, lambda f: _announce(f, fakes))
    finally:
        fakes.stop()
        if workdir is None:
            with contextlib.suppress(OSError):
                shutil.rmtree(folder)


def _announce(farm: SimFarm, fakes: FakePrinters | None) -> None:
    info: dict[str, Any] = farm.describe()
    if fakes is not None:
        master = fakes.workdir / "master"
        write_master(master)
        info |= {
            "GCODE_PRINTERS_FILE": str(fakes.printers_yml()),
            "GCODE_SOURCE_DIR": str(master),
            "printers": fakes.describe(),
            "printers_not_simulated": NOT_SIMULATED,
        }
    click.echo(json.dumps(info))
    sys.stdout.flush()
    click.echo(f"Bambuddy {farm.bambuddy_url}  InvenTree {farm.inventree_url}  (Ctrl-C to stop)", err=True)
    if fakes is not None:
        names = ", ".join(
            f"{p['name']} ({p['kind']}{', printing' if p['state'].lower() == 'printing' else ''})"
            for p in fakes.describe()
        )
        click.echo(f"printers: {names}", err=True)
        click.echo(
            f"try: farmsync gcode -c {info['GCODE_PRINTERS_FILE']} -s {info['GCODE_SOURCE_DIR']}"
            "   (a dry run; add -g to upload)",
            err=True,
        )


if __name__ == "__main__":
    sim()
