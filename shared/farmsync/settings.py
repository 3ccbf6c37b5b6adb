"""One settings model for every entry point, read from the environment and an optional ``.env``.

The variables an existing print-farm ``.env`` already holds (Bambuddy, InvenTree, print and filament sync) keep
their names and defaults, so such a file works unchanged. New settings have names that say what they do; ``.env.example`` documents each in one line.
Secrets are ``SecretStr``: they never print, and a bad value is reported without echoing it.
"""

from __future__ import annotations

import os
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from farmsync.errors import ConfigError
from farmsync.security import mask_url, strip_credentials

ENV_FILE_VARIABLE = "FARMSYNC_ENV_FILE"

CommaList = Annotated[list[str], NoDecode]


def default_data_dir() -> Path:
    """``./data`` beside where farmsync runs; the container image sets ``DATA_DIR=/data``, where existing deployments keep their data."""
    return Path("data")


class StoreBackend(StrEnum):
    SQLITE = "sqlite"
    FIRESTORE = "firestore"


class SyncUnit(StrEnum):
    RUN = "run"  # one StockItem per completed print-log run
    ARCHIVE = "archive"  # one StockItem per archive, as existing ``bambuddy-<archive>`` batches were made


class BatchSource(StrEnum):
    TAG_UID = "tag_uid"
    TRAY_UUID = "tray_uuid"


class NotifyStyle(StrEnum):
    NTFY = "ntfy"  # text body, Title/Priority/Tags headers
    HOMEASSISTANT = "homeassistant"  # JSON to a Home Assistant webhook trigger
    SLACK = "slack"  # JSON {"text": ...}: Slack, Mattermost, Discord's /slack endpoint


NOTIFY_EVENTS = ("parked", "conflict", "gcode_failed")


class LogFormat(StrEnum):
    AUTO = "auto"  # JSON when not on a terminal (Cloud Logging, systemd), text on a terminal
    JSON = "json"
    TEXT = "text"


SECRET_FIELDS = (
    "bambuddy_api_key",
    "inventree_token",
    "service_api_token",
    "webhook_shared_secret",
    "notify_url",
)
URL_FIELDS = ("bambuddy_base_url", "inventree_base_url", "inventree_web_url")
"""URLs may carry ``user:password@``: shown only through :func:`farmsync.security.mask_url`."""


class Settings(BaseSettings):
    """Resolved configuration. Field names are the lower-case environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        validate_default=True,
        env_ignore_empty=True,
    )

    # --- Existing names: connections ----------------------------------------------------------------------
    bambuddy_base_url: str = ""
    bambuddy_api_key: SecretStr = SecretStr("")
    inventree_base_url: str = ""
    inventree_web_url: str = ""
    inventree_token: SecretStr = SecretStr("")
    inventree_part_category_id: int | None = None
    inventree_stock_location_id: int | None = None
    service_api_token: SecretStr = SecretStr("")
    webhook_shared_secret: SecretStr = SecretStr("")

    # --- Existing names: print sync -------------------------------------------------------------------------
    sync_success_only: bool = True
    sync_part_images: bool = True
    overwrite_part_images: bool = False
    sync_archive_external_link: bool = True
    overwrite_archive_external_link: bool = False
    default_stock_quantity: int = Field(1, ge=1)
    inventree_stock_status: int = 10
    part_ipn_prefix: str = Field("BMB", min_length=1, max_length=40)
    part_key_fields: CommaList = Field(
        default_factory=lambda: ["content_hash", "filename", "print_name", "name"]
    )
    backfill_page_size: int = Field(50, ge=1, le=500)
    poll_interval_seconds: int = Field(300, ge=0)
    sync_on_startup: bool = False
    http_timeout_seconds: float = Field(30.0, gt=0)

    # --- Existing names: filament -----------------------------------------------------------------------------
    filament_tracking_enabled: bool = False
    filament_dry_run: bool = True
    filament_part_category_id: int | None = None
    filament_storage_location_id: int | None = None
    filament_loaded_location_id: int | None = None
    filament_printer_location_map: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)
    filament_batch_source: BatchSource = BatchSource.TAG_UID
    filament_sync_spools: bool = True
    filament_sync_locations: bool = True
    filament_sync_usage: bool = True
    filament_return_unassigned_to_storage: bool = False
    filament_usage_limit: int = Field(200, ge=1, le=10000)
    filament_usage_success_statuses: CommaList = Field(
        default_factory=lambda: ["success", "completed", "complete", "done"]
    )
    filament_default_material: str = "PLA"
    filament_default_label_weight: int = Field(1000, ge=0)
    filament_default_core_weight: int = Field(250, ge=0)
    data_dir: Path = Field(default_factory=default_data_dir)

    # --- New: filament guards -----------------------------------------------------------------------------------
    filament_min_deduction_grams: float = Field(0.05, ge=0)
    filament_max_deduction_grams: float = Field(3000.0, gt=0)

    # --- New: print sync -----------------------------------------------------------------------------------------
    sync_unit: SyncUnit = SyncUnit.RUN
    sync_concurrency: int = Field(8, ge=1, le=64)
    sync_max_attempts: int = Field(5, ge=1)
    tick_time_budget_seconds: float = Field(50.0, gt=0)
    lease_seconds: float = Field(120.0, gt=0)

    # --- New: store ------------------------------------------------------------------------------------------------
    store_backend: StoreBackend = StoreBackend.SQLITE
    firestore_project_id: str = Field(
        default_factory=lambda: os.environ.get("GOOGLE_CLOUD_PROJECT") or "demo-farmsync"
    )
    firestore_database: str = "(default)"
    firestore_collection_prefix: str = Field("farmsync", pattern=r"^[A-Za-z0-9_-]{1,40}$")
    firestore_emulator_host: str = ""  # honoured from .env too; the environment's value wins

    # --- New: G-code mirror ------------------------------------------------------------------------------------------
    gcode_printers_file: Path = Path("printers.yml")
    gcode_source_dir: Path | None = None
    gcode_destination: str = ""
    gcode_relative_to: Path | None = None
    gcode_dry_run: bool = True
    gcode_ignore_state: bool = False
    gcode_suffixes: CommaList = Field(default_factory=lambda: [".gcode", ".bgcode", ".gco", ".g"])
    gcode_concurrency: int = Field(0, ge=0)
    gcode_pull: bool = False

    # --- New: service --------------------------------------------------------------------------------------------------
    port: int = Field(8088, ge=1, le=65535)
    allow_open_access: bool = False  # serve without a service token on a non-loopback address
    log_format: LogFormat = LogFormat.AUTO
    log_level: str = Field("INFO", pattern=r"^(?i:debug|info|warning|error)$")
    metrics_public: bool = False

    # --- New: notifications (the URL is a secret: ntfy topics and webhook ids are the credential) -------------
    notify_url: SecretStr = SecretStr("")
    notify_style: NotifyStyle = NotifyStyle.NTFY
    notify_events: CommaList = Field(default_factory=lambda: list(NOTIFY_EVENTS))
    notify_timeout_seconds: float = Field(5.0, gt=0, le=60)

    @field_validator(
        "part_key_fields", "filament_usage_success_statuses", "gcode_suffixes", "notify_events", mode="before"
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("gcode_suffixes")
    @classmethod
    def _dot_suffixes(cls, value: list[str]) -> list[str]:
        return [s.lower() if s.startswith(".") else f".{s.lower()}" for s in value]

    @field_validator("part_key_fields")
    @classmethod
    def _known_key_fields(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected at least one archive field name, e.g. content_hash,filename")
        return value

    @field_validator("filament_printer_location_map", mode="before")
    @classmethod
    def _parse_location_map(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        mapping: dict[str, int] = {}
        for entry in (e.strip() for e in value.split(",")):
            if not entry:
                continue
            prefix, sep, location = entry.rpartition(":")
            if not sep or not prefix.strip() or not location.strip().isdigit():
                raise ValueError(f"expected PREFIX:LOCATION_ID pairs like B1:93, got entry {entry!r}")
            mapping[prefix.strip()] = int(location)
        return mapping

    @field_validator("notify_events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(NOTIFY_EVENTS))
        if unknown:
            raise ValueError(f"expected events from {','.join(NOTIFY_EVENTS)}, got {','.join(unknown)}")
        return value

    def notifies(self, kind: str) -> bool:
        """Whether ``kind`` events are sent (NOTIFY_URL set, the kind in NOTIFY_EVENTS); a run checks this before
        importing farmsync.notify, which a cold start with notifications off never needs."""
        return bool(self.notify_url.get_secret_value()) and kind in self.notify_events

    @field_validator("notify_url")
    @classmethod
    def _notify_url(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if text and not text.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")  # never echo it: it carries a token
        return SecretStr(text)

    @field_validator(*URL_FIELDS)
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {mask_url(value)!r}")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _guards_in_order(self) -> Settings:
        if self.filament_min_deduction_grams >= self.filament_max_deduction_grams:
            raise ValueError("FILAMENT_MIN_DEDUCTION_GRAMS must be below FILAMENT_MAX_DEDUCTION_GRAMS")
        return self

    # --- Derived values -------------------------------------------------------------------------------------------

    @property
    def inventree_root_url(self) -> str:
        """INVENTREE_BASE_URL with any trailing ``/api`` removed: existing ``.env`` files use both forms."""
        url = self.inventree_base_url.rstrip("/")
        return url[: -len("/api")] if url.endswith("/api") else url

    @property
    def inventree_browser_url(self) -> str:
        """Base for part links written into Bambuddy: INVENTREE_WEB_URL, else the server root, never with the
        credentials a URL may carry (people open these links; the archive is not a place for passwords)."""
        return strip_credentials(self.inventree_web_url or self.inventree_root_url).rstrip("/")

    @property
    def sqlite_path(self) -> Path:
        """The embedded store, ``sync.sqlite3``: the file name existing deployments already keep in DATA_DIR."""
        return self.data_dir / "sync.sqlite3"

    def missing_for(self, feature: str) -> list[str]:
        """Variables that ``feature`` ("prints", "filament", "gcode") needs and that are unset."""
        needed: dict[str, list[str]] = {
            "prints": [
                "bambuddy_base_url",
                "inventree_base_url",
                "inventree_token",
                "inventree_part_category_id",
                "inventree_stock_location_id",
            ],
            "filament": [
                "bambuddy_base_url",
                "inventree_base_url",
                "inventree_token",
                "filament_part_category_id",
            ],
            "gcode": ["gcode_source_dir"],
        }
        missing = []
        for name in needed[feature]:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            if value in (None, ""):
                missing.append(name.upper())
        return missing

    def require(self, feature: str) -> None:
        """Raise ConfigError naming every unset variable that ``feature`` needs."""
        missing = self.missing_for(feature)
        if missing:
            raise ConfigError([f"{name}: required for {feature} sync, but not set" for name in missing])

    def masked(self) -> dict[str, Any]:
        """Every setting as the environment names it, secrets replaced by a marker that says only set/unset."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif name in URL_FIELDS:
                value = mask_url(value)
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, StrEnum):
                value = value.value
            out[name.upper()] = value
        return out


def _explain(error: ErrorDetails) -> str:
    """One line for one pydantic error: the variable, what was expected, and what was wrong (no secrets)."""
    loc = [str(part) for part in error.get("loc", ()) if part != "__root__"]
    name = loc[0].upper() if loc else "settings"
    message = error.get("msg", "invalid value").removeprefix("Value error, ")
    if loc and loc[0] in SECRET_FIELDS:
        return f"{name}: {message}"
    message = message[:1].lower() + message[1:]
    raw = error.get("input")
    if loc and loc[0] in URL_FIELDS and isinstance(raw, str):
        raw = mask_url(raw)
    if raw is None or isinstance(raw, dict) or error.get("type") == "missing" or "got " in message:
        return f"{name}: {message}"
    return f"{name}: {message} (got {raw!r})"


def load_settings(env_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Read settings from the environment and ``env_file`` (default: FARMSYNC_ENV_FILE or ``.env``).

    Raises ConfigError with one line per problem; the caller prints them and exits 1.
    """
    path = env_file if env_file is not None else os.environ.get(ENV_FILE_VARIABLE, ".env")
    if env_file is not None and not Path(env_file).exists():
        raise ConfigError(f"{ENV_FILE_VARIABLE}: file {str(env_file)!r} does not exist")
    try:
        return Settings(_env_file=path, **overrides)
    except ValidationError as exc:
        raise ConfigError([_explain(e) for e in exc.errors(include_url=False)]) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (cold start matters for functions)."""
    return load_settings()
