"""Spool identity: tag normalisation, aliases, conflicts; plus part facts and the printer → location map."""

from __future__ import annotations

from typing import Any

import pytest

from farmsync.clients.bambuddy_models import Spool
from farmsync.clients.inventree_models import PartParameter, StockItem
from farmsync.filament.locations import location_for
from farmsync.filament.match import TagKey, build_index, tag_key, tag_value
from farmsync.filament.parts import grams_per_unit, part_info, rgba_of


def item(pk: int, batch: str | None, quantity: float = 500.0) -> StockItem:
    return StockItem(pk=pk, part=1, quantity=quantity, batch=batch, location=10)


def spool(sid: int, tag_uid: str | None = None, tray_uuid: str | None = None, **extra: Any) -> Spool:
    return Spool(id=sid, material="PLA", tag_uid=tag_uid, tray_uuid=tray_uuid, **extra)


@pytest.mark.parametrize(
    "raw,field,expected",
    [
        ("04a1b2c3", "tag_uid", TagKey("hex", "04A1B2C3")),
        ("04:a1:b2:c3", "tag_uid", TagKey("hex", "04A1B2C3")),
        (" 04-A1 B2_C3 ", "tag_uid", TagKey("hex", "04A1B2C3")),
        ("0011223344556677889900AA", "tag_uid", TagKey("hex", "44556677889900AA")),  # last 16
        ("11" * 20, "tray_uuid", TagKey("hex", "11" * 16)),  # first 32
        ("00000000", "tag_uid", None),
        ("00:00:00:00:00:00:00:00", "tray_uuid", None),
        ("", "tag_uid", None),
        (None, "tag_uid", None),
        ("INV-Batch-0001", "tag_uid", TagKey("text", "inv-batch-0001")),
        ("bambuddy-42", "tray_uuid", TagKey("text", "bambuddy-42")),
    ],
)
def test_tag_key_rules(raw: str | None, field: Any, expected: TagKey | None) -> None:
    assert tag_key(raw, field) == expected


def test_text_batches_compare_exactly_and_never_equal_their_hex_digits() -> None:
    assert tag_key("INV-0001", "tag_uid") == tag_key("inv-0001", "tag_uid")
    assert tag_key("INV-0001", "tag_uid") != tag_key("INV-00010", "tag_uid")
    # Bambuddy itself would reduce "INV-BAD" to "BAD"; farmsync keeps the two apart.
    assert tag_key("INV-BAD", "tag_uid") != tag_key("BAD", "tag_uid")


def test_tag_value_stores_normalised_hex_or_the_text() -> None:
    assert tag_value("04:a1:b2", "tag_uid") == "04A1B2"
    assert tag_value(" INV-0001 ", "tag_uid") == "INV-0001"


def test_clean_match_and_missing_on_both_sides() -> None:
    index = build_index(
        [item(1, "aabbccdd"), item(2, "INV-7"), item(3, None), item(4, "0000")],
        [spool(11, tag_uid="AA:BB:CC:DD"), spool(12, tag_uid="FFEE"), spool(13)],
        "tag_uid",
    )
    assert [(m.item, m.spool) for m in index.matches] == [(1, 11)]
    assert [pk for _, pk in index.missing_in_bambuddy] == [2]
    assert index.missing_in_inventree == [12]
    assert index.untagged_spools == [13]
    assert index.unidentified_items == [3, 4]
    assert not index.conflicts


def test_the_other_tag_field_is_an_alias() -> None:
    uuid = "0123456789ABCDEF0123456789ABCDEF"
    index = build_index(
        [item(1, uuid.lower()), item(2, "INV-9")],
        [spool(11, tag_uid="1111222233334444", tray_uuid=uuid), spool(12, tray_uuid="inv-9")],
        "tag_uid",
    )
    assert {(m.item, m.spool) for m in index.matches} == {(1, 11), (2, 12)}
    # and the other way round: tray_uuid as the source, the batch written in tag_uid by an older tool
    index = build_index([item(1, "1111222233334444")], [spool(11, tag_uid="1111222233334444")], "tray_uuid")
    assert [(m.item, m.spool) for m in index.matches] == [(1, 11)]


def test_two_items_with_one_batch_conflict() -> None:
    index = build_index([item(1, "AABB"), item(2, "aa:bb")], [spool(11, tag_uid="AABB")], "tag_uid")
    assert not index.matches and not index.missing_in_bambuddy
    [conflict] = index.conflicts
    assert conflict.kind == "stock_items" and conflict.stock_items == [1, 2] and conflict.spools == [11]
    assert set(index.conflicted_items) == {1, 2} and set(index.conflicted_spools) == {11}


def test_two_active_spools_for_one_batch_conflict() -> None:
    index = build_index(
        [item(1, "AABB")], [spool(11, tag_uid="AABB"), spool(12, tray_uuid="aabb")], "tag_uid"
    )
    [conflict] = index.conflicts
    assert conflict.kind == "spools" and conflict.spools == [11, 12] and conflict.stock_items == [1]
    assert not index.matches and not index.missing_in_bambuddy


def test_one_spool_matching_two_batches_conflicts() -> None:
    uuid = "0123456789ABCDEF0123456789ABCDEF"
    index = build_index(
        [item(1, "AABB"), item(2, uuid)], [spool(11, tag_uid="AABB", tray_uuid=uuid)], "tag_uid"
    )
    [conflict] = index.conflicts
    assert conflict.kind == "spool_batches" and conflict.spools == [11] and conflict.stock_items == [1, 2]
    assert not index.matches and not index.missing_in_bambuddy and not index.missing_in_inventree


def test_archived_spools_count_only_without_an_active_one() -> None:
    archived = {"archived_at": "2026-01-01T00:00:00"}
    index = build_index(
        [item(1, "AABB"), item(2, "CCDD")],
        [
            spool(11, tag_uid="AABB", **archived),
            spool(12, tag_uid="AABB"),
            spool(13, tag_uid="CCDD", **archived),
        ],
        "tag_uid",
    )
    assert {(m.item, m.spool) for m in index.matches} == {(1, 12), (2, 13)}
    assert index.shadowed == {11: 12} and not index.conflicts and not index.missing_in_bambuddy
    twice = build_index(
        [item(1, "AABB")],
        [spool(11, tag_uid="AABB", **archived), spool(12, tag_uid="AABB", **archived)],
        "tag_uid",
    )
    assert twice.conflicts[0].kind == "spools" and not twice.matches


def test_part_facts_from_parameters() -> None:
    def p(pk: int, name: str, data: str, units: str = "", numeric: float | None = None) -> PartParameter:
        return PartParameter.model_validate(
            {
                "pk": pk,
                "template": pk,
                "data": data,
                "data_numeric": numeric,
                "template_detail": {"pk": pk, "name": name, "units": units},
            }
        )

    info = part_info(
        5,
        [
            p(1, "Filament_Material", "PETG"),
            p(2, "Colour", "#1a2b3c"),
            p(3, "Net Weight", "1", "kg", 1.0),
            p(4, "Core weight", "210", "g", 210.0),
            p(5, "Brand", "Bambu Lab"),
        ],
        units="kg",
    )
    assert (info.material, info.rgba, info.color_name, info.brand) == ("PETG", "1A2B3CFF", None, "Bambu Lab")
    assert (info.label_weight, info.core_weight, info.grams_per_unit) == (1000, 210, 1000.0)
    named = part_info(6, [p(1, "Color", "Jade White"), p(2, "RGBA", "00ae42ff")], units="")
    assert (named.color_name, named.rgba, named.material, named.label_weight) == (
        "Jade White",
        "00AE42FF",
        None,
        None,
    )


@pytest.mark.parametrize(
    "units,expected",
    [("", 1.0), (None, 1.0), ("g", 1.0), ("grams", 1.0), ("kg", 1000.0), ("m", None), ("pcs", None)],
)
def test_grams_per_unit(units: str | None, expected: float | None) -> None:
    assert grams_per_unit(units) == expected


def test_rgba_of() -> None:
    assert rgba_of("#ff8800") == "FF8800FF" and rgba_of("FF880080") == "FF880080"
    assert rgba_of("orange") is None and rgba_of("#ff88") is None


def test_printer_map_longest_prefix_wins_case_insensitively() -> None:
    mapping = {"B1": 21, "B10": 30, "b2-p": 22}
    assert location_for("B1-X1-CARBON", mapping) == ("B1", 21)
    assert location_for("B10-P1S", mapping) == ("B10", 30)
    assert location_for("B2-P1S", mapping) == ("b2-p", 22)
    assert location_for("A0-MINI", mapping) is None and location_for(None, mapping) is None
