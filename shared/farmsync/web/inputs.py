"""What callers may send, as pydantic models: query parameters and JSON bodies, validated in one place.

A handler declares its query with :func:`takes_query` and reads a body with :func:`read_body`; the route table
and the OpenAPI description read the same models, so the documented parameters are the parsed ones. pydantic's
errors become the project's 4xx (:class:`~farmsync.errors.InputError`) naming the field and what was expected,
worded from the field's own schema.

Numbers are stricter than pydantic's lax mode: only ASCII digits count (no ``_``, spaces, ``+`` or full-width
digits), and a string too long to be in range is refused before it is converted.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from farmsync.errors import InputError
from farmsync.web.call import FALSE_WORDS, TRUE_WORDS, Call, integer_range, is_ascii_integer

M = TypeVar("M", bound=BaseModel)


def _word(value: Any) -> Any:
    """``true``/``false`` and their usual synonyms, any case; anything else is refused (pydantic's error)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError("not a true/false word")
    return value


def _ascii_integer(value: Any) -> Any:
    if isinstance(value, str) and (not is_ascii_integer(value) or len(value.lstrip("-0")) > 19):
        raise ValueError("not an integer in range")  # 19 digits hold every 64-bit integer
    return value


Flag = Annotated[bool, BeforeValidator(_word)]
ASCII_DIGITS = BeforeValidator(_ascii_integer)
"""For an integer field, after its bounds: ``Annotated[int, Field(ge=1, le=10), ASCII_DIGITS]`` (in this order
pydantic states the bounds as ``minimum``/``maximum`` in the schema)."""


class Query(BaseModel):
    """Base of every query model: unknown parameters are ignored, an empty value means "not given"."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v != ""}
        return data


class DryRun(Query):
    dry_run: Flag | None = Field(None, description="Plan only: report the writes without making them.")


def field_schemas(model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """Each field's JSON schema in OpenAPI 3.0's dialect: an optional field's "or null" folded away (3.0 has no
    null), ``const`` as a one-value ``enum`` and ``examples`` as ``example``."""
    out: dict[str, dict[str, Any]] = {}
    for name, schema in model.model_json_schema()["properties"].items():
        options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
        merged = {**options[0], **{k: v for k, v in schema.items() if k != "anyOf"}}
        merged.pop("title", None)
        if merged.get("default") is None:
            merged.pop("default", None)
        if "const" in merged:
            merged["enum"] = [merged.pop("const")]
        if "examples" in merged:
            merged["example"] = merged.pop("examples")[0]
        out[name] = merged
    return out


def expected_text(schema: dict[str, Any]) -> str:
    """What a field takes, in words, from its schema: the ``expected`` of a 4xx."""
    kind = schema.get("type")
    if "enum" in schema:
        return " | ".join(str(v) for v in schema["enum"])
    if kind == "integer":
        return integer_range(schema["minimum"], schema["maximum"])
    if kind == "boolean":
        return "true or false"
    if kind == "string" and schema.get("example"):
        return f"a string such as {schema['example']}"
    return f"a {kind}" if kind else "a value"


def _shown(raw: Any) -> str:
    text = str(raw)
    if is_ascii_integer(text):
        return text if len(text) <= 40 else f"a number of {len(text.lstrip('-'))} digits"
    return repr(text[:40])


def _refusal(model: type[BaseModel], exc: ValidationError, where: str) -> InputError:
    error = exc.errors(include_url=False)[0]
    if not error["loc"]:  # the whole input: a body that is not an object
        return InputError(
            f"the {where} must be a JSON object", field="body", expected="a JSON object", status_code=422
        )
    name = str(error["loc"][0])
    schema = field_schemas(model).get(name, {})
    expected = expected_text(schema)
    prefix = f"query parameter {name!r}" if where == "query" else repr(name)
    got = f", got {_shown(error['input'])}" if where == "query" else ""
    return InputError(f"{prefix} must be {expected}{got}", field=name, expected=expected, status_code=422)


def read_query(call: Call, model: type[M]) -> M:
    """The query string as ``model``, or a 422 naming the first bad parameter and what it takes."""
    try:
        return model.model_validate(dict(call.query))
    except ValidationError as exc:
        raise _refusal(model, exc, "query") from None


def read_body(value: Any, model: type[M], where: str = "body") -> M:
    """A parsed JSON body (:meth:`Call.json`) as ``model``, or a 422 naming the field and what it takes."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise _refusal(model, exc, where) from None


QueryHandler = Callable[[Call, M], Awaitable[Any]]


def takes_query(model: type[M]) -> Callable[[QueryHandler[M]], Callable[[Call], Awaitable[Any]]]:
    """A handler that receives its validated query as ``model``; the route table reads ``query_model`` from it
    for the API description, so what is documented is what is parsed."""

    def wrap(function: QueryHandler[M]) -> Callable[[Call], Awaitable[Any]]:
        @functools.wraps(function)
        async def handler(call: Call) -> Any:
            return await function(call, read_query(call, model))

        # a function attribute the route table reads; mypy does not model attributes set on functions
        handler.query_model = model  # type: ignore[attr-defined]
        return handler

    return wrap
