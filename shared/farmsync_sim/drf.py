"""Django REST framework behaviour the InvenTree simulator needs: field parsing, error bodies, pagination.

The messages are DRF's own, because clients (and farmsync's error formatter) see exactly these strings.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request

REQUIRED = "This field is required."
BLANK = "This field may not be blank."
NOT_NULL = "This field may not be null."
INVALID_CHOICE = "Select a valid choice. That choice is not one of the available choices."

_TRUE = {"t", "y", "yes", "true", "on", "1"}
_FALSE = {"f", "n", "no", "false", "off", "0"}


class ApiError(Exception):
    """An error answer: ``status`` and the JSON ``body`` (field errors, or ``{"detail": ...}``)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        super().__init__(str(body))


def invalid_pk(value: Any) -> str:
    return f'Invalid pk "{value}" - object does not exist.'


class FieldInvalid(ValueError):
    """One field's validation messages."""

    def __init__(self, *messages: str) -> None:
        self.messages = list(messages)
        super().__init__("; ".join(messages))


def parse_pk(value: Any, table: dict[int, Any], *, allow_null: bool = True) -> int | None:
    """A PrimaryKeyRelatedField: an existing pk (int or numeric string), or null when allowed."""
    if value is None or value == "":
        if allow_null:
            return None
        raise FieldInvalid(NOT_NULL)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise FieldInvalid(f"Incorrect type. Expected pk value, received {type(value).__name__}.")
    try:
        pk = int(value)
    except ValueError:
        raise FieldInvalid(f"Incorrect type. Expected pk value, received {type(value).__name__}.") from None
    if pk not in table:
        raise FieldInvalid(invalid_pk(value))
    return pk


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    if value is None:
        raise FieldInvalid(NOT_NULL)
    raise FieldInvalid("Must be a valid boolean.")


def parse_char(value: Any, *, max_length: int | None = None, allow_blank: bool = True) -> str:
    """A CharField: numbers become text, surrounding whitespace is trimmed, length counted in characters."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldInvalid("Not a valid string.")
    text = str(value).strip()
    if not text and not allow_blank:
        raise FieldInvalid(BLANK)
    if max_length is not None and len(text) > max_length:
        raise FieldInvalid(f"Ensure this field has no more than {max_length} characters.")
    return text


def parse_decimal(
    value: Any,
    *,
    places: int = 5,
    min_value: float | None = None,
    invalid: str = "A valid number is required.",
) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FieldInvalid(invalid)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise FieldInvalid(invalid) from None
    if not number.is_finite():
        raise FieldInvalid(invalid)
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        raise FieldInvalid(f"Ensure that there are no more than {places} decimal places.")
    if min_value is not None and number < Decimal(str(min_value)):
        raise FieldInvalid(f"Ensure this value is greater than or equal to {min_value:g}.")
    return number


def query_bool(request: Request, name: str) -> bool | None:
    """A django-filter boolean: None when absent or unreadable (then it is ignored)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    return None


def _positive_int(raw: str | None) -> int | None:
    try:
        value = int(raw) if raw is not None else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


def paginate(request: Request, items: list[Any]) -> Any:
    """DRF LimitOffsetPagination: a plain list without a valid ``limit``, else the count/next/previous envelope."""
    limit = _positive_int(request.query_params.get("limit"))
    if limit is None:
        return items
    try:
        offset = max(int(request.query_params.get("offset", "0")), 0)
    except ValueError:
        offset = 0
    count = len(items)
    url = request.url
    following = (
        str(url.include_query_params(limit=limit, offset=offset + limit)) if offset + limit < count else None
    )
    if offset <= 0:
        previous = None
    elif offset - limit <= 0:
        previous = str(url.include_query_params(limit=limit).remove_query_params("offset"))
    else:
        previous = str(url.include_query_params(limit=limit, offset=offset - limit))
    return {
        "count": count,
        "next": following,
        "previous": previous,
        "results": items[offset : offset + limit],
    }
