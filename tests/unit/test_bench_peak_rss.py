"""The benchmarks' peak RSS is the tool's own: Linux starts a child's ``wait4`` ru_maxrss at its parent's RSS when
it forks and execs, so a large benchmark process made every tool it timed look as large as itself."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.common import run_process

HOLD_MB = 200


def test_a_small_child_of_a_large_parent_is_reported_small(tmp_path: Path) -> None:
    held = bytearray(HOLD_MB << 20)
    held[:: 1 << 12] = b"\1" * len(held[:: 1 << 12])  # touched, so it is resident
    small = run_process(["/bin/sleep", "0.3"], log_dir=tmp_path, label="sleep")
    grows = run_process(
        [
            sys.executable,
            "-c",
            "x = bytearray(60 << 20); x[::4096] = b'1' * len(x[::4096]); import time; time.sleep(0.3)",
        ],
        log_dir=tmp_path,
        label="grows",
    )
    assert len(held) == HOLD_MB << 20
    assert small.ok and 0 < small.peak_rss_mb < 50, small.peak_rss_mb
    assert grows.ok and 60 < grows.peak_rss_mb < HOLD_MB, grows.peak_rss_mb
