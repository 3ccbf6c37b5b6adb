"""Settings: the predecessor's .env works unchanged; bad values give one clear line each, secrets never echoed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from farmsync.errors import ConfigError
from farmsync.settings import load_settings

PREDECESSOR_ENV = """\
BAMBUDDY_BASE_URL=http://192.168.1.5:8000/api/v1
BAMBUDDY_API_KEY=replace-with-bambuddy-api-key
INVENTREE_BASE_URL=http://192.168.0.3:1337
INVENTREE_WEB_URL=
INVENTREE_TOKEN=replace-with-inventree-token
INVENTREE_PART_CATEGORY_ID=26
INVENTREE_STOCK_LOCATION_ID=98
SERVICE_API_TOKEN=change-me
WEBHOOK_SHARED_SECRET=
SYNC_SUCCESS_ONLY=true
SYNC_PART_IMAGES=true
OVERWRITE_PART_IMAGES=false
SYNC_ARCHIVE_EXTERNAL_LINK=true
OVERWRITE_ARCHIVE_EXTERNAL_LINK=false
DEFAULT_STOCK_QUANTITY=1
INVENTREE_STOCK_STATUS=10
PART_IPN_PREFIX=BMB
PART_KEY_FIELDS=content_hash,filename,print_name,name
BACKFILL_PAGE_SIZE=50
POLL_INTERVAL_SECONDS=300
SYNC_ON_STARTUP=false
HTTP_TIMEOUT_SECONDS=30
FILAMENT_TRACKING_ENABLED=false
FILAMENT_DRY_RUN=true
FILAMENT_PART_CATEGORY_ID=19
FILAMENT_STORAGE_LOCATION_ID=85
FILAMENT_LOADED_LOCATION_ID=72
FILAMENT_PRINTER_LOCATION_MAP=B1:93,B2:94,B3:95,B4:96
FILAMENT_BATCH_SOURCE=tag_uid
FILAMENT_SYNC_SPOOLS=true
FILAMENT_SYNC_LOCATIONS=true
FILAMENT_SYNC_USAGE=true
FILAMENT_RETURN_UNASSIGNED_TO_STORAGE=false
FILAMENT_USAGE_LIMIT=200
FILAMENT_USAGE_SUCCESS_STATUSES=success,completed,complete,done
FILAMENT_DEFAULT_MATERIAL=PLA
FILAMENT_DEFAULT_LABEL_WEIGHT=1000
FILAMENT_DEFAULT_CORE_WEIGHT=250
DATA_DIR=/data
"""


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the process environment: start every test from an empty one."""
    import os

    for name in list(os.environ):
        if name.startswith(
            ("BAMBUDDY_", "INVENTREE_", "FILAMENT_", "SYNC_", "GCODE_", "STORE_", "FARMSYNC_")
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write_env(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "test.env"
    path.write_text(text)
    return path


def test_predecessor_env_loads_unchanged(tmp_path: Path) -> None:
    settings = load_settings(write_env(tmp_path, PREDECESSOR_ENV))
    assert settings.bambuddy_base_url == "http://192.168.1.5:8000/api/v1"
    assert settings.inventree_part_category_id == 26
    assert settings.filament_printer_location_map == {"B1": 93, "B2": 94, "B3": 95, "B4": 96}
    assert settings.part_key_fields == ["content_hash", "filename", "print_name", "name"]
    assert settings.filament_usage_success_statuses == ["success", "completed", "complete", "done"]
    assert settings.inventree_browser_url == "http://192.168.0.3:1337"
    assert str(settings.data_dir) == "/data" and str(settings.sqlite_path) == "/data/sync.sqlite3"
    assert settings.bambuddy_api_key.get_secret_value() == "replace-with-bambuddy-api-key"
    assert settings.missing_for("prints") == []


def test_defaults_match_the_predecessor(tmp_path: Path) -> None:
    settings = load_settings(write_env(tmp_path, ""))
    assert settings.sync_success_only and settings.sync_part_images and settings.sync_archive_external_link
    assert not settings.overwrite_part_images and not settings.overwrite_archive_external_link
    assert settings.default_stock_quantity == 1 and settings.inventree_stock_status == 10
    assert settings.part_ipn_prefix == "BMB" and settings.backfill_page_size == 50
    assert settings.poll_interval_seconds == 300 and not settings.sync_on_startup
    assert (
        settings.http_timeout_seconds == 30
        and settings.filament_dry_run
        and settings.filament_usage_limit == 200
    )
    assert settings.filament_batch_source == "tag_uid" and settings.filament_default_label_weight == 1000
    assert settings.data_dir == Path("data") and settings.store_backend == "sqlite"
    assert settings.sync_unit == "run"


@pytest.mark.parametrize(
    "given", ["http://h:1337", "http://h:1337/", "http://h:1337/api", "http://h:1337/api/"]
)
def test_inventree_base_url_root_or_api_is_normalised(tmp_path: Path, given: str) -> None:
    settings = load_settings(write_env(tmp_path, f"INVENTREE_BASE_URL={given}\n"))
    assert settings.inventree_root_url == "http://h:1337"


def test_bad_values_give_one_line_each_without_secrets(tmp_path: Path) -> None:
    env = write_env(
        tmp_path,
        "INVENTREE_PART_CATEGORY_ID=abc\nSYNC_SUCCESS_ONLY=maybe\n"
        "FILAMENT_PRINTER_LOCATION_MAP=B1:93,B2\nSTORE_BACKEND=mysql\n"
        "INVENTREE_BASE_URL=ftp://x\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    problems = info.value.problems
    assert len(problems) == 5
    by_name = {p.split(":", 1)[0]: p for p in problems}
    assert (
        "integer" in by_name["INVENTREE_PART_CATEGORY_ID"]
        and "'abc'" in by_name["INVENTREE_PART_CATEGORY_ID"]
    )
    assert "boolean" in by_name["SYNC_SUCCESS_ONLY"]
    assert (
        "B1:93" in by_name["FILAMENT_PRINTER_LOCATION_MAP"]
        and "'B2'" in by_name["FILAMENT_PRINTER_LOCATION_MAP"]
    )
    assert "'sqlite' or 'firestore'" in by_name["STORE_BACKEND"]


def test_missing_feature_settings_are_named(tmp_path: Path) -> None:
    settings = load_settings(write_env(tmp_path, "BAMBUDDY_BASE_URL=http://b/api/v1\n"))
    with pytest.raises(ConfigError) as info:
        settings.require("prints")
    assert any(p.startswith("INVENTREE_TOKEN:") for p in info.value.problems)


def test_masked_hides_secrets(tmp_path: Path) -> None:
    settings = load_settings(write_env(tmp_path, PREDECESSOR_ENV))
    masked = settings.masked()
    assert masked["INVENTREE_TOKEN"] == "********" and masked["WEBHOOK_SHARED_SECRET"] == ""
    assert "replace-with" not in repr(masked) and "change-me" not in repr(masked)


def test_cli_config_bad_value_exits_1_with_one_line(tmp_path: Path) -> None:
    env = write_env(tmp_path, "HTTP_TIMEOUT_SECONDS=soon\nINVENTREE_TOKEN=inv-very-secret\n")
    result = subprocess.run(
        [sys.executable, "-m", "farmsync.cli", "--env-file", str(env), "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: HTTP_TIMEOUT_SECONDS: input should be a valid number, unable to parse string as a number (got 'soon')"
    ]
    assert "Traceback" not in result.stderr and "inv-very-secret" not in result.stdout + result.stderr


def test_cli_config_prints_masked_settings(tmp_path: Path) -> None:
    env = write_env(tmp_path, PREDECESSOR_ENV)
    result = subprocess.run(
        [sys.executable, "-m", "farmsync.cli", "--env-file", str(env), "config", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"INVENTREE_PART_CATEGORY_ID": 26' in result.stdout
    assert (
        "replace-with-inventree-token" not in result.stdout
        and '"INVENTREE_TOKEN": "********"' in result.stdout
    )


def test_missing_env_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "farmsync.cli", "--env-file", "nope.env", "config"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "does not exist" in result.stderr and "Traceback" not in result.stderr
