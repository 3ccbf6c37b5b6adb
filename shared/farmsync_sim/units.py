"""Physical-unit checks for InvenTree parameters (InvenTree uses pint; this covers the units a farm uses).

A template with units only accepts data that converts to them: a bare number is taken in the template's unit,
a number with a unit must have the same dimension ("0.0125 kg" for "g" gives 12.5).
"""

from __future__ import annotations

import re

# unit -> (dimension, factor to the dimension's base unit)
_UNITS: dict[str, tuple[str, float]] = {}


def _define(dimension: str, factor: float, *names: str) -> None:
    for name in names:
        _UNITS[name] = (dimension, factor)


_define("mass", 1.0, "g", "gram", "grams", "gramme")
_define("mass", 1000.0, "kg", "kilogram", "kilograms")
_define("mass", 0.001, "mg", "milligram", "milligrams")
_define("mass", 453.59237, "lb", "lbs", "pound", "pounds")
_define("mass", 28.349523125, "oz", "ounce", "ounces")
_define("time", 1.0, "s", "sec", "second", "seconds")
_define("time", 0.001, "ms", "millisecond", "milliseconds")
_define("time", 60.0, "min", "minute", "minutes")
_define("time", 3600.0, "h", "hr", "hour", "hours")
_define("time", 86400.0, "d", "day", "days")
_define("length", 1.0, "m", "meter", "meters", "metre", "metres")
_define("length", 0.001, "mm", "millimeter", "millimeters")
_define("length", 0.01, "cm", "centimeter", "centimeters")
_define("length", 1000.0, "km", "kilometer", "kilometers")
_define("length", 0.0254, "in", "inch", "inches")
_define("length", 0.3048, "ft", "foot", "feet")
_define("temperature", 1.0, "degC", "°C", "celsius")
_define("volume", 1.0, "l", "L", "liter", "litre", "liters")
_define("volume", 0.001, "ml", "mL", "milliliter")
_define("energy", 1.0, "Wh", "watt_hour")
_define("energy", 1000.0, "kWh", "kilowatt_hour")

_NUMBER = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([^\d\s].*?)?\s*$")


def is_known_unit(unit: str) -> bool:
    return unit.strip() in _UNITS


def to_number(text: str) -> float | None:
    """The float in ``text`` when it is a bare number, else None (InvenTree's data_numeric without units)."""
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if value == value and value not in (float("inf"), float("-inf")) else None


def convert(text: str, unit: str) -> float:
    """``text`` expressed in ``unit``; ValueError("Could not convert <text> to <unit>") when it can't be."""
    error = ValueError(f"Could not convert {text} to {unit}")
    target = _UNITS.get(unit.strip())
    match = _NUMBER.match(text)
    if target is None or match is None:
        raise error
    value = float(match.group(1))
    given = (match.group(2) or "").strip()
    if not given:
        return value
    source = _UNITS.get(given)
    if source is None or source[0] != target[0]:
        raise error
    return round(value * source[1] / target[1], 9)
