"""Turn upstream JSON into models, or into an UpstreamError that names what did not fit.

A shape mismatch is an upstream problem (a version we do not know), never a pydantic traceback in a pipeline.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ValidationError

from farmsync.errors import UpstreamError

M = TypeVar("M", bound=BaseModel)

FloatOrZero = Annotated[float, BeforeValidator(lambda v: 0.0 if v is None else v)]
"""A number the upstream may send as null where zero is meant (quantities, grams, totals)."""
IntOrZero = Annotated[int, BeforeValidator(lambda v: 0 if v is None else v)]


def parse_one(system: str, model: type[M], data: Any, method: str, path: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        message = errors[0]["msg"] if errors else ""
        detail = f"unexpected {model.__name__} shape at {where or '?'}: {message}"
        raise UpstreamError(system, method, path, detail) from None


def parse_list(system: str, model: type[M], data: Any, method: str, path: str) -> list[M]:
    if not isinstance(data, list):
        raise UpstreamError(system, method, path, f"expected a JSON array, got {type(data).__name__}")
    return [parse_one(system, model, item, method, path) for item in data]
