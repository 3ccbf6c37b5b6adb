"""Printer display paths: the one set of rules for what a path on a printer may be, used by the planner, the back
ends and pull.

A display path is POSIX, relative to the printer's storage root, with long names and no leading slash
(``"apple/prusament pla/apple.gcode"``); ``""`` is the storage root. A path is safe when it cannot escape the
storage or confuse a printer's URL or FTP parser: no ``.``/``..`` or empty components, not absolute, no backslash,
no NUL and no other control character. Control characters are refused everywhere because no printer takes them:
Bambu cards are FAT32/exFAT, which forbid them (the card answers 553), and Buddy answers 422 to a bad name. So the
planner leaves such a source file out with a warning instead of planning an upload that must fail, and leaves such
a printer entry alone instead of planning a delete it cannot address.

:data:`PrinterPath` marks a string that passed these checks: what :func:`check_path` returns (the back ends call
it on every path they are given) and the type of every planned action's path (the planner checks each source
and printer path with :func:`path_problem` before it plans anything for it; pull does the same before a printer
path may become a master path).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NewType

from farmsync.errors import InputError

PrinterPath = NewType("PrinterPath", str)
"""A display path that passed :func:`path_problem` (or ``""``, the storage root, where that is allowed)."""


def path_problem(path: str) -> str | None:
    """Why ``path`` is not a safe display path, or None when it is."""
    if path == "":
        return "empty path"
    if "\x00" in path:
        return "contains a NUL byte"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in path):
        return "contains a control character"
    if "\\" in path:
        return "contains a backslash"
    if path.startswith("/"):
        return "is absolute"
    parts = path.split("/")
    if any(part == "" for part in parts):
        return "has an empty component"
    if any(part in (".", "..") for part in parts):
        return "has a '.' or '..' component"
    return None


def name_problem(name: str) -> str | None:
    """Why a single name received from a printer is unsafe, or None."""
    if "/" in name:
        return "contains a slash"
    return path_problem(name)


def check_path(path: str, *, what: str = "path", allow_root: bool = False) -> PrinterPath:
    """``path`` as a :data:`PrinterPath`, or :class:`InputError` naming ``what`` and the problem."""
    if not isinstance(path, str):
        raise InputError(f"{what} must be a string", field=what)
    if path == "" and allow_root:
        return PrinterPath("")
    problem = path_problem(path)
    if problem:
        raise InputError(f"unsafe {what} {path!r}: {problem}", field=what, expected="relative POSIX path")
    return PrinterPath(path)


def join(*parts: str) -> str:
    """Join display-path pieces, ignoring empty ones (``join("", "a.gcode") == "a.gcode"``)."""
    return "/".join(p for p in parts if p)


def in_scope(path: str, scope: str) -> bool:
    """True when ``path`` is ``scope`` itself or below it (``""`` is the storage root: everything)."""
    return not scope or path == scope or path.startswith(scope + "/")


def parents(path: str) -> Iterator[str]:
    """Every proper ancestor folder of ``path``, nearest first (never "")."""
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


def parent_of(path: str) -> str:
    return path.rpartition("/")[0]


def basename(path: str) -> str:
    return path.rpartition("/")[2]
