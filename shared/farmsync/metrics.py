"""What farmsync did, counted for Prometheus: plain functions the features call where they record outcomes.

Recording is a dict update under a lock, with no import of ``prometheus_client``: that library costs ~140 ms to
import, which every function target's cold start would otherwise pay. :func:`exposition` (the ``/metrics``
route) builds the text with the official library on a registry of this process's own (never the library's
global default one), from what was recorded here plus the HTTP layer's request counters.

The numbers are per process: ``farmsync serve`` runs every tick itself, so its ``/metrics`` sees everything;
on Cloud Functions each instance counts only the runs it served. :func:`reset` starts from zero (tests).
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from time import monotonic
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

DURATION_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
"""Seconds. A print tick is usually under a second when idle; a first G-code sync of a farm takes minutes."""

RUN_KINDS = ("print_tick", "backfill", "print_archive", "filament", "gcode")

# name -> (help text, label names); counters are exported with Prometheus' ``_total`` suffix
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "farmsync_prints": (
        "Prints by outcome: synced into InvenTree, failed (retried later), parked.",
        ("outcome",),
    ),
    "farmsync_filament_subtracted_grams": (
        "Grams of filament subtracted from InvenTree stock, by the spool's material.",
        ("material",),
    ),
    "farmsync_gcode_files": (
        "G-code files per printer: uploaded (new or replaced), deleted, failed (any failed write).",
        ("printer", "outcome"),
    ),
    "farmsync_gcode_uploaded_bytes": ("Bytes of G-code uploaded per printer.", ("printer",)),
    "farmsync_upstream_errors": (
        "Failed upstream requests by system: an HTTP status (e.g. 503) or 'transport' (timeout, refused).",
        ("system", "kind"),
    ),
    "farmsync_notifications": (
        "Operator notifications by event and result (sent or failed; failed ones are retried next run).",
        ("event", "result"),
    ),
}


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(DURATION_BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(DURATION_BUCKETS, value)
        if index < len(self.buckets):
            self.buckets[index] += 1
        self.count += 1
        self.total += value


class Recorder:
    """This process's counts: counters by (name, label values) and run-duration histograms by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[str, dict[tuple[str, ...], float]] = defaultdict(dict)
        self.durations: dict[str, _Histogram] = {}

    def add(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        assert name in COUNTERS and len(labels) == len(COUNTERS[name][1]), name
        with self._lock:
            series = self.counters[name]
            series[labels] = series.get(labels, 0.0) + amount

    def observe(self, kind: str, seconds: float) -> None:
        with self._lock:
            self.durations.setdefault(kind, _Histogram()).observe(max(0.0, seconds))

    def snapshot(self) -> tuple[dict[str, dict[tuple[str, ...], float]], dict[str, _Histogram]]:
        with self._lock:
            counters = {name: dict(series) for name, series in self.counters.items()}
            durations = {
                kind: _Histogram(list(h.buckets), h.count, h.total) for kind, h in self.durations.items()
            }
        return counters, durations


_recorder = Recorder()


def reset() -> None:
    """Start counting from zero (a test's isolation; a process never needs it)."""
    global _recorder
    _recorder = Recorder()


# --- what the features call --------------------------------------------------------------------------------


def print_outcome(outcome: str) -> None:
    """A print unit finished an attempt: ``synced``, ``failed`` (will retry) or ``parked`` (gave up)."""
    _recorder.add("farmsync_prints", (outcome,))


def grams_subtracted(grams: float | None, material: str | None) -> None:
    """Filament subtracted in InvenTree by one usage row."""
    if grams:
        _recorder.add(
            "farmsync_filament_subtracted_grams", ((material or "unknown").strip() or "unknown",), grams
        )


def gcode_files(printer: str, outcome: str, count: int = 1, nbytes: int = 0) -> None:
    """G-code writes on one printer: ``uploaded``, ``deleted`` or ``failed``, and bytes uploaded."""
    if count:
        _recorder.add("farmsync_gcode_files", (printer, outcome), count)
    if nbytes:
        _recorder.add("farmsync_gcode_uploaded_bytes", (printer,), nbytes)


def upstream_error(system: str, kind: str) -> None:
    """One failed attempt at an upstream request (HTTP status, or ``transport``)."""
    _recorder.add("farmsync_upstream_errors", (system, kind))


def notification(event: str, result: str) -> None:
    _recorder.add("farmsync_notifications", (event, result))


def run_duration(kind: str, seconds: float) -> None:
    """How long one run of ``kind`` (see RUN_KINDS) took."""
    _recorder.observe(kind, seconds)


@contextmanager
def timed(kind: str) -> Iterator[None]:
    """Record the duration of the block as a run of ``kind``, also when it raises."""
    started = monotonic()
    try:
        yield
    finally:
        run_duration(kind, monotonic() - started)


# --- exposition ----------------------------------------------------------------------------------------------


class _Collector:
    """Turns the recorder, the HTTP request counters and the store check into metric families at scrape."""

    def __init__(self) -> None:
        self.store_up: float = 0.0

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        from farmsync.clients.http import COUNTERS as REQUESTS

        counters, durations = _recorder.snapshot()
        for name, (text, labels) in COUNTERS.items():
            family = CounterMetricFamily(name, text, labels=list(labels))
            for values, amount in sorted(counters.get(name, {}).items()):
                family.add_metric(list(values), amount)
            yield family
        requests = CounterMetricFamily(
            "farmsync_upstream_requests",
            "Requests sent to Bambuddy, InvenTree and printers (every attempt, retries included).",
            labels=["system", "method"],
        )
        for system, methods in REQUESTS.snapshot().items():
            for method, n in methods.items():
                requests.add_metric([system, method], n)
        yield requests
        runs = HistogramMetricFamily(
            "farmsync_run_duration_seconds",
            "How long runs took, by kind: print_tick, backfill, print_archive, filament, gcode.",
            labels=["kind"],
        )
        for kind, histogram in sorted(durations.items()):
            cumulative, buckets = 0, []
            for bound, n in zip(DURATION_BUCKETS, histogram.buckets, strict=True):
                cumulative += n
                buckets.append((_bound(bound), cumulative))
            buckets.append(("+Inf", histogram.count))
            runs.add_metric([kind], buckets, histogram.total)
        yield runs
        yield GaugeMetricFamily(
            "farmsync_store_up",
            "1 when the idempotency store answered at scrape time, else 0.",
            self.store_up,
        )


def _bound(value: float) -> str:
    return repr(float(value))


_registry: CollectorRegistry | None = None
_collector: _Collector | None = None
_registry_lock = threading.Lock()


def registry() -> tuple[CollectorRegistry, _Collector]:
    """This process's registry (made on first scrape) and the collector whose store gauge the route sets."""
    global _registry, _collector
    with _registry_lock:
        if _registry is None:
            from prometheus_client import CollectorRegistry

            _collector = _Collector()
            _registry = CollectorRegistry(auto_describe=False)
            _registry.register(_collector)
        assert _registry is not None and _collector is not None
        return _registry, _collector


def exposition(*, store_up: bool) -> tuple[bytes, str]:
    """The Prometheus text (body, content type) of everything this process counted."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    reg, collector = registry()
    collector.store_up = 1.0 if store_up else 0.0
    return generate_latest(reg), CONTENT_TYPE_LATEST
