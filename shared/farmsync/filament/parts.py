"""What an InvenTree filament part says about its spools: material, colour, weights, and its stock unit.

Read from part parameters by template name, compared without case, spaces, ``_`` or ``-``:

==============  ===============================================================================
material        Material, Filament Material, Filament Type
color_name      Color, Colour, Color Name, Colour Name (a hex value here is taken as the rgba)
rgba            RGBA, Color Hex, Colour Hex, Hex, Hex Color, Color Code, Colour Code, RGB
brand           Brand, Manufacturer, Vendor
label_weight    Label Weight, Net Weight, Filament Weight, Weight (grams; kg templates converted)
core_weight     Core Weight, Spool Weight, Empty Spool Weight, Tare Weight, Empty Weight
==============  ===============================================================================

A value InvenTree does not have stays None: creating a spool falls back to FILAMENT_DEFAULT_*, updating a
spool never writes a default over what Bambuddy has. Stock quantities are grams (part units empty, ``g``) or
kilograms (``kg``); other units cannot be matched to Bambuddy's grams and are reported.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from farmsync.clients.inventree_models import PartParameter

NAMES: dict[str, tuple[str, ...]] = {
    "material": ("material", "filamentmaterial", "filamenttype"),
    "color_name": ("color", "colour", "colorname", "colourname"),
    "rgba": (
        "rgba",
        "colorhex",
        "colourhex",
        "hex",
        "hexcolor",
        "hexcolour",
        "colorcode",
        "colourcode",
        "rgb",
    ),
    "brand": ("brand", "manufacturer", "vendor"),
    "label_weight": ("labelweight", "netweight", "filamentweight", "weight"),
    "core_weight": ("coreweight", "spoolweight", "emptyspoolweight", "tareweight", "emptyweight"),
}
GRAM_UNITS = frozenset({"", "g", "gr", "gram", "grams"})
KILOGRAM_UNITS = frozenset({"kg", "kilogram", "kilograms"})
_HEX_COLOUR = re.compile(r"^#?([0-9A-Fa-f]{6})([0-9A-Fa-f]{2})?$")


class PartInfo(BaseModel):
    """Spool facts of one filament part; None where InvenTree has no value."""

    part: int
    name: str | None = None
    material: str | None = None
    color_name: str | None = None
    rgba: str | None = None
    brand: str | None = None
    label_weight: int | None = None
    core_weight: int | None = None
    units: str | None = None
    grams_per_unit: float | None = 1.0  # None: the part's unit is not a mass farmsync understands


def squash(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).casefold()


def grams_per_unit(units: str | None) -> float | None:
    """Grams in one stock unit of the part: 1 for grams (or no unit), 1000 for kg, None otherwise."""
    unit = (units or "").strip().casefold()
    if unit in GRAM_UNITS:
        return 1.0
    if unit in KILOGRAM_UNITS:
        return 1000.0
    return None


def rgba_of(value: str | None) -> str | None:
    """``#FF8800`` / ``ff8800`` / ``FF8800CC`` as Bambuddy's 8-hex ``RRGGBBAA``; None if not a colour."""
    match = _HEX_COLOUR.match((value or "").strip())
    if not match:
        return None
    return (match.group(1) + (match.group(2) or "FF")).upper()


def _grams(parameter: PartParameter) -> int | None:
    units = (parameter.template_detail.units if parameter.template_detail else None) or ""
    value: Any = parameter.data_numeric
    if value is None:
        try:
            value = float((parameter.data or "").strip())
        except ValueError:
            return None
    grams = float(value) * (1000.0 if units.strip().casefold() in KILOGRAM_UNITS else 1.0)
    return round(grams) if grams > 0 else None


def part_info(
    part: int,
    parameters: list[PartParameter],
    *,
    names: dict[int, str] | None = None,
    units: str | None = None,
    name: str | None = None,
) -> PartInfo:
    """Read the spool facts of a part from its parameters (``names`` maps template pk → name when the rows
    carry no ``template_detail``)."""
    by_name: dict[str, PartParameter] = {}
    for parameter in parameters:
        template = (
            parameter.template_detail.name
            if parameter.template_detail
            else (names or {}).get(parameter.template)
        )
        if template and (parameter.data or "").strip():
            by_name.setdefault(squash(template), parameter)

    def first(field: str) -> PartParameter | None:
        for candidate in NAMES[field]:
            if candidate in by_name:
                return by_name[candidate]
        return None

    def text(field: str) -> str | None:
        parameter = first(field)
        return (parameter.data or "").strip() or None if parameter else None

    info = PartInfo(part=part, name=name, units=units, grams_per_unit=grams_per_unit(units))
    info.material = text("material")
    info.brand = text("brand")
    info.rgba = rgba_of(text("rgba"))
    colour = text("color_name")
    if colour and rgba_of(colour):
        info.rgba = info.rgba or rgba_of(colour)
    else:
        info.color_name = colour
    for field in ("label_weight", "core_weight"):
        weight = first(field)
        if weight is not None:
            setattr(info, field, _grams(weight))
    return info


def template_names_needed(parameters: list[PartParameter]) -> bool:
    """Whether the rows lack ``template_detail`` (then template names must be looked up)."""
    return any(p.template_detail is None for p in parameters)


KNOWN_TEMPLATE_NAMES = (
    "Material",
    "Filament Material",
    "Filament Type",
    "Color",
    "Colour",
    "Color Name",
    "Colour Name",
    "RGBA",
    "Color Hex",
    "Colour Hex",
    "Hex",
    "Brand",
    "Manufacturer",
    "Vendor",
    "Label Weight",
    "Net Weight",
    "Filament Weight",
    "Weight",
    "Core Weight",
    "Spool Weight",
    "Empty Spool Weight",
    "Tare Weight",
)
