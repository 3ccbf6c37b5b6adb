"""The pure mirror plan: which files are uploaded, replaced, deleted or left alone, and in which order."""

from __future__ import annotations

import hashlib
import random
import time
from pathlib import Path

import pytest

from farmsync.gcode.backends.base import RemoteEntry
from farmsync.gcode.manifest import ManifestRecord
from farmsync.gcode.plan import (
    LocalFile,
    LocalTree,
    Op,
    PathProblem,
    PlanOptions,
    changed_since_upload,
    early_replace,
    has_suffix,
    make_plan,
    normalize_destination,
    normalize_suffixes,
    path_problem,
    paths_needing_size,
    utc,
)

T0 = 1_800_000_000.0


def lf(rel: str, content: str = "G1 X1\n", *, mtime: float = T0) -> LocalFile:
    return LocalFile(rel, Path("/master") / rel, len(content.encode()), mtime, int(mtime * 1e9))


def rf(
    path: str,
    *,
    size: int | None = None,
    mtime: float | None = None,
    hash: tuple[str, str] | None = None,
    ro: bool = False,
) -> RemoteEntry:
    return RemoteEntry(path, False, size=size, mtime=mtime, hash=hash, read_only=ro)


def rd(path: str, *, ro: bool = False) -> RemoteEntry:
    return RemoteEntry(path, True, read_only=ro)


class Digests:
    """A digest function over in-memory contents that counts how often it is asked."""

    def __init__(self, contents: dict[str, str]) -> None:
        self.contents = contents
        self.calls: list[tuple[str, str]] = []

    def __call__(self, file: LocalFile, algorithm: str) -> str:
        self.calls.append((file.rel, algorithm))
        return hashlib.new(algorithm, self.contents[file.rel].encode()).hexdigest()


def plan_for(
    local: list,
    remote: list[RemoteEntry],
    *,
    destination: str = "",
    base: str = "",
    manifest: dict[str, ManifestRecord] | None = None,
    suffixes: tuple[str, ...] = (".gcode", ".bgcode", ".gco", ".g"),
):
    """Plan for local items given as LocalFile or (rel, content, mtime)."""
    files: list[LocalFile] = []
    contents: dict[str, str] = {}
    for item in local:
        file = item if isinstance(item, LocalFile) else lf(item[0], item[1], mtime=item[2])
        contents[file.rel] = item[1] if isinstance(item, tuple) else "G1 X1\n"
        files.append(file)
    digests = Digests(contents)
    plan = make_plan(
        LocalTree(tuple(files), base=base),
        remote,
        PlanOptions(destination=destination, suffixes=suffixes),
        digest=digests,
        manifest=manifest,
    )
    return plan, digests


def ops(plan) -> list[tuple[str, str]]:
    return [(a.op.value, a.path) for a in plan.actions]


def sha(text: str, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, text.encode()).hexdigest()


NEW = "G1 X2 new\n"
OLD = "G1 X1 old\n"  # same length as NEW
assert len(NEW) == len(OLD)


# --- one file on both sides: replace or skip -------------------------------------------------------------

CASES = [
    # (id, local content, local mtime, remote entry, manifest record or None, expected op, reason fragment)
    ("missing", NEW, T0, None, None, Op.UPLOAD, "missing"),
    (
        "hash-equal",
        NEW,
        T0 + 9999,
        rf("a.gcode", size=len(NEW), hash=("sha1", sha(NEW, "sha1"))),
        None,
        Op.SKIP,
        "sha1 matches",
    ),
    (
        "hash-differs",
        NEW,
        T0 - 9999,
        rf("a.gcode", size=len(NEW), mtime=T0, hash=("sha1", sha(OLD, "sha1"))),
        None,
        Op.REPLACE,
        "content differs",
    ),
    (
        "hash-upper-case",
        NEW,
        T0,
        rf("a.gcode", hash=("SHA-1", sha(NEW, "sha1").upper())),
        None,
        Op.SKIP,
        "sha1 matches",
    ),
    (
        "hash-unknown-algorithm-falls-back",
        NEW,
        T0,
        rf("a.gcode", size=3, hash=("crc32", "abcd")),
        None,
        Op.REPLACE,
        "size differs",
    ),
    (
        "size-differs",
        NEW,
        T0 - 9999,
        rf("a.gcode", size=len(NEW) + 1, mtime=T0),
        None,
        Op.REPLACE,
        "size differs",
    ),
    (
        "same-size-remote-newer",
        NEW,
        T0,
        rf("a.gcode", size=len(NEW), mtime=T0 + 5),
        None,
        Op.SKIP,
        "not older",
    ),
    ("mtime-newer-by-61s", NEW, T0 + 61, rf("a.gcode", mtime=T0), None, Op.REPLACE, "source is newer"),
    ("mtime-newer-by-60s", NEW, T0 + 60, rf("a.gcode", mtime=T0), None, Op.SKIP, "not older"),
    ("mtime-newer-by-59s", NEW, T0 + 59, rf("a.gcode", mtime=T0), None, Op.SKIP, "not older"),
    ("mtime-zero-is-unknown", NEW, T0 + 9999, rf("a.gcode", mtime=0), None, Op.SKIP, "gives no size"),
    ("nothing-to-compare", NEW, T0 + 9999, rf("a.gcode"), None, Op.SKIP, "gives no size"),
    (
        "manifest-unchanged-buddy",
        NEW,
        T0 + 99999,  # local touched long after the upload: mtime rule would replace, manifest knows better
        rf("a.gcode", mtime=T0 + 10),
        ManifestRecord(sha256=sha(NEW), size=len(NEW), mtime=T0 + 10),
        Op.SKIP,
        "same as our last upload",
    ),
    (
        "manifest-within-fat-2s",
        NEW,
        T0 + 99999,
        rf("a.gcode", mtime=T0 + 11.5),
        ManifestRecord(sha256=sha(NEW), size=len(NEW), mtime=T0 + 10),
        Op.SKIP,
        "same as our last upload",
    ),
    (
        "manifest-content-changed-same-size-older-mtime",
        NEW,
        T0 - 9999,  # mtime rule would keep it; the manifest sees the content changed
        rf("a.gcode", mtime=T0 + 10),
        ManifestRecord(sha256=sha(OLD), size=len(OLD), mtime=T0 + 10),
        Op.REPLACE,
        "changed since our last upload",
    ),
    (
        "manifest-with-size",
        NEW,
        T0 + 99999,
        rf("a.gcode", size=len(NEW), mtime=T0 + 10),
        ManifestRecord(sha256=sha(NEW), size=len(NEW), mtime=T0 + 10),
        Op.SKIP,
        "same as our last upload",
    ),
    (
        "manifest-no-remote-facts-trusted",
        NEW,
        T0 + 99999,
        rf("a.gcode"),
        ManifestRecord(sha256=sha(NEW), size=len(NEW), mtime=None),
        Op.SKIP,
        "same as our last upload",
    ),
    (
        "printer-copy-replaced-by-someone-else-falls-back-to-mtime",
        NEW,
        T0,
        rf("a.gcode", mtime=T0 + 500),
        ManifestRecord(sha256=sha(OLD), size=len(OLD), mtime=T0 + 10),
        Op.SKIP,
        "not older",
    ),
    (
        "printer-copy-replaced-and-source-newer",
        NEW,
        T0 + 1000,
        rf("a.gcode", mtime=T0 + 500),
        ManifestRecord(sha256=sha(NEW), size=len(NEW), mtime=T0 + 10),
        Op.REPLACE,
        "source is newer",
    ),
    ("read-only", NEW, T0 + 9999, rf("a.gcode", size=1, ro=True), None, Op.SKIP, "read-only"),
]


@pytest.mark.parametrize(
    ("content", "mtime", "remote", "record", "expected", "reason"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_one_file(content, mtime, remote, record, expected, reason):
    plan, _ = plan_for(
        [("a.gcode", content, mtime)],
        [remote] if remote else [],
        manifest={"a.gcode": record} if record else None,
    )
    [action] = plan.actions
    assert action.op is expected
    assert reason in action.reason
    assert action.path == "a.gcode"


def test_hashing_is_lazy():
    """No digest for a missing file, a size difference, or an mtime decision without a manifest record."""
    plan, digests = plan_for(
        [("new.gcode", NEW, T0), ("sized.gcode", NEW, T0), ("timed.gcode", NEW, T0 + 100)],
        [rf("sized.gcode", size=1), rf("timed.gcode", mtime=T0)],
    )
    assert [a.op for a in plan.actions] == [Op.UPLOAD, Op.REPLACE, Op.REPLACE]
    assert digests.calls == []


def test_manifest_decision_carries_sha256():
    plan, digests = plan_for(
        [("a.gcode", NEW, T0)],
        [rf("a.gcode", mtime=T0 + 10)],
        manifest={"a.gcode": ManifestRecord(sha256=sha(OLD), size=len(OLD), mtime=T0 + 10)},
    )
    assert plan.actions[0].sha256 == sha(NEW)
    assert digests.calls == [("a.gcode", "sha256")]


@pytest.mark.parametrize(
    "zone", ["UTC", "Asia/Kathmandu", "America/New_York", "Pacific/Kiritimati", "Etc/GMT+12"]
)
def test_mtime_rule_does_not_depend_on_the_host_time_zone(monkeypatch, zone):
    """link-sync re-read UTC stamps as local time; epoch seconds compare the same in every zone."""
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        plan, _ = plan_for(
            [("edited.gcode", NEW, T0 + 3600), ("same.gcode", NEW, T0 + 30), ("older.gcode", NEW, T0 - 7200)],
            [rf("edited.gcode", mtime=T0), rf("same.gcode", mtime=T0), rf("older.gcode", mtime=T0)],
        )
    finally:
        monkeypatch.undo()
        time.tzset()
    assert ops(plan) == [("replace", "edited.gcode"), ("skip", "older.gcode"), ("skip", "same.gcode")]
    replace = plan.actions[0]
    assert "2027-01-15T09:00:00Z" in replace.reason  # T0 + 1 h, shown in UTC whatever the zone
    assert "2027-01-15T08:00:00Z" in replace.reason


def test_utc_formatting():
    assert utc(0) == "1970-01-01T00:00:00Z"


# --- the tree: extras, folders, scope --------------------------------------------------------------------


def test_extras_under_destination_are_deleted_and_outside_untouched():
    plan, _ = plan_for(
        [("keep.gcode", NEW, T0)],
        [
            rd("farm"),
            rf("farm/keep.gcode", mtime=T0 + 10),
            rf("farm/old.gcode", mtime=T0),
            rf("other.gcode", mtime=T0),
            rd("elsewhere"),
            rf("elsewhere/x.gcode"),
            rf("farmer/x.gcode"),  # shares a prefix with the destination, but is outside it
        ],
        destination="farm",
    )
    assert ops(plan) == [("delete", "farm/old.gcode"), ("skip", "farm/keep.gcode")]
    assert plan.scope == "farm"


def test_folders_left_empty_are_deleted_bottom_up_and_kept_ones_stay():
    plan, _ = plan_for(
        [("keep/a.gcode", NEW, T0)],
        [
            rd("deep"),
            rd("deep/er"),
            rd("deep/er/est"),
            rf("deep/er/est/x.gcode"),
            rd("deep/sibling"),  # already empty: also removed, we mirror folders only as holders of files
            rd("keep"),
            rf("keep/a.gcode", mtime=T0 + 10),
            rf("keep/gone.gcode"),
            rd("mixed"),
            rf("mixed/x.gcode"),
            rf("mixed/notes.txt"),  # not a mirrored type: stays, and so does its folder
        ],
    )
    assert ops(plan) == [
        ("delete", "deep/er/est/x.gcode"),
        ("delete", "keep/gone.gcode"),
        ("delete", "mixed/x.gcode"),
        ("delete_folder", "deep/er/est"),
        ("delete_folder", "deep/er"),
        ("delete_folder", "deep/sibling"),
        ("delete_folder", "deep"),
        ("skip", "keep/a.gcode"),
        ("skip", "mixed/notes.txt"),
    ]


def test_destination_folder_itself_is_never_deleted():
    plan, _ = plan_for(
        [("a.gcode", NEW, T0)], [rd("farm"), rd("farm/sub"), rf("farm/sub/x.gcode")], destination="farm"
    )
    assert ops(plan) == [
        ("delete", "farm/sub/x.gcode"),
        ("delete_folder", "farm/sub"),
        ("upload", "farm/a.gcode"),
    ]


def test_read_only_entries_and_their_folders_are_untouched():
    plan, _ = plan_for(
        [("a.gcode", NEW, T0)],
        [
            rd("busy"),
            rf("busy/uploading.gcode", ro=True),
            rd("locked", ro=True),
            rd("outer"),
            rd("outer/locked", ro=True),
            rf("a.gcode", size=1, ro=True),
        ],
    )
    assert ops(plan) == [("skip", "a.gcode"), ("skip", "busy/uploading.gcode")]


def test_unsafe_printer_names_are_reported_and_left_alone():
    remote = [
        rd("sub"),
        rf("sub/../../etc/passwd.gcode"),
        rf("/abs.gcode"),
        rf("back\\slash.gcode"),
        rf("nul\x00.gcode"),
        rf("sub/./x.gcode"),
        rf("sub//y.gcode"),
    ]
    plan, _ = plan_for([("a.gcode", NEW, T0)], remote)
    assert ops(plan) == [("upload", "a.gcode")]  # "sub" holds the odd entries, so it is kept too
    assert len(plan.warnings) == 6
    assert any("is absolute" in w for w in plan.warnings)
    assert any("backslash" in w for w in plan.warnings)
    assert any("NUL" in w for w in plan.warnings)


def test_unsafe_local_names_are_reported_not_planned():
    plan, _ = plan_for([lf("a\\b.gcode"), lf("../up.gcode"), lf("ok.gcode")], [])
    assert ops(plan) == [("upload", "ok.gcode")]
    assert len(plan.warnings) == 2


def test_suffix_match_is_case_insensitive_on_the_printer_side():
    plan, _ = plan_for([("a.gcode", NEW, T0)], [rf("X.GCODE"), rf("y.BGCode"), rf("z.G"), rf("readme.TXT")])
    assert ops(plan) == [
        ("delete", "X.GCODE"),
        ("delete", "y.BGCode"),
        ("delete", "z.G"),
        ("upload", "a.gcode"),
        ("skip", "readme.TXT"),
    ]


def test_relative_to_parent_limits_the_mirror_to_the_source_subfolder():
    """-s master/apple -r master: files land under apple/, and only apple/ is mirrored (banana/ is not ours)."""
    plan, _ = plan_for(
        [("apple/pla/a.gcode", NEW, T0)],
        [rd("apple"), rf("apple/stale.gcode"), rd("banana"), rf("banana/b.gcode")],
        base="apple",
    )
    assert plan.scope == "apple"
    assert ops(plan) == [("delete", "apple/stale.gcode"), ("upload", "apple/pla/a.gcode")]


def test_folder_in_the_way_of_a_file_is_emptied_then_removed():
    plan, _ = plan_for([("x.gcode", NEW, T0)], [rd("x.gcode"), rf("x.gcode/inner.gcode")])
    assert ops(plan) == [
        ("delete", "x.gcode/inner.gcode"),
        ("delete_folder", "x.gcode"),
        ("upload", "x.gcode"),
    ]
    assert "in the way" in plan.actions[-1].reason


def test_empty_local_file_is_not_uploaded_and_protects_its_printer_copy():
    plan, _ = plan_for([lf("empty.gcode", "")], [rf("empty.gcode", mtime=T0)])
    assert ops(plan) == [("skip", "empty.gcode")]
    assert "0-byte" in plan.actions[0].reason


def test_plan_is_deterministic_whatever_the_listing_order():
    remote = [
        rd("d"),
        rd("d/e"),
        rf("d/e/1.gcode"),
        rf("d/2.gcode"),
        rf("3.gcode"),
        rf("keep.gcode", mtime=T0 + 10),
    ]
    local = [("keep.gcode", NEW, T0), ("z/new.gcode", NEW, T0), ("b.gcode", NEW, T0)]
    first, _ = plan_for(local, remote)
    for seed in range(5):
        shuffled = remote[:]
        random.Random(seed).shuffle(shuffled)
        again, _ = plan_for(list(reversed(local)), shuffled)
        assert ops(again) == ops(first)
    assert [a.op for a in first.actions] == [
        Op.DELETE,
        Op.DELETE,
        Op.DELETE,
        Op.DELETE_FOLDER,
        Op.DELETE_FOLDER,
        Op.UPLOAD,
        Op.UPLOAD,
        Op.SKIP,
    ]
    assert first.counts == {"upload": 2, "replace": 0, "delete": 3, "delete_folder": 2, "skip": 1}
    assert first.upload_bytes == 2 * len(NEW)


# --- helpers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "storage", "expected"),
    [
        (None, None, ""),
        ("", None, ""),
        ("/", None, ""),
        (".", None, ""),
        ("/usb/", None, ""),
        ("/usb", None, ""),
        ("/USB/", None, ""),
        ("/usb/farm", None, "farm"),
        ("/usb/farm/", None, "farm"),
        ("/usb//farm/./a/", None, "farm/a"),
        ("/local/x", None, "x"),
        ("/gcodes/x", None, "x"),
        ("/farm", None, "farm"),
        ("farm/", None, "farm"),
        ("usb/farm", None, "usb/farm"),  # relative: "usb" is a folder name, not the storage root
        ("/sd/x", "sd", "x"),
        ("/sd/x", "/sd/", "x"),
    ],
)
def test_normalize_destination(value, storage, expected):
    assert normalize_destination(value, storage=storage) == expected


@pytest.mark.parametrize("value", ["../x", "/usb/../x", "a/..", "a\\b", "a\x00b"])
def test_normalize_destination_rejects_traversal(value):
    with pytest.raises(PathProblem):
        normalize_destination(value)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("a/b.gcode", None),
        ("", "empty"),
        ("/a", "absolute"),
        ("a/../b", "'..'"),
        ("..", "'..'"),
        ("a\\b", "backslash"),
        ("a\x00", "NUL"),
        ("a//b", "empty"),
    ],
)
def test_path_problem(path, problem):
    found = path_problem(path)
    assert found is None if problem is None else problem in found


def test_suffix_helpers():
    assert normalize_suffixes(["GCODE", ".bgcode", "gco,.G", ".gcode", " "]) == (
        ".gcode",
        ".bgcode",
        ".gco",
        ".g",
    )
    assert has_suffix("dir/A.GCODE", (".gcode",))
    assert has_suffix("x.g", (".g",))
    assert not has_suffix(".gcode", (".gcode",))
    assert not has_suffix("x.gcode.txt", (".gcode",))
    assert has_suffix("x.gcode.3mf", (".gcode.3mf",))


def test_paths_needing_size_only_where_a_size_could_change_the_decision():
    local = LocalTree(
        tuple(lf(r) for r in ("a.gcode", "b.gcode", "c.gcode", "d.gcode", "e.gcode", "f.gcode"))
    )
    remote = [
        rf("a.gcode", mtime=T0),  # no size, no record: worth a stat
        rf("b.gcode", mtime=T0 + 10),  # our record matches: the manifest decides
        rf("c.gcode", size=6, mtime=T0),  # size listed already
        rf("d.gcode", hash=("sha1", "0" * 40)),  # hash decides
        rf("e.gcode", mtime=T0, ro=True),  # never touched anyway
        rf("f.gcode", mtime=T0 + 500),  # a record exists, but the printer copy changed since: worth a stat
        rf("extra.gcode"),  # not in the source: deleted whatever its size
        rd("dir"),
    ]
    record = ManifestRecord(sha256="0" * 64, size=6, mtime=T0 + 10)
    manifest = {"b.gcode": record, "f.gcode": record}
    assert paths_needing_size(local, remote, PlanOptions(), manifest) == ["a.gcode", "f.gcode"]


# --- early replaces: what can be decided from one stat, before the listing ---------------------------------------


def _record(content: str, *, mtime: float = T0 + 50) -> ManifestRecord:
    return ManifestRecord(sha256=hashlib.sha256(content.encode()).hexdigest(), size=len(content), mtime=mtime)


def test_changed_since_upload_needs_a_record_and_a_difference() -> None:
    files = {
        "same.gcode": "G1 same\n",
        "edited.gcode": "G1 NEW\n",
        "longer.gcode": "G1 longer now\n",
        "new.gcode": "G1\n",
    }
    tree = LocalTree(tuple(lf(rel, text) for rel, text in files.items()))
    digests = Digests(files)
    records = {
        "usb/same.gcode": _record("G1 same\n"),
        "usb/edited.gcode": _record("G1 old\n"),  # same size, other content
        "usb/longer.gcode": _record("G1 short\n"),
    }
    changed = changed_since_upload(tree, PlanOptions(destination="usb"), records, digest=digests)
    assert [(f.rel, r) for f, r in changed] == [
        ("edited.gcode", records["usb/edited.gcode"]),
        ("longer.gcode", records["usb/longer.gcode"]),
    ]  # new.gcode has no record: the plan uploads it in its order
    assert ("longer.gcode", "sha256") not in digests.calls  # the size alone told


def test_early_replace_is_the_plans_replace_or_nothing() -> None:
    file = lf("a.gcode", "G1 NEW\n", mtime=T0)
    record = _record("G1 old\n")
    digest = Digests({"a.gcode": "G1 NEW\n"})
    options = PlanOptions()
    ours = rf("a.gcode", size=record.size, mtime=record.mtime)
    action = early_replace(file, ours, record, options, digest=digest)
    assert action is not None and action.op is Op.REPLACE and action.reason == "changed since our last upload"
    plan = make_plan(LocalTree((file,)), [ours], options, digest=digest, manifest={"a.gcode": record})
    assert plan.actions[0].op is Op.REPLACE and plan.actions[0].reason == action.reason  # the same decision
    assert early_replace(file, None, record, options, digest=digest) is None  # gone: the plan uploads it
    assert early_replace(file, rd("a.gcode"), record, options, digest=digest) is None  # a folder in the way
    read_only = rf("a.gcode", size=record.size, mtime=record.mtime, ro=True)
    assert early_replace(file, read_only, record, options, digest=digest) is None
    theirs = rf("a.gcode", size=record.size, mtime=T0 + 10**6)  # replaced by hand after our upload, newer
    assert early_replace(file, theirs, record, options, digest=digest) is None


def test_a_plan_without_the_paths_already_dealt_with_keeps_its_counts_true() -> None:
    files = {"a.gcode": "G1 a\n", "b.gcode": "G1 b\n"}
    tree = LocalTree(tuple(lf(rel, text) for rel, text in files.items()))
    plan = make_plan(tree, [rf("old.gcode")], PlanOptions(), digest=Digests(files))
    rest = plan.without({"a.gcode"})
    assert [a.path for a in rest.actions] == ["old.gcode", "b.gcode"]
    assert (
        rest.counts["upload"] == 1 and rest.counts["delete"] == 1 and rest.paths == {"old.gcode", "b.gcode"}
    )
