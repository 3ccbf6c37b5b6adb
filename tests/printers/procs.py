"""Process plumbing shared by the printer servers: venv paths, free ports, process groups, bounded waits.

Every server is started with ``start_new_session=True`` so that stopping it kills its whole process group,
whatever it spawned; and with a parent-death signal, so that even a test process killed with SIGKILL does not
leave a server behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Self, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]
PRINTERS_DIR = Path(__file__).resolve().parent
VENVS_DIR = REPO_ROOT / ".printer-venvs"
SETUP_SCRIPT = PRINTERS_DIR / "setup_venvs.sh"
LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1

T = TypeVar("T")


class PrinterServerError(RuntimeError):
    """A printer server could not be set up, started or reached in time (the message says which and why)."""


def venv_bin(venv: str, program: str) -> Path:
    """Path of ``program`` inside ``.printer-venvs/<venv>/bin``."""
    return VENVS_DIR / venv / "bin" / program


def ensure_venvs(names: Sequence[str], *, timeout: float = 900.0) -> float:
    """Run setup_venvs.sh for ``names``; return seconds taken. Raises with the script's output on failure."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            ["bash", str(SETUP_SCRIPT), *names],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PrinterServerError(f"{SETUP_SCRIPT.name} {' '.join(names)} took over {timeout:.0f} s") from exc
    if result.returncode != 0:
        raise PrinterServerError(
            f"{SETUP_SCRIPT.name} {' '.join(names)} failed (exit {result.returncode}):\n"
            f"{result.stdout[-3000:]}{result.stderr[-5000:]}"
        )
    return time.monotonic() - started


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


REFUSED_BY_PRUSALINK = ("/tmp", "/dev", "/sys", "/proc")


def default_rundir() -> Path:
    """``<repo>/.printer-venvs/run``, unless the checkout itself sits where PrusaLink refuses storage (a CI
    clone under /tmp): then a per-user cache folder outside those trees."""
    inside = VENVS_DIR / "run"
    resolved = str(inside.resolve())
    if not any(resolved == root or resolved.startswith(root + "/") for root in REFUSED_BY_PRUSALINK):
        return inside
    home = Path(os.environ.get("HOME") or "/root")
    cache = home / ".cache" / "farmsync-printers"
    if str(cache.resolve()).startswith(REFUSED_BY_PRUSALINK):
        cache = Path("/var/lib/farmsync-test-printers")
    return cache


def make_workdir(prefix: str) -> Path:
    """A fresh private directory for one server run.

    Not under /tmp: PrusaLink refuses storage below /tmp, /dev, /sys and /proc. ``FARMSYNC_PRINTER_RUNDIR``
    overrides the parent (default ``<repo>/.printer-venvs/run``, git-ignored). Directories left by a test
    process that was killed before its teardown are removed here.
    """
    parent = Path(os.environ.get("FARMSYNC_PRINTER_RUNDIR") or default_rundir())
    parent.mkdir(parents=True, exist_ok=True)
    if not os.environ.get("FARMSYNC_KEEP_PRINTER_DIRS"):
        _remove_orphaned_workdirs(parent)
    workdir = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    (workdir / ".owner-pid").write_text(str(os.getpid()), encoding="ascii")
    return workdir


def _remove_orphaned_workdirs(parent: Path) -> None:
    for child in parent.iterdir():
        try:
            owner = int((child / ".owner-pid").read_text(encoding="ascii"))
        except (OSError, ValueError):
            continue
        try:
            os.kill(owner, 0)
        except ProcessLookupError:
            remove_tree(child)
        except PermissionError:
            pass


class GroupProcess:
    """A child started in its own session; output goes to a log file; :meth:`stop` kills the whole group."""

    def __init__(
        self,
        label: str,
        argv: Sequence[str],
        *,
        log_path: Path,
        cwd: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.label = label
        self.argv = list(argv)
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the process's output, for error messages."""
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError as exc:
            return f"(log unreadable: {exc})"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL whatever is left of it."""
        pgid = self.popen.pid  # session leader: its pid is the group id
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _group_exists(pgid):
                self.popen.poll()
                time.sleep(0.05)
            if not _group_exists(pgid):
                break
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)
        self._log.close()


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the test process dies without tearing down (kill -9, OOM).

    Linux only (prctl PR_SET_PDEATHSIG); elsewhere the fixtures' normal teardown is the only guard.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def _group_exists(pgid: int) -> bool:
    """Whether any process is left in the group (an unreaped zombie leader counts: callers poll() first)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process took the id: not ours to wait for, but not gone
        return True
    return True


class NotReady(Exception):
    """Raised by a readiness probe: not there yet; the message is what it saw (shown on timeout)."""


def wait_for(
    probe: Callable[[], T],
    *,
    what: str,
    timeout: float,
    processes: Sequence[GroupProcess] = (),
    interval: float = 0.25,
) -> T:
    """Call ``probe`` until it returns instead of raising :class:`NotReady`; fail fast if a process died."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        for proc in processes:
            if not proc.alive():
                raise PrinterServerError(
                    f"{what}: {proc.label} exited with {proc.popen.returncode} while waiting.\n"
                    f"--- {proc.log_path} (tail) ---\n{proc.log_tail()}"
                )
        try:
            return probe()
        except NotReady as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            tails = "".join(f"\n--- {p.log_path} (tail) ---\n{p.log_tail()}" for p in processes)
            raise PrinterServerError(f"{what}: not ready after {timeout:.0f} s (last: {last}){tails}")
        time.sleep(interval)


def remove_tree(path: Path) -> None:
    """Best-effort removal of a server's work directory."""
    shutil.rmtree(path, ignore_errors=True)


class PrinterServer:
    """Start/ready/stop life cycle shared by the servers; usable as a context manager.

    ``start()`` returns as soon as the processes are launched, so a caller can start several servers and
    then wait for all of them (they boot concurrently). ``wait_ready()`` blocks with a bounded timeout.
    """

    name = "printer"

    def __init__(self, *, keep_workdir: bool = False) -> None:
        self.port = 0
        self.workdir: Path | None = None
        self.keep_workdir = keep_workdir or bool(os.environ.get("FARMSYNC_KEEP_PRINTER_DIRS"))
        self.processes: list[GroupProcess] = []
        self.started_at: float | None = None
        self.ready_seconds: float | None = None

    @property
    def url(self) -> str:
        """Base URL, no trailing slash."""
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        raise NotImplementedError

    def _probe_ready(self) -> None:
        raise NotImplementedError

    def wait_ready(self, timeout: float = 120.0) -> float:
        """Block until the server is usable; return seconds since :meth:`start` began."""
        if self.started_at is None:
            raise PrinterServerError(f"{self.name}: wait_ready() before start()")
        if self.ready_seconds is None:
            wait_for(self._probe_ready, what=self.name, timeout=timeout, processes=self.processes)
            self.ready_seconds = time.monotonic() - self.started_at
        return self.ready_seconds

    def stop(self) -> None:
        """Kill every process group (last started first) and remove the work directory."""
        while self.processes:
            self.processes.pop().stop()
        if self.workdir is not None and not self.keep_workdir:
            remove_tree(self.workdir)

    def child_env(self) -> dict[str, str]:
        """The test process's environment minus anything that would drag farmsync's venv into the child."""
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"}}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def __enter__(self) -> Self:
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
