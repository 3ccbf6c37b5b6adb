"""Many throttled fake Buddy printers served by worker processes, so they share no event loop (and no GIL) with
the bench or with the tool under test.

The fakes' throttle (farmsync_sim.fakehttp.Throttle) makes up for its own late wake-ups: on a busy machine a
pacing sleep overshoots, and losing every overshoot made a 1.05 s upload take 1.1-1.25 s at load 10 whatever the
tool sending it. A real printer's link does not slow down because the machine sending to it is busy; time the
link sits idle (the tool between two requests) is still lost, as it should be.

One FakeBuddy per printer (its own thread and event loop, as in the tests), ``per_worker`` of them per worker
process; the bench drives the workers over a pipe: where each printer listens, how many requests it answered,
how many digest challenges it sent, and whether it holds every source file (sizes, and one file's sha256).
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

WORKER_START_TIMEOUT = 60.0
ANSWER_TIMEOUT = 120.0


@dataclass(frozen=True)
class FakeAddress:
    """What the tools need of one fake: where it listens and its password (write_printers_yml reads these)."""

    url: str
    password: str


def _answer(printers: list[Any], command: str, args: Any) -> Any:
    if command == "requests":
        return [len(p.request_log) for p in printers]
    if command == "cpu":  # this worker process's CPU seconds so far (one entry per worker, not per printer)
        return [time.process_time()]
    if command == "challenges":
        return [p.challenges for p in printers]
    if command == "logs":  # (start, end, method, status, body bytes read) per request, wall clock
        return [
            [
                (e["ts"] - e["ms"] / 1000, e["ts"], e["method"], e["status"], e["bytes_in"])
                for e in p.request_log
            ]
            for p in printers
        ]
    if command == "holds":
        sizes, check_path, check_sha = args
        out = []
        for printer in printers:
            files = printer.files
            ok = all(rel in files and files[rel].size == size for rel, size in sizes.items())
            if ok and check_path is not None:
                ok = files[check_path].sha256 == check_sha
            out.append(ok)
        return out
    raise ValueError(f"unknown command {command!r}")


def _serve(conn: Connection, specs: list[tuple[str, str, float | None, str]]) -> None:
    """A worker process: start its fakes, say where they listen, answer commands until told to stop."""
    from farmsync_sim.buddy import FakeBuddy

    printers: list[Any] = []
    try:
        for name, password, bandwidth, spool in specs:
            fake = FakeBuddy(password=password, bandwidth=bandwidth, spool_dir=Path(spool), name=name)
            printers.append(fake.start())
        conn.send([p.url for p in printers])
        while True:
            command, args = conn.recv()
            if command == "stop":
                break
            try:
                conn.send(("ok", _answer(printers, command, args)))
            except Exception as exc:  # the bench shows it rather than hanging on recv
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
    except EOFError:
        pass
    finally:
        for printer in printers:
            printer.stop()
        conn.close()


class FakeFarm:
    """The workers of one farm; ``printers`` in order (worker 0's first)."""

    def __init__(self, workers: list[tuple[Any, Connection, int]], printers: list[FakeAddress]) -> None:
        self._workers = workers
        self.printers = printers

    def _ask(self, command: str, args: Any = None) -> list[Any]:
        for _, conn, _ in self._workers:
            conn.send((command, args))
        out: list[Any] = []
        for _, conn, _ in self._workers:
            if not conn.poll(ANSWER_TIMEOUT):
                raise TimeoutError(f"a fake-printer worker did not answer {command!r}")
            status, value = conn.recv()
            if status != "ok":
                raise RuntimeError(f"a fake-printer worker failed on {command!r}: {value}")
            out.extend(value)
        return out

    def requests(self) -> int:
        """Requests answered by all fakes so far."""
        return sum(self._ask("requests"))

    def cpu_seconds(self) -> float:
        """CPU seconds the fakes' worker processes have used so far, all together: on a machine that runs the
        fakes beside the tool, what the fakes cost is CPU the tool did not get."""
        return float(sum(self._ask("cpu")))

    def challenges(self) -> int:
        """401 digest challenges sent by all fakes so far."""
        return sum(self._ask("challenges"))

    def logs(self) -> list[list[tuple[float, float, str, int, int]]]:
        """Per printer, every request answered so far: (start, end, method, status, body bytes read)."""
        return self._ask("logs")

    def holds(self, sizes: dict[str, int], check: tuple[str, str] | None = None) -> bool:
        """Every fake holds every path of ``sizes`` at that size (and ``check``'s path with that sha256)."""
        path, sha = check if check else (None, None)
        return all(self._ask("holds", (sizes, path, sha)))


@contextmanager
def fake_farm(
    count: int, bandwidth: float | None, workdir: Path, tag: str, *, per_worker: int = 8
) -> Iterator[FakeFarm]:
    """``count`` fake Buddy printers on 127.0.0.1 in ``ceil(count / per_worker)`` worker processes; stopped
    (and their spools removed) after."""
    context = multiprocessing.get_context("spawn")  # no fork of a process that may run threads
    chunks = [list(range(start, min(start + per_worker, count))) for start in range(0, count, per_worker)]
    workers: list[tuple[Any, Connection, int]] = []
    passwords = [f"pw-{tag}-{index}" for index in range(count)]
    try:
        for chunk in chunks:
            ours, theirs = context.Pipe()
            specs = [(f"{tag}{i}", passwords[i], bandwidth, str(workdir / f"spool-{tag}-{i}")) for i in chunk]
            process = context.Process(target=_serve, args=(theirs, specs), daemon=True)
            process.start()
            theirs.close()
            workers.append((process, ours, len(chunk)))
        urls: list[str] = []
        for process, conn, _ in workers:
            if not conn.poll(WORKER_START_TIMEOUT):
                raise TimeoutError(f"fake-printer worker {process.pid} did not start")
            urls.extend(conn.recv())
        yield FakeFarm(workers, [FakeAddress(u, p) for u, p in zip(urls, passwords, strict=True)])
    finally:
        _stop(workers)
        for index in range(count):
            shutil.rmtree(workdir / f"spool-{tag}-{index}", ignore_errors=True)


def _stop(workers: Sequence[tuple[Any, Connection, int]]) -> None:
    for _, conn, _ in workers:
        with suppress(OSError):
            conn.send(("stop", None))
    for process, conn, _ in workers:
        process.join(15)
        if process.is_alive():
            process.kill()
            process.join(5)
        conn.close()
