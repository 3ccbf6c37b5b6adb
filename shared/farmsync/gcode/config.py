"""printers.yml: the farm's printer file in its established format, read as is, plus optional farmsync keys.

A file maps each printer name to ``printer_type``, ``host``, ``username`` and ``password`` (the format's four
keys). farmsync also accepts ``kind`` (which API the printer speaks; inferred from ``printer_type`` when absent),
``api_key``, ``storage`` and ``destination``. Bambu Lab printers (``printer_type: X1C``, ``P1S``, ``A1``, ...) take
``host`` as a bare name or IP, ``serial``, ``access_code`` (a secret, like ``password``), optionally ``ca_bundle``,
``ftp_port``/``mqtt_port``, and ``storage`` as the folder of the card the mirror owns; ``bambuddy: <name>`` takes
host, serial and model from Bambuddy's printer list instead. Anything else is reported as an unknown key, so a typo cannot
silently drop a setting. Every problem in the file is reported at once, one line each, and no line ever
contains a password or key.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from farmsync.errors import ConfigError, InputError
from farmsync.gcode.backends.bambu_models import BAMBU_TYPES, DEFAULT_STORAGE, bambu_type
from farmsync.gcode.backends.base import Kind
from farmsync.gcode.plan import PathProblem, normalize_destination

YAML_SUFFIXES = (".yml", ".yaml")
JSON_SUFFIXES = (".json", ".jsn", ".jso")

# printer_type (upper-cased, spaces, '-' and '_' removed) -> kind
_TYPE_KINDS: dict[str, Kind] = {
    **dict.fromkeys(
        [
            "MK4",
            "MK4S",
            "MK4IS",
            "MK3.9",
            "MK3.9S",
            "MK3.5",
            "MK3.5S",
            "XL",
            "MINI",
            "MINI+",
            "COREONE",
            "COREONEL",
        ],
        Kind.PRUSALINK,
    ),
    **dict.fromkeys(["MK3", "MK3S", "MK3S+", "MK2.5", "MK2.5S"], Kind.PRUSALINK_LEGACY),
    "OCTOPRINT": Kind.OCTOPRINT,
    **dict.fromkeys(["KLIPPER", "MOONRAKER", "VORON"], Kind.MOONRAKER),
}
KINDS = ", ".join(k.value for k in Kind)


def kind_for_type(printer_type: str) -> Kind | None:
    """The API a ``printer_type`` implies (MK4 -> prusalink, MK3S -> prusalink-legacy, ...), None if unknown."""
    if bambu_type(printer_type) is not None:
        return Kind.BAMBU  # with its aliases: "X1 Carbon", "A1 mini"
    return _TYPE_KINDS.get(re.sub(r"[\s_-]+", "", printer_type).upper())


def _mask_url(value: str) -> str:
    """The URL with any user:password@ part and query string masked (either may carry a secret)."""
    return re.sub(r"\?.*$", "?***", re.sub(r"//[^/@]*@", "//***@", value))


class PrinterConfig(BaseModel):
    """One printer of printers.yml. ``name`` is the mapping key; secrets stay SecretStr until a back end asks."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, coerce_numbers_to_str=True, str_strip_whitespace=True
    )

    name: str
    kind: Kind
    host: str | None = None
    printer_type: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    api_key: SecretStr | None = None
    storage: str | None = None
    destination: str | None = None
    # Bambu Lab only (kind bambu)
    serial: str | None = None
    access_code: SecretStr | None = None
    ca_bundle: str | None = None
    ftp_port: int | None = Field(default=None, ge=1, le=65535)
    mqtt_port: int | None = Field(default=None, ge=1, le=65535)
    bambuddy: str | None = None

    @field_validator("host")
    @classmethod
    def _http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        if info.data.get("kind") is Kind.BAMBU:
            return _bare_host(value)
        shown = repr(_mask_url(value))
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise PydanticCustomError("url", "expected an http(s) URL, got {got}", {"got": shown}) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PydanticCustomError("url", "expected an http(s) URL, got {got}", {"got": shown})
        if "@" in parts.netloc:
            raise PydanticCustomError(
                "url",
                "expected an http(s) URL without credentials (use username/password), got {got}",
                {"got": shown},
            )
        if parts.query or parts.fragment:
            raise PydanticCustomError(
                "url", "expected an http(s) URL without query or fragment, got {got}", {"got": shown}
            )
        return value.rstrip("/")

    @field_validator("destination")
    @classmethod
    def _safe_destination(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            normalize_destination(value)
        except PathProblem as exc:
            raise PydanticCustomError(
                "path", "expected a folder path on the printer, but it {why}", {"why": str(exc)}
            ) from None
        return value

    @field_validator("storage")
    @classmethod
    def _storage_name(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("kind") is Kind.BAMBU:
            try:
                normalize_destination(value)
            except PathProblem as exc:
                raise PydanticCustomError(
                    "path", "expected a folder of the printer's card, but it {why}", {"why": str(exc)}
                ) from None
            return value
        if value is not None and not re.fullmatch(r"/?[A-Za-z0-9_.-]+/?", value):
            raise PydanticCustomError("storage", "expected a storage name such as usb, local or gcodes", {})
        return value

    @field_validator("serial")
    @classmethod
    def _serial(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]{6,32}", value):
            raise PydanticCustomError(
                "serial", "expected the printer's serial number (letters and digits)", {}
            )
        return value.upper() if value else value

    @property
    def card_folder(self) -> str:
        """Bambu: the folder of the card the mirror owns (display paths are relative to it; "" is the card root)."""
        folder = self.storage if self.storage is not None else DEFAULT_STORAGE
        return "/".join(part for part in folder.split("/") if part not in ("", "."))


def _bare_host(value: str) -> str:
    """A Bambu printer's host: a name or IP, no scheme, port or credentials (ports are ftp_port/mqtt_port)."""
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[?[0-9A-Fa-f:.]+\]?", value):
        raise PydanticCustomError(
            "host",
            "expected a bare host name or IP address for a Bambu printer (no http://, no port), got {got}",
            {"got": repr(_mask_url(value))},
        )
    return value.strip("[]")


_SECRET_KEYS = {"password", "api_key", "username", "access_code"}


def _explain(error: Any) -> tuple[str, str]:
    """(key, message) for one pydantic error, never quoting a secret's value."""
    loc = [str(part) for part in error.get("loc", ())]
    key = loc[0] if loc else ""
    kind = error.get("type", "")
    if kind == "missing":
        return key, "required key is missing"
    if kind == "extra_forbidden":
        fields = [f for f in PrinterConfig.model_fields if f != "name"]
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; expected one of {', '.join(fields)}"
        return key, "unknown key" + hint
    if kind == "enum":
        got = "" if key in _SECRET_KEYS else f", got {error.get('input')!r}"
        return key, f"expected one of {KINDS}{got}"
    if kind in ("string_type", "string_sub_type"):
        return key, f"expected text, got {type(error.get('input')).__name__}"
    return key, str(error.get("msg", "invalid value"))


def _credential_problems(printer: PrinterConfig) -> list[tuple[str, str]]:
    """Keys a kind cannot work without (Moonraker may trust the LAN and need none)."""
    if printer.kind is Kind.BAMBU:
        return _bambu_problems(printer)
    problems = [(key, "only for Bambu printers (kind bambu)") for key in _BAMBU_KEYS if getattr(printer, key)]
    secret = printer.password is not None or printer.api_key is not None
    if printer.kind in (Kind.PRUSALINK, Kind.PRUSALINK_LEGACY, Kind.OCTOPRINT) and not secret:
        problems.append(("password", f"required for kind {printer.kind.value} (or set 'api_key')"))
    return problems


_BAMBU_KEYS = ("serial", "access_code", "ca_bundle", "ftp_port", "mqtt_port", "bambuddy")


def _bambu_problems(printer: PrinterConfig) -> list[tuple[str, str]]:
    """A Bambu printer needs host, serial and access_code, unless Bambuddy names host and serial."""
    problems: list[tuple[str, str]] = []
    for key in ("username", "password", "api_key"):
        if getattr(printer, key) is not None:
            problems.append((key, "not used by Bambu printers (user bblp; set 'access_code')"))
    if printer.access_code is None:
        problems.append(
            ("access_code", "required for Bambu printers (the LAN access code on the printer's screen)")
        )
    if printer.bambuddy is None:
        problems.extend(
            (key, "required key is missing (or set 'bambuddy')")
            for key in ("host", "serial")
            if getattr(printer, key) is None
        )
    if printer.printer_type is not None and bambu_type(printer.printer_type) is None:
        problems.append(("printer_type", f"expected one of {', '.join(BAMBU_TYPES)} for a Bambu printer"))
    if printer.ca_bundle is not None and not Path(printer.ca_bundle).expanduser().is_file():
        problems.append(("ca_bundle", "file not found"))
    return problems


def parse_printers(data: Any, *, label: str = "printers.yml") -> list[PrinterConfig]:
    """Validate already-loaded printers.yml data; raise ConfigError listing every problem."""
    if not isinstance(data, dict):
        found = "nothing" if data is None else type(data).__name__
        raise ConfigError(f"{label}: expected a mapping of printer name to settings, got {found}")
    if not data:
        raise ConfigError(f"{label}: no printers defined")
    problems: list[str] = []
    printers: list[PrinterConfig] = []
    seen: dict[str, str] = {}
    for raw_name, raw in data.items():
        name = str(raw_name).strip() if isinstance(raw_name, str | int | float) else ""
        where = f"{label}: printer {name!r}"
        if not name:
            problems.append(f"{label}: printer names must be non-empty text, got {raw_name!r}")
            continue
        if name.casefold() in seen:
            problems.append(f"{where}: same name as {seen[name.casefold()]!r} (names are case-insensitive)")
            continue
        seen[name.casefold()] = name
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected a mapping of settings, got {type(raw).__name__}")
            continue
        entry: dict[str, Any] = {str(k): v for k, v in raw.items()}
        if "name" in entry:
            problems.append(f"{where}: key 'name': unknown key; the name is the mapping key")
            continue
        entry_problems: list[tuple[str, str]] = []
        if entry.get("kind") is None:
            entry.pop("kind", None)
            printer_type = entry.get("printer_type")
            if printer_type is None and entry.get("bambuddy") is not None:
                entry["kind"] = Kind.BAMBU  # a printer Bambuddy knows is a Bambu printer
            elif printer_type is None:
                entry_problems.append(
                    ("printer_type", f"required key is missing (or set 'kind' to one of {KINDS})")
                )
            else:
                kind = kind_for_type(str(printer_type))
                if kind is None:
                    entry_problems.append(
                        (
                            "printer_type",
                            f"unknown printer type {str(printer_type)!r}; set 'kind' to one of {KINDS}",
                        )
                    )
                else:
                    entry["kind"] = kind
        if entry.get("host") is None and entry.get("kind") not in (Kind.BAMBU, Kind.BAMBU.value):
            entry_problems.append(("host", "required key is missing"))
        try:
            printer = PrinterConfig.model_validate({**entry, "name": name})
        except ValidationError as exc:
            entry_problems.extend(_explain(e) for e in exc.errors(include_url=False))
            if entry_problems and "kind" not in entry:
                # kind could not be inferred, so pydantic also reports it missing: say it once
                entry_problems = [p for p in entry_problems if p[0] != "kind"]
        else:
            entry_problems.extend(_credential_problems(printer))
            if not entry_problems:
                printers.append(printer)
        problems.extend(f"{where}: key {key!r}: {message}" for key, message in entry_problems)
    if problems:
        raise ConfigError(problems)
    return printers


def _refuse_duplicate_keys(
    loader: yaml.constructor.BaseConstructor, node: yaml.MappingNode, deep: bool
) -> None:
    """PyYAML keeps the last of two equal keys silently; a printers file with a key twice is a mistake."""
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        _refuse_duplicate_keys(self, node, deep)
        return super().construct_mapping(node, deep)


_LOADER: type[yaml.SafeLoader] | type[yaml.CSafeLoader] = _UniqueKeyLoader
if yaml.__with_libyaml__:

    class _FastUniqueKeyLoader(yaml.CSafeLoader):
        """The same on libyaml's parser (PyYAML's wheels have it): a 32-printer file parses in a few ms instead of
        30 ms of pure Python, on every start of the command and the tick. The constructor is Python either way."""

        def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
            _refuse_duplicate_keys(self, node, deep)
            return super().construct_mapping(node, deep)

    _LOADER = _FastUniqueKeyLoader


def _json_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def load_printers(path: Path | str) -> list[PrinterConfig]:
    """Read and validate a printers file; YAML by .yml/.yaml, JSON by .json/.jsn/.jso (the format's own suffixes)."""
    file = Path(path)
    label = str(path)
    suffix = file.suffix.lower()
    if suffix not in YAML_SUFFIXES + JSON_SUFFIXES:
        raise ConfigError(f"{label}: expected a .yml/.yaml or .json/.jsn/.jso file")
    try:
        text = file.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{label}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{label}: cannot read ({exc.__class__.__name__})") from None
    try:
        if suffix in YAML_SUFFIXES:
            data = yaml.load(text, Loader=_LOADER)  # noqa: S506 - a SafeLoader subclass
        else:
            data = json.loads(text, object_pairs_hook=_json_pairs)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{label}: not valid YAML{where}: {problem}") from None
    except ValueError as exc:
        raise ConfigError(f"{label}: not valid JSON: {exc}") from None
    return parse_printers(data, label=label)


@dataclass(frozen=True)
class Selection:
    """Which printers a run touches. ``excluded`` printers are never contacted."""

    selected: tuple[PrinterConfig, ...]
    excluded: tuple[PrinterConfig, ...]
    notes: tuple[str, ...] = ()


def select_printers(
    printers: Sequence[PrinterConfig], include: Iterable[str] = (), exclude: Iterable[str] = ()
) -> Selection:
    """Apply ``-p`` / ``-x`` (case-insensitive). ``-x`` is ignored when ``-p`` is given (the flags' long-standing meaning).

    Unknown names are an InputError: a typo in ``-x`` must not sync a printer the operator meant to skip.
    """
    include = [n.strip() for n in include if n.strip()]
    exclude = [n.strip() for n in exclude if n.strip()]
    by_name = {p.name.casefold(): p for p in printers}
    notes: list[str] = []
    if include and exclude:
        notes.append("--exclude is ignored because --printer was given")
        exclude = []
    names = include or exclude
    unknown = [n for n in names if n.casefold() not in by_name]
    if unknown:
        known = ", ".join(p.name for p in printers)
        flag = "--printer" if include else "--exclude"
        raise InputError(
            f"{flag}: no printer named {', '.join(repr(n) for n in unknown)} (known: {known})",
            field=flag.lstrip("-"),
            expected=known,
        )
    wanted = {n.casefold() for n in names}
    if include:
        selected = tuple(p for p in printers if p.name.casefold() in wanted)
    else:
        selected = tuple(p for p in printers if p.name.casefold() not in wanted)
    chosen = {p.name for p in selected}
    excluded = tuple(p for p in printers if p.name not in chosen)
    return Selection(selected=selected, excluded=excluded, notes=tuple(notes))
