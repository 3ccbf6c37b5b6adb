"""Settings that look like farmsync's but are not: ``FILAMENT_DRYRUN`` is silently ignored otherwise.

pydantic-settings ignores unknown variables (it must: the environment is full of other programs' variables), so
a typo leaves the default in force (here: a dry run that never applies) without a word. This looks at the
environment and the ``.env`` file for names that start like a farmsync setting (``FILAMENT_``, ``GCODE_``, …)
or nearly match one, and says which setting was probably meant.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from farmsync.settings import ENV_FILE_VARIABLE, Settings

OTHER_NAMES = frozenset({ENV_FILE_VARIABLE, "FIRESTORE_EMULATOR_HOST", "HOST"})
"""Variables farmsync reads outside the settings model."""


def setting_names() -> set[str]:
    return {name.upper() for name in Settings.model_fields}


def prefixes(names: set[str]) -> set[str]:
    """First words shared by two or more settings (``FILAMENT_``): generic enough words are not claimed."""
    counts = Counter(name.split("_", 1)[0] + "_" for name in names if "_" in name)
    return {prefix for prefix, n in counts.items() if n >= 2}


def read_env_file(path: str | Path | None) -> dict[str, str | None]:
    from dotenv import dotenv_values

    if path is None:
        path = os.environ.get(ENV_FILE_VARIABLE, ".env")
    return dict(dotenv_values(path)) if Path(path).is_file() else {}


def unknown_settings(variables: Mapping[str, object], where: str = "") -> list[str]:
    """One line per variable that looks like a misspelt setting, with the likely one when there is one."""
    names = setting_names()
    known = names | OTHER_NAMES
    starts = prefixes(names)
    lines = []
    for variable in sorted({v.upper() for v in variables}):
        if variable in known:
            continue
        close = difflib.get_close_matches(variable, sorted(names), n=1, cutoff=0.8)
        if not close and not any(variable.startswith(p) for p in starts):
            continue
        hint = f"; did you mean {close[0]}?" if close else " (see .env.example for the settings)"
        lines.append(f"{variable}{where} is not a farmsync setting and is ignored{hint}")
    return lines


def check_environment(env_file: str | Path | None) -> list[str]:
    """Warnings for the process environment and the settings file, the file's named as such."""
    from_file = read_env_file(env_file)
    lines = unknown_settings(from_file, " in the settings file")
    lines += unknown_settings({k: v for k, v in os.environ.items() if k not in from_file})
    return lines
