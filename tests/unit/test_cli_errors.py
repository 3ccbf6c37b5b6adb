"""Errors that lead somewhere: the mistyped command, the misspelt setting, the host and port that did not answer."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from farmsync.cli import cli
from farmsync.clients.http import HttpClient, RetryPolicy
from farmsync.envcheck import unknown_settings
from farmsync.errors import UpstreamTransportError


def test_a_mistyped_command_suggests_the_right_one() -> None:
    result = CliRunner().invoke(cli, ["statsu"])
    assert result.exit_code == 2
    assert "No such command 'statsu'. Did you mean 'status'?" in result.output


def test_a_misspelt_setting_in_the_env_file_is_named_with_the_likely_one(tmp_path: Path) -> None:
    env = tmp_path / "farm.env"
    env.write_text("FILAMENT_DRYRUN=false\nFILAMENT_TRACKING_ENABLED=false\nUNRELATED_THING=1\n")
    result = CliRunner().invoke(cli, ["--env-file", str(env), "config", "--json"])
    assert result.exit_code == 0, result.output
    assert (
        "warning: FILAMENT_DRYRUN in the settings file is not a farmsync setting and is ignored; "
        "did you mean FILAMENT_DRY_RUN?"
    ) in result.stderr
    assert "FILAMENT_TRACKING_ENABLED" not in result.stderr and "UNRELATED_THING" not in result.stderr


def test_a_misspelt_setting_in_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GCODE_SOURCE_DIRR", "/srv/master")
    (tmp_path / "empty.env").write_text("")
    result = CliRunner().invoke(cli, ["--env-file", str(tmp_path / "empty.env"), "config", "--json"])
    assert "warning: GCODE_SOURCE_DIRR is not a farmsync setting" in result.stderr
    assert "did you mean GCODE_SOURCE_DIR?" in result.stderr
    lines = unknown_settings({"GCODE_SOURCE_DIRR": "x", "PATH": "/bin", "HOME": "/root", "SYNC_UNITS": "run"})
    assert lines == [
        "GCODE_SOURCE_DIRR is not a farmsync setting and is ignored; did you mean GCODE_SOURCE_DIR?",
        "SYNC_UNITS is not a farmsync setting and is ignored; did you mean SYNC_UNIT?",
    ]


async def test_a_connection_failure_names_host_and_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    client = HttpClient("inventree", f"http://127.0.0.1:{port}", retry=RetryPolicy(attempts=1))
    try:
        with pytest.raises(UpstreamTransportError, match=rf"connection failed \(127\.0\.0\.1:{port}\)"):
            await client.request("GET", "/api/")
    finally:
        await client.aclose()


def test_shell_completion_as_the_readme_documents_it() -> None:
    """README: ``eval "$(_FARMSYNC_COMPLETE=bash_source farmsync)"``; the lazy subcommands complete too."""
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert 'eval "$(_FARMSYNC_COMPLETE=bash_source farmsync)"' in readme
    script = "import sys; from farmsync.cli import cli; cli(prog_name='farmsync')"
    env = {"PATH": "/usr/bin:/bin", "COMP_WORDS": "farmsync sta", "COMP_CWORD": "1"}
    answer = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "_FARMSYNC_COMPLETE": "bash_complete"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert answer.stdout.split() == ["plain,status"], answer.stderr


def test_sim_and_demo_come_from_the_simulator_distribution_through_entry_points() -> None:
    """The product names no simulator module: `farmsync sim` and `farmsync demo` are whatever farmsync_sim
    declares in the ``farmsync.commands`` entry points (installed by `make setup`)."""
    import importlib.metadata

    from farmsync.cli import COMMAND_PLUGINS, LAZY_COMMANDS

    declared = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=COMMAND_PLUGINS)}
    assert declared == {"sim": "farmsync_sim.cli:sim", "demo": "farmsync_sim.demo:demo"}
    assert not any("sim" in target for target in LAZY_COMMANDS.values())
    listed = CliRunner().invoke(cli, ["--help"])
    assert "demo " in listed.output and "sim " in listed.output
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0 and "simulated farm" in result.output


def test_demo_without_the_simulator_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.metadata

    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **_: importlib.metadata.EntryPoints(()))
    listed = CliRunner().invoke(cli, ["--help"])
    assert listed.exit_code == 0 and "demo " not in listed.output and "sim " not in listed.output
    for command in ("demo", "sim"):
        result = CliRunner().invoke(cli, [command])
        assert result.exit_code == 1, result.output
        flat = " ".join(result.stderr.split())
        assert f"`farmsync {command}` needs the simulator (farmsync_sim), not installed here." in flat
        assert "`make demo` installs it" in flat and "pip install -e shared/farmsync_sim" in flat
        assert max(len(line) for line in result.stderr.splitlines()) <= 80
        assert result.exception is None or isinstance(result.exception, SystemExit)
