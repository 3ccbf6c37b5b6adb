"""Open by default: with no SERVICE_API_TOKEN, ``farmsync serve`` bound every address and anyone on the network
could apply destructive runs. Now it refuses a non-loopback address without a real token unless the operator
opts in (``--allow-open-access`` or ALLOW_OPEN_ACCESS=true), and ``config``, ``validate`` and ``serve`` warn
about every token that is unset or still a placeholder (``.env.example`` ships ``SERVICE_API_TOKEN=change-me``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from farmsync.cli import cli
from farmsync.errors import ConfigError
from farmsync.security import is_loopback, is_placeholder
from farmsync.services import set_services
from tests.fixtures.cli import run_farmsync
from tests.fixtures.cli import write_env as write_env_file


def write_env(tmp_path: Path, **values: str) -> Path:
    return write_env_file(
        tmp_path / "farm.env", DATA_DIR=tmp_path / "data", POLL_INTERVAL_SECONDS=0, **values
    )


def opted_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], **values: str
) -> dict[str, Any]:
    """Run ``serve`` in-process up to the point where it would listen, and say where that would have been."""
    import farmsync.web.serve as web_serve

    seen: dict[str, Any] = {}

    def listen(host: str, port: int) -> Any:
        seen.update(host=host, port=port)
        raise SystemExit(0)  # stop before anything binds: tests never listen beyond loopback

    monkeypatch.setattr(web_serve, "listen", listen)
    for name in ("SERVICE_API_TOKEN", "ALLOW_OPEN_ACCESS", "HOST"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["--env-file", str(write_env(tmp_path, **values)), "serve", *args])
    set_services(None)
    seen["output"], seen["exception"] = result.output, result.exception
    return seen


@pytest.mark.parametrize("token", ["", "change-me", "replace-with-a-token"])
def test_serve_refuses_the_network_without_a_real_token(tmp_path: Path, token: str) -> None:
    """The whole command: exit 1, one short line per problem. 192.0.2.10 (TEST-NET) is no address of this
    machine, so even the old behaviour could not have listened anywhere."""
    env = write_env(tmp_path, SERVICE_API_TOKEN=token)
    result = run_farmsync(env, "serve", "--host", "192.0.2.10", "--port", "18087")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "serving on" not in result.stderr
    assert "SERVICE_API_TOKEN" in result.stderr and "--allow-open-access" in result.stderr
    assert all(len(line) <= 80 for line in result.stderr.splitlines()), result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "farm.example"])
@pytest.mark.parametrize("token", ["", "change-me", "CHANGE-ME"])
def test_every_address_is_refused_before_listening(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, token: str
) -> None:
    seen = opted_in(tmp_path, monkeypatch, ["--host", host, "--port", "18086"], SERVICE_API_TOKEN=token)
    assert "host" not in seen, f"serve went on to listen on {host}"
    assert isinstance(seen["exception"], ConfigError), seen
    assert "SERVICE_API_TOKEN" in str(seen["exception"])


def test_the_operator_can_opt_in_by_flag_or_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_flag = opted_in(tmp_path, monkeypatch, ["--allow-open-access", "--port", "18088"])
    assert by_flag.get("host") == "0.0.0.0" and by_flag["port"] == 18088, by_flag
    by_setting = opted_in(tmp_path, monkeypatch, ["--port", "18089"], ALLOW_OPEN_ACCESS="true")
    assert by_setting.get("host") == "0.0.0.0", by_setting
    assert "SERVICE_API_TOKEN is not set" in by_setting["output"]  # still warned
    with_token = opted_in(tmp_path, monkeypatch, ["--port", "18090"], SERVICE_API_TOKEN="a-real-token-1234")
    assert with_token.get("host") == "0.0.0.0" and "SERVICE_API_TOKEN" not in with_token["output"]


def test_loopback_needs_no_token_but_is_warned_about(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    local = opted_in(tmp_path, monkeypatch, ["--host", "127.0.0.1", "--port", "18091"])
    assert local.get("host") == "127.0.0.1"
    assert "warning: SERVICE_API_TOKEN is not set" in local["output"]
    assert "warning: WEBHOOK_SHARED_SECRET is not set" in local["output"]


def test_config_and_validate_warn_about_unset_and_placeholder_tokens(tmp_path: Path) -> None:
    env = write_env(tmp_path, SERVICE_API_TOKEN="change-me")
    as_json = run_farmsync(env, "config", "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["SERVICE_API_TOKEN"] == "********"
    assert "warning: SERVICE_API_TOKEN is a placeholder" in as_json.stderr
    assert "warning: WEBHOOK_SHARED_SECRET is not set" in as_json.stderr
    table = run_farmsync(env, "config")
    assert "warning: SERVICE_API_TOKEN is a placeholder" in table.stderr
    validate = run_farmsync(env, "validate", "--json")
    checks = {c["check"]: c for c in json.loads(validate.stdout)["checks"]}
    assert checks["SERVICE_API_TOKEN"]["level"] == "warning", checks
    assert checks["WEBHOOK_SHARED_SECRET"]["level"] == "warning", checks
    quiet = run_farmsync(
        write_env(tmp_path, SERVICE_API_TOKEN="real-token-5678", WEBHOOK_SHARED_SECRET="real-secret-5678"),
        "config",
        "--json",
    )
    assert "warning" not in quiet.stderr


def test_what_counts_as_loopback_and_placeholder() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "192.168.1.5", "farm.local", "::ffff:0:0"))
    assert all(is_placeholder(v) for v in ("change-me", "changeme", " Change-Me ", "replace-with-token"))
    assert not is_placeholder("c0ffee-8a7b-real")
