"""One set of printer-path rules for the planner, the back ends and pull (gcode/paths.py).

The planner and the back ends used to check paths with two different functions: the planner let control
characters through, the back ends refused them. So the planner planned uploads of such source files and deletes
of such printer entries that the back end then refused, failing the action (and the run). No printer takes such
a name (FAT cards forbid control characters; Buddy answers 422), so now every part refuses them the same way:
the planner leaves them out or alone, with a warning, and never plans a write it cannot make.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from farmsync.errors import InputError
from farmsync.gcode import paths
from farmsync.gcode.backends import common
from farmsync.gcode.backends.base import RemoteEntry
from farmsync.gcode.engine import MirrorOptions, run_mirror
from farmsync.gcode.paths import check_path, name_problem, path_problem
from farmsync.gcode.plan import (
    LocalFile,
    LocalTree,
    Op,
    PathProblem,
    PlanOptions,
    make_plan,
    normalize_destination,
)
from farmsync.gcode.report import PrinterOutcome
from tests.unit.gcode_fakes import T0, FakeFarm, FakePrinter, ctx, printer_config, write_tree

CONTROL = ["bell\x07.gcode", "esc\x1b[31m.gcode", "tab\there.gcode", "line\nbreak.gcode", "del\x7f.gcode"]
UNSAFE = [
    "",
    "/abs.gcode",
    "a//b.gcode",
    "./a.gcode",
    "a/../b.gcode",
    "a\\b.gcode",
    "nul\x00.gcode",
    *CONTROL,
]
SAFE = ["a.gcode", "apple/prusament pla/ä b+c.gcode", "x/..gcode", ".hidden"]


def no_digest(file: LocalFile, algorithm: str) -> str:
    raise AssertionError("no content comparison expected")


@pytest.mark.parametrize("path", UNSAFE)
def test_every_part_refuses_the_same_unsafe_paths(path: str) -> None:
    assert path_problem(path) is not None
    with pytest.raises(InputError):
        check_path(path)


@pytest.mark.parametrize("path", SAFE)
def test_every_part_takes_the_same_safe_paths(path: str) -> None:
    assert path_problem(path) is None
    assert check_path(path) == path


def test_the_back_ends_use_the_same_rules_not_a_copy() -> None:
    assert common.check_path is paths.check_path
    assert common.path_problem is paths.path_problem
    assert common.name_problem is paths.name_problem


def test_a_name_from_a_printer_has_no_slash() -> None:
    assert name_problem("a/b.gcode") == "contains a slash"
    assert name_problem("bell\x07.gcode") == "contains a control character"


@pytest.mark.parametrize("name", CONTROL)
def test_planner_leaves_out_a_source_file_with_a_control_character(name: str) -> None:
    local = LocalTree(
        (LocalFile(name, Path("/m") / name, 5, T0), LocalFile("ok.gcode", Path("/m/ok.gcode"), 5, T0))
    )
    plan = make_plan(local, [], PlanOptions(), digest=no_digest)
    assert [(a.op, a.path) for a in plan.actions] == [(Op.UPLOAD, "ok.gcode")]
    assert plan.warnings == (f"left out source file {name!r}: contains a control character",)


@pytest.mark.parametrize("name", CONTROL)
def test_planner_leaves_alone_a_printer_entry_with_a_control_character(name: str) -> None:
    remote = [RemoteEntry(name, False, size=5, mtime=T0)]
    plan = make_plan(
        LocalTree((LocalFile("ok.gcode", Path("/m/ok.gcode"), 5, T0),)),
        remote,
        PlanOptions(),
        digest=no_digest,
    )
    assert [a.op for a in plan.actions] == [Op.UPLOAD]  # no delete the back end would refuse
    assert plan.warnings == (f"left alone printer entry {name!r}: contains a control character",)


def test_destination_with_a_control_character_is_refused() -> None:
    with pytest.raises(PathProblem, match="control character"):
        normalize_destination("/usb/farm\x1b")


async def test_mirror_run_with_such_names_fails_no_action(tmp_path: Path) -> None:
    """End to end on an in-memory printer: the old planner planned both writes and each failed at the back end."""
    source = tmp_path / "master"
    write_tree(source, {"ok.gcode": "G1 ok\n", "bell\x07.gcode": "G1 bell\n"}, mtime=T0)
    printer = FakePrinter("Ash")
    printer.add("old\x1b.gcode", "G1 old\n")
    farm = FakeFarm([printer])
    report = await run_mirror(
        [printer_config("Ash")], source, MirrorOptions(dry_run=False), ctx(farm.factory)
    )
    ash = report.printer("Ash")
    assert ash.status is PrinterOutcome.SYNCED and ash.failures == []
    assert [(a.op, a.path, a.result.value) for a in ash.actions] == [("upload", "ok.gcode", "ok")]
    assert any("bell" in p and "control character" in p for p in report.problems)
    assert ash.warnings == ["left alone printer entry 'old\\x1b.gcode': contains a control character"]
    assert "old\x1b.gcode" in printer.files
