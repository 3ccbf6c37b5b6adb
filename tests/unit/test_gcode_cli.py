"""``farmsync gcode`` through click's CliRunner, with in-memory printers injected through GcodeDeps."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from farmsync.errors import UpstreamConflict
from farmsync.gcode.cli import GcodeDeps, expand_greedy, gcode
from tests.fixtures.manifest import MemoryManifestStore
from tests.unit.gcode_fakes import T0, FakeFarm, FakePrinter, write_tree

NAMES = ("Ash", "Bishop", "Call")


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "printers.yml"
    config.write_text(
        "".join(
            f"{name}:\n  printer_type: MK4\n  host: http://127.0.0.1:{8101 + i}\n  username: maker\n"
            f"  password: secret-{name}\n"
            for i, name in enumerate(NAMES)
        )
    )
    source = tmp_path / "usb"
    write_tree(source, {"apple/a.gcode": "G1 apple\n", "b.gcode": "G1 b\n"}, mtime=T0)
    farm = FakeFarm(FakePrinter(n) for n in NAMES)
    deps = GcodeDeps(backend_factory=farm.factory, manifest=MemoryManifestStore())
    return tmp_path, config, source, farm, deps


def invoke(setup, *args: str):
    tmp_path, config, source, _, deps = setup
    base = ["-c", str(config), "-s", str(source), "--data-dir", str(tmp_path / "data")]
    return CliRunner().invoke(gcode, [*base, *args], obj=deps)


def test_dry_run_is_the_default(setup):
    result = invoke(setup)
    assert result.exit_code == 0, result.output
    farm = setup[3]
    assert all(p.writes() == [] for p in farm.printers.values())
    assert "dry run" in result.stdout
    assert "apple/a.gcode" in result.stdout
    assert not (setup[0] / "data").exists()


def test_go_uploads_and_exits_0(setup):
    result = invoke(setup, "-g", "-d", "/usb/")
    assert result.exit_code == 0, result.output
    for printer in setup[3].printers.values():
        assert sorted(printer.files) == ["apple/a.gcode", "b.gcode"]
    assert "summary" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["-p", "ash", "BISHOP"],
        ["-p", "Ash", "-p", "Bishop"],
        ["--printer", "Ash", "Bishop"],
        ["--printer=Ash", "Bishop"],
        ["-p", "Ash", "Bishop", "-g"],
        ["-x", "Call"],
        ["-x", "call", "-g"],
    ],
)
def test_printer_selection(setup, args):
    result = invoke(setup, *args)
    assert result.exit_code == 0, result.output
    assert sorted(setup[3].constructed) == ["Ash", "Bishop"]
    assert setup[3]["Call"].calls == []


def test_exclude_ignored_with_printer_prints_a_note(setup):
    result = invoke(setup, "-p", "Ash", "-x", "Ash", "Bishop")
    assert result.exit_code == 0, result.output
    assert setup[3].constructed == ["Ash"]
    assert "--exclude is ignored" in result.stdout
    result = invoke(setup, "-p", "Ash", "-x", "Ash", "--json")
    assert "--exclude is ignored" in result.stderr
    assert json.loads(result.stdout)["notes"] == [
        "--exclude is ignored because --printer was given (as link-sync does)"
    ]


def test_unknown_printer_is_a_usage_error(setup):
    result = invoke(setup, "-p", "Ahs")
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: --printer: no printer named 'Ahs' (known: Ash, Bishop, Call)"
    ]
    assert setup[3].constructed == []


def test_partial_failure_exits_2_and_lists_the_failure(setup):
    setup[3]["Bishop"].fail[("upload", "b.gcode")] = UpstreamConflict(
        "Bishop", "PUT", "/api/v1/files/usb/b.gcode", "File is busy", status=409
    )
    result = invoke(setup, "-g")
    assert result.exit_code == 2
    assert "File is busy" in result.stdout
    assert sorted(setup[3]["Ash"].files) == ["apple/a.gcode", "b.gcode"]


def test_unreachable_printer_exits_2_others_synced(setup):
    setup[3].unreachable.add("Call")
    result = invoke(setup, "-g", "--json")
    assert result.exit_code == 2
    report = json.loads(result.stdout)
    assert {p["name"]: p["status"] for p in report["printers"]} == {
        "Ash": "synced",
        "Bishop": "synced",
        "Call": "failed",
    }


def test_deferred_printers(setup):
    setup[3]["Ash"].state = "PRINTING"
    result = invoke(setup, "-g")
    assert result.exit_code == 0, result.output
    assert "deferred" in result.stdout and setup[3]["Ash"].files == {}
    for name in ("Bishop", "Call"):
        setup[3][name].state = "PAUSED"
    assert invoke(setup, "-g").exit_code == 2  # every printer deferred: nothing happened anywhere
    assert invoke(setup, "-g", "--ignore-state").exit_code == 0
    assert sorted(setup[3]["Ash"].files) == ["apple/a.gcode", "b.gcode"]


def test_json_shape(setup):
    setup[3]["Ash"].add("extra.gcode", "x")
    result = invoke(setup, "--json", "-p", "Ash")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout holds the JSON and nothing else
    assert report["dry_run"] is True and report["exit_code"] == 0
    assert report["excluded"] == ["Bishop", "Call"]
    [ash] = report["printers"]
    assert {k: ash[k] for k in ("name", "kind", "state", "status", "error")} == {
        "name": "Ash",
        "kind": "prusalink",
        "state": "IDLE",
        "status": "dry_run",
        "error": None,
    }
    assert [(a["op"], a["path"], a["result"]) for a in ash["actions"]] == [
        ("delete", "extra.gcode", "planned"),
        ("upload", "apple/a.gcode", "planned"),
        ("upload", "b.gcode", "planned"),
    ]
    assert set(ash["actions"][1]) >= {"op", "path", "size", "result", "error", "seconds", "reason"}
    assert ash["actions"][1]["size"] == 9


def test_json_go_keeps_progress_off_stdout(setup):
    result = invoke(setup, "--json", "-g")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert all(p["status"] == "synced" for p in report["printers"])
    assert all(
        a["result"] == "ok" and a["seconds"] is not None for p in report["printers"] for a in p["actions"]
    )


def test_bad_printers_yml_is_one_line_per_problem(setup):
    _, config, *_ = setup
    config.write_text(
        "Ash:\n  printer_type: MK4\n  host: ftp://127.0.0.1\n  username: maker\n  password: hunter2\n"
    )
    result = invoke(setup)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: printer 'Ash': key 'host': expected an http(s) URL, got 'ftp://127.0.0.1'"
    ]
    assert "Traceback" not in result.output and "hunter2" not in result.output


def test_missing_config_and_missing_source_exit_1(setup):
    tmp_path, _, source, _, deps = setup
    result = CliRunner().invoke(gcode, ["-c", str(tmp_path / "nope.yml"), "-s", str(source)], obj=deps)
    assert result.exit_code == 1 and "file not found" in result.stderr
    result = CliRunner().invoke(gcode, ["-c", str(tmp_path / "printers.yml")], obj=deps)
    assert result.exit_code == 1 and "--source" in result.stderr
    result = CliRunner().invoke(gcode, ["-s", str(tmp_path / "nope")], obj=deps)
    assert result.exit_code == 1


def test_empty_source_is_a_usage_error(setup):
    tmp_path, config, _, farm, deps = setup
    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(gcode, ["-c", str(config), "-s", str(tmp_path / "empty")], obj=deps)
    assert result.exit_code == 1 and "--allow-empty-source" in result.stderr
    assert farm.constructed == []


def test_suffix_option_replaces_the_default(setup):
    write_tree(setup[2], {"c.GX": "G1 c\n"})
    result = invoke(setup, "--suffix", "gx", "--json", "-p", "Ash")
    assert result.exit_code == 0, result.output
    [ash] = json.loads(result.stdout)["printers"]
    assert [a["path"] for a in ash["actions"]] == ["c.GX"]


def test_concurrency_and_verbose(setup):
    result = invoke(setup, "--concurrency", "1", "-v", "-g")
    assert result.exit_code == 0, result.output
    result = invoke(setup, "-v")
    assert "unchanged" in result.stdout
    assert invoke(setup, "--concurrency", "-1").exit_code == 1


def test_bad_destination_exits_1(setup):
    result = invoke(setup, "-d", "/usb/../etc")
    assert result.exit_code == 1 and "destination" in result.stderr


def test_pull_is_built(setup):  # its own tests: tests/unit/test_gcode_pull_cli.py
    result = invoke(setup, "--pull")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.stdout


def test_help_lists_link_sync_flags():
    result = CliRunner().invoke(gcode, ["--help"])
    assert result.exit_code == 0
    for flag in (
        "--config",
        "--source",
        "--destination",
        "--relative-to",
        "--printer",
        "--exclude",
        "--go",
        "--ignore-state",
        "--json",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-p", "A", "B"], ["-p", "A", "-p", "B"]),
        (["-p", "A", "-g", "B"], ["-p", "A", "-g", "B"]),
        (["-pA", "B"], ["-pA", "-p", "B"]),
        (["--printer=A", "B", "-x", "C", "D"], ["--printer=A", "--printer", "B", "-x", "C", "-x", "D"]),
        (["-s", "src", "-p"], ["-s", "src", "-p"]),
        (["-p", "A", "--", "B"], ["-p", "A", "--", "B"]),
    ],
)
def test_expand_greedy(args, expected):
    assert expand_greedy(args, {"-p", "--printer", "-x", "--exclude"}) == expected


async def test_default_factory_builds_the_real_backend_without_connecting():
    from farmsync.gcode.backends.base import PrinterBackend
    from farmsync.gcode.cli import default_backend_factory
    from tests.unit.gcode_fakes import printer_config

    backend = default_backend_factory(printer_config("Ash", storage="/usb/"))
    try:
        assert isinstance(backend, PrinterBackend)
        assert (backend.name, backend.kind.value) == ("Ash", "prusalink")
    finally:
        await backend.aclose()


def test_runs_under_the_farmsync_group_with_deps_in_its_dict(setup):
    from farmsync.cli import cli

    _, config, source, farm, deps = setup
    args = ["gcode", "-c", str(config), "-s", str(source), "-p", "Ash", "Bishop", "-g"]
    result = CliRunner().invoke(cli, args, obj={"gcode": deps})
    assert result.exit_code == 0, result.output
    assert sorted(farm.constructed) == ["Ash", "Bishop"]
    assert sorted(farm["Bishop"].files) == ["apple/a.gcode", "b.gcode"]


def test_identical_plans_share_one_table_at_80_columns(setup):
    tmp_path, config, source, _, deps = setup
    (source / "a rather long folder name" / "another long one").mkdir(parents=True)
    long = (
        source / "a rather long folder name" / "another long one" / "apple_0.4n_0.15mm_PLA_MK4IS_4h52m.gcode"
    )
    long.write_text("G1\n")
    args = ["-c", str(config), "-s", str(source), "--data-dir", str(tmp_path / "data")]
    result = CliRunner().invoke(gcode, args, obj=deps, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert max(len(line) for line in out.splitlines()) <= 80, out
    assert "Ash, Bishop, Call → / (storage root)" in out
    assert out.count("b.gcode") == 1  # one group, not one table per printer
    assert "…" not in out  # wrapped, never truncated
    assert "apple_0.4n_0.15mm_PLA" in out.replace("\n", "").replace("│", "").replace(" ", "")
    assert out.strip().splitlines()[-1] == "would send 9 file(s), 51 B, to 3 printer(s)"
