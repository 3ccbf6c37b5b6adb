"""Part keys, IPNs and batch names are stable: every exactly-once guarantee leans on them."""

from __future__ import annotations

from types import SimpleNamespace

from farmsync.prints import keys

FIELDS = ["content_hash", "filename", "print_name", "name"]


def archive(**fields):
    base = {
        "id": 42,
        "content_hash": None,
        "filename": None,
        "print_name": None,
        "filament_type": None,
        "designer": None,
    }
    return SimpleNamespace(**{**base, **fields})


def test_first_non_empty_field_is_the_key() -> None:
    assert keys.part_key(archive(content_hash="abc", filename="x.3mf"), FIELDS) == "abc"
    assert keys.part_key(archive(content_hash="  ", filename="x.3mf"), FIELDS) == "x.3mf"
    assert keys.part_key(archive(print_name="Benchy"), ["name"]) == "Benchy"
    assert keys.part_key(archive(), FIELDS) is None


def test_ipn_is_prefix_and_12_hex_of_sha1() -> None:
    # sha1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d
    assert keys.part_ipn("abc", "BMB") == "BMB-a9993e364706"


def test_batches_match_the_predecessor_and_runs() -> None:
    assert keys.archive_batch(11) == "bambuddy-11"
    assert keys.run_batch(11, 305) == "bambuddy-11-305"


def test_names_and_descriptions_fit_inventree_limits() -> None:
    long = archive(print_name="x" * 300, filename="f" * 400 + ".gcode.3mf", filament_type="PLA" * 50)
    assert len(keys.part_name(long)) == 100 and keys.part_name(long).endswith("…")
    assert len(keys.part_description(long)) <= 250
    assert keys.part_name(archive(filename="Benchy.gcode.3mf")) == "Benchy"
    assert keys.part_name(archive()) == "Bambuddy archive 42"
