"""``sim``: serve a seeded simulated farm (Bambuddy + InvenTree) in the foreground until Ctrl-C.

The first line on stdout is one JSON object with the base URLs, credentials and the category, location and
template ids farmsync's settings need, so scripts can read it and go. Run it as ``python -m farmsync.sim.cli``.
"""

from __future__ import annotations

import json
import sys

import click

from farmsync.sim.inventree_state import DEFAULT_API_VERSION
from farmsync.sim.server import SimFarm, run_foreground


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
def sim(
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
    run_foreground(farm, _announce)


def _announce(farm: SimFarm) -> None:
    click.echo(json.dumps(farm.describe()))
    sys.stdout.flush()
    click.echo(f"Bambuddy {farm.bambuddy_url}  InvenTree {farm.inventree_url}  (Ctrl-C to stop)", err=True)


if __name__ == "__main__":
    sim()
