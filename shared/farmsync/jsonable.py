"""Reports and models as plain JSON values, for every place that writes JSON: ``--json``, HTTP answers, the demo."""

from __future__ import annotations

from typing import Any


def jsonable(value: Any) -> Any:
    """Reports (their ``as_dict`` adds totals) and pydantic models to plain JSON values."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
