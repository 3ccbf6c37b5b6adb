"""The lock (requirements.txt, exact pins) and the library's declared ranges (pyproject.toml) agree.

CI, the Docker image and the Cloud upload install the lock; `pip install farmsync[extras]` resolves the ranges.
If they drift apart, what is tested is not what a user installs.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", f"requirements.txt pins exactly: {line}"
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def _declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [Requirement(r) for r in extra]
    return reqs


def _assert_pinned(declared: list[Requirement], where: str) -> None:
    pins = _pins()
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} is declared in {where} but not pinned in requirements.txt"
        assert req.specifier.contains(pins[name]), f"{req.name}=={pins[name]} is outside {req.specifier}"


def test_every_declared_dependency_is_pinned_within_its_range() -> None:
    _assert_pinned(_declared(), "pyproject.toml")


def test_the_simulator_needs_nothing_the_lock_does_not_pin() -> None:
    """`make setup` installs shared/farmsync_sim with --no-deps beside farmsync: the lock must cover it."""
    where = "shared/farmsync_sim/pyproject.toml"
    project = tomllib.loads((ROOT / where).read_text())["project"]
    declared = [Requirement(r) for r in project["dependencies"]]
    assert "farmsync" in {r.name for r in declared}
    _assert_pinned([r for r in declared if r.name != "farmsync"], where)


def test_every_pin_is_declared() -> None:
    declared = {canonicalize_name(r.name) for r in _declared()}
    assert set(_pins()) <= declared, sorted(set(_pins()) - declared)


def test_a_lan_install_pulls_neither_grpc_nor_flask() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {canonicalize_name(Requirement(r).name) for r in project["dependencies"]}
    assert "google-cloud-firestore" not in core
    assert "functions-framework" not in core
