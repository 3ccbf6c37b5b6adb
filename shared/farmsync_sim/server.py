"""Run the simulated Bambuddy and InvenTree on loopback: in a background thread (tests, demo) or in the foreground.

``SimFarm`` binds both servers to 127.0.0.1 (port 0 picks a free port), serves them from one uvicorn event loop
in a daemon thread, and exposes their URLs, credentials and Python handles (``farm.bambuddy.state`` ...).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from farmsync_sim.bambuddy import BambuddySim
from farmsync_sim.common import stable_hex
from farmsync_sim.control import DropLogFilter, Knobs
from farmsync_sim.inventree import InvenTreeSim
from farmsync_sim.inventree_state import DEFAULT_API_VERSION
from farmsync_sim.scenarios import Scenario, scenario_by_name

HOST = "127.0.0.1"
_drop_filter_installed = False


def credentials_for(seed: int) -> tuple[str, str]:
    """The Bambuddy API key and InvenTree token a farm with this seed uses (stable across runs)."""
    api_key = "bb_" + stable_hex("bambuddy-key", seed, length=43)
    token = f"inv-{stable_hex('inventree-token', seed, length=40)}-20271231"
    return api_key, token


def _bind(port: int) -> socket.socket:
    """A listening socket; IPPROTO_TCP explicitly, so asyncio sets TCP_NODELAY on accepted connections.

    Without it every keep-alive response waits ~40 ms (Nagle against the client's delayed ACK).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _quiet_uvicorn() -> None:
    global _drop_filter_installed
    if not _drop_filter_installed:
        logging.getLogger("uvicorn.error").addFilter(DropLogFilter())
        _drop_filter_installed = True


class SimFarm:
    """Both simulated servers, seeded from one scenario, served on 127.0.0.1.

    ``scenario`` is a :class:`Scenario`, ``"small"``/``"large"`` or a JSON path. ``latency_ms``/``fault_rate``
    set both servers' knobs at start (change them later via ``farm.bambuddy.knobs.update(...)``). ``auth`` turns
    on Bambuddy's API-key check; ``api_version`` is InvenTree's apiVersion. Use as a context manager, or call
    :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        scenario: Scenario | str | Path = "small",
        *,
        seed: int = 1,
        auth: bool = False,
        api_version: int = DEFAULT_API_VERSION,
        latency_ms: float = 0.0,
        fault_rate: float = 0.0,
        fault_timeout: float = 5.0,
        bambuddy_port: int = 0,
        inventree_port: int = 0,
    ) -> None:
        self.scenario = scenario if isinstance(scenario, Scenario) else scenario_by_name(scenario, seed)
        self.seed = seed
        self.api_key, self.token = credentials_for(seed)
        knob_values = {"latency_ms": latency_ms, "fault_rate": fault_rate, "fault_timeout": fault_timeout}
        self.bambuddy = BambuddySim(
            self.scenario.bambuddy,
            api_key=self.api_key,
            auth=auth,
            knobs=Knobs(fault_seed=seed, **knob_values),
        )
        self.inventree = InvenTreeSim(
            self.scenario.inventree,
            token=self.token,
            api_version=api_version,
            knobs=Knobs(fault_seed=seed + 1, **knob_values),
        )
        self._ports = (bambuddy_port, inventree_port)
        self._servers: list[uvicorn.Server] = []
        self._sockets: list[socket.socket] = []
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # ----------------------------------------------------------------- addresses and credentials

    @property
    def bambuddy_port(self) -> int:
        return int(self._sockets[0].getsockname()[1])

    @property
    def inventree_port(self) -> int:
        return int(self._sockets[1].getsockname()[1])

    @property
    def bambuddy_root(self) -> str:
        return f"http://{HOST}:{self.bambuddy_port}"

    @property
    def bambuddy_url(self) -> str:
        """Bambuddy's API base, as farmsync's BAMBUDDY_BASE_URL expects it (ends in ``/api/v1``)."""
        return f"{self.bambuddy_root}/api/v1"

    @property
    def inventree_url(self) -> str:
        """InvenTree's root URL (no ``/api``)."""
        return f"http://{HOST}:{self.inventree_port}"

    @property
    def ids(self) -> dict[str, Any]:
        return dict(self.scenario.ids)

    def describe(self) -> dict[str, Any]:
        """URLs, credentials and the ids a user puts in farmsync's settings: the CLI's first line."""
        return {
            "BAMBUDDY_BASE_URL": self.bambuddy_url,
            "BAMBUDDY_API_KEY": self.api_key,
            "INVENTREE_BASE_URL": self.inventree_url,
            "INVENTREE_TOKEN": self.token,
            "INVENTREE_USERNAME": self.inventree.username,
            "INVENTREE_PASSWORD": self.inventree.password,
            **self.scenario.ids,
            "bambuddy_control": f"{self.bambuddy_root}/_sim/",
            "inventree_control": f"{self.inventree_url}/_sim/",
            "scenario": self.scenario.name,
            "seed": self.seed,
            "auth": self.bambuddy.state.auth_enabled,
            "api_version": self.inventree.state.api_version,
            "facts": self.scenario.facts,
        }

    # ----------------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> SimFarm:
        """Bind both ports and serve in a daemon thread; returns once both servers accept connections."""
        if self._thread is not None:
            return self
        _quiet_uvicorn()
        self._sockets = [_bind(self._ports[0]), _bind(self._ports[1])]
        self._servers = [
            uvicorn.Server(
                uvicorn.Config(
                    sim.app,
                    lifespan="off",
                    log_level="warning",
                    access_log=False,
                    timeout_graceful_shutdown=1,
                    ws="none",
                    loop="asyncio",
                )
            )
            for sim in (self.bambuddy, self.inventree)
        ]
        self._thread = threading.Thread(target=self._run, name="farmsync-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not all(s.started for s in self._servers):
            if self._failure is not None or not self._thread.is_alive():
                raise RuntimeError(f"simulated farm failed to start: {self._failure!r}")
            if time.monotonic() > deadline:
                raise RuntimeError("simulated farm did not start in time")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        async def serve_both() -> None:
            await asyncio.gather(
                *(s.serve(sockets=[sock]) for s, sock in zip(self._servers, self._sockets, strict=True))
            )

        try:
            asyncio.run(serve_both())
        except BaseException as exc:  # the starting thread reports it
            self._failure = exc

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and release the ports."""
        for server in self._servers:
            server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        for sock in self._sockets:
            sock.close()
        self._thread = None

    def reset(self) -> None:
        """Both servers back to the scenario (data, auth, apiVersion, knobs, request logs), while running."""
        self.bambuddy.reset()
        self.inventree.reset()

    def wait(self) -> None:
        """Block until the servers stop (foreground use)."""
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(0.5)

    def __enter__(self) -> SimFarm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_foreground(farm: SimFarm, announce: Callable[[SimFarm], None] | None = None) -> None:
    """Start ``farm``, call ``announce`` once it serves, and block until Ctrl-C or SIGTERM; then stop it.

    Must run in the main thread (it installs the SIGTERM handler).
    """
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    farm.start()
    try:
        if announce is not None:
            announce(farm)
        while not stopping.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        farm.stop()
