"""The type checker stays switched on and strict: `make test` runs it, and nothing quietly turns it off.

mypy itself runs in `make typecheck`; these checks guard its settings, which a one-line edit could weaken
without any test noticing.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "shared" / "farmsync"
IGNORE = re.compile(r"#\s*type:\s*ignore(?P<codes>\[[^\]]*\])?(?P<after>.*)$")
RELAXED_MODULES: set[str] = (
    set()
)  # none: the simulator is its own distribution (farmsync_sim), not the library


def _mypy() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]


def _make_target(name: str) -> str:
    for line in (ROOT / "Makefile").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return line
    raise AssertionError(f"the Makefile has no {name} target")


def test_make_test_runs_the_type_checker_after_lint() -> None:
    prerequisites = _make_target("test").split(":", 1)[1].split()
    assert "typecheck" in prerequisites and "lint" in prerequisites
    assert prerequisites.index("lint") < prerequisites.index("typecheck")
    assert "mypy" in (ROOT / "Makefile").read_text().split("typecheck: setup", 1)[1].splitlines()[1]


def test_the_library_is_checked_strictly() -> None:
    config = _mypy()
    assert config["strict"] is True
    assert config["files"] == ["shared/farmsync"]
    assert "ignore-without-code" in config.get("enable_error_code", [])
    assert "ignore_missing_imports" not in config, "missing stubs get a per-module override, not a global one"
    assert "ignore_errors" not in config
    weakened = [k for k, v in config.items() if v is False and k.startswith(("disallow_", "warn_", "check_"))]
    assert not weakened, f"[tool.mypy] turns off part of strict: {weakened}"


def test_only_the_simulator_is_exempt() -> None:
    for override in _mypy().get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        weakening = {k: v for k, v in override.items() if k != "module"}
        if weakening.get("ignore_errors") or any(v is False for v in weakening.values()):
            assert set(modules) <= RELAXED_MODULES, f"{modules} is exempt from the strict check: {weakening}"


def test_every_type_ignore_names_its_error_and_why() -> None:
    bare = []
    for path in sorted(LIBRARY.rglob("*.py")):
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines, 1):
            found = IGNORE.search(line)
            if not found:
                continue
            reason_after = found.group("after").strip().startswith("#")
            reason_above = number > 1 and lines[number - 2].strip().startswith("#")
            if not found.group("codes") or not (reason_after or reason_above):
                bare.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not bare, (
        "a type: ignore needs [error-code] and a reason (same line or the line above):\n" + "\n".join(bare)
    )
