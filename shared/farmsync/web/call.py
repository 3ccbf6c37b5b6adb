"""One HTTP call as route handlers see it: the body (bounded, JSON checked), path and query, with clear 4xx errors.

Handlers never parse raw input themselves (query and body models: farmsync.web.inputs), so every rejection
names the field and what was expected, and nothing a caller sends can turn into a 500.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request

from farmsync.errors import InputError

MAX_BODY_BYTES = 1024 * 1024
INT64_MAX = 2**63 - 1
"""The largest number farmsync accepts anywhere a caller sends one (ids are 64-bit in Bambuddy and InvenTree)."""
_ASCII_INTEGER = re.compile(r"-?[0-9]+")
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


@dataclass
class Call:
    """The parsed request: ``path_params`` from the route, ``request`` for anything else."""

    request: Request
    path_params: dict[str, Any] = field(default_factory=dict)
    _body: bytes | None = None

    @property
    def headers(self) -> Any:
        return self.request.headers

    @property
    def query(self) -> QueryParams:
        return self.request.query_params

    async def body(self, limit: int = MAX_BODY_BYTES) -> bytes:
        """The raw body, refused with 413 past ``limit`` bytes (checked while reading, not after)."""
        if self._body is not None:
            return self._body
        declared = self.headers.get("content-length")
        if declared and _ASCII_INTEGER.fullmatch(declared) and _over(declared, limit):
            raise InputError(
                f"body is larger than {limit} bytes",
                field="body",
                expected=f"<= {limit} bytes",
                status_code=413,
            )
        chunks, size = [], 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > limit:
                raise InputError(
                    f"body is larger than {limit} bytes",
                    field="body",
                    expected=f"<= {limit} bytes",
                    status_code=413,
                )
            chunks.append(chunk)
        self._body = b"".join(chunks)
        return self._body

    async def json(self, *, required: bool = False, limit: int = MAX_BODY_BYTES) -> Any:
        """The JSON body (None when empty and not required); 415 for another content type, 400 when malformed."""
        raw = await self.body(limit)
        if not raw.strip():
            if required:
                raise InputError("a JSON body is required", field="body", expected="a JSON object")
            return None
        content_type = self.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type and not (content_type == "application/json" or content_type.endswith("+json")):
            raise InputError(
                f"content type {content_type[:60]!r} is not JSON",
                field="Content-Type",
                expected="application/json",
                status_code=415,
            )
        try:
            value = json.loads(
                raw, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant
            )
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(
                f"body is not valid JSON: {str(exc)[:120]}", field="body", expected="a JSON document"
            ) from None
        except RecursionError:  # "[[[[...]]]]" well within the size limit: the parser recurses per level
            raise InputError(
                "body is nested too deeply", field="body", expected="a JSON document of ordinary depth"
            ) from None
        refuse_out_of_range(value)
        return value


def is_ascii_integer(text: str) -> bool:
    """Whether ``text`` is an integer in ASCII digits (``int()`` would also take full-width ones, ``_``, spaces)."""
    return _ASCII_INTEGER.fullmatch(text) is not None


def integer_range(minimum: int, maximum: int) -> str:
    return f"an integer from {minimum} to {maximum}"


def bounded_integer(raw: str, name: str, minimum: int, maximum: int, *, where: str) -> int:
    """``raw`` as an integer in ``[minimum, maximum]``, else a 422 naming ``name`` and the range.

    Only ASCII digits count (``int()`` would also take full-width digits, ``_`` and spaces), and the length is
    checked before converting, so 5,000 digits are refused instead of reaching Python's 4,300-digit limit.
    """
    expected = integer_range(minimum, maximum)
    if not _ASCII_INTEGER.fullmatch(raw):
        raise InputError(
            f"{where} {name!r} must be {expected}, got {raw[:40]!r}",
            field=name,
            expected=expected,
            status_code=422,
        )
    if _over(raw.lstrip("-"), max(abs(minimum), abs(maximum))) or not minimum <= int(raw) <= maximum:
        shown = raw if len(raw) <= 40 else f"a number of {len(raw.lstrip('-'))} digits"
        raise InputError(
            f"{where} {name!r} must be {expected}, got {shown}",
            field=name,
            expected=expected,
            status_code=422,
        )
    return int(raw)


def _over(digits: str, limit: int) -> bool:
    """Whether the ASCII digit string ``digits`` exceeds ``limit``, without converting a huge one."""
    digits = digits.lstrip("0") or "0"
    return len(digits) > len(str(limit)) or int(digits) > limit


class _OutOfRange:
    """A JSON number beyond what farmsync accepts, kept in place so the refusal can say where it was."""

    def __init__(self, text: str) -> None:
        self.text = text


def _json_int(text: str) -> int | _OutOfRange:
    return _OutOfRange(text) if _over(text.lstrip("-"), INT64_MAX) else int(text)


def _json_float(text: str) -> float | _OutOfRange:
    value = float(text)
    return value if math.isfinite(value) else _OutOfRange(text)


def _json_constant(text: str) -> _OutOfRange:
    return _OutOfRange(text)  # NaN, Infinity, -Infinity: not JSON numbers


def refuse_out_of_range(value: Any) -> None:
    """A 422 naming the first number in a parsed body outside 64-bit integers or finite floats.

    Walks with its own stack: a body may nest as deep as the JSON parser allows, deeper than recursion here could.
    """
    stack: list[tuple[str, Any]] = [("body", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, _OutOfRange):
            shown = item.text if len(item.text) <= 40 else f"a number of {len(item.text)} characters"
            expected = f"a finite number; an integer from {-INT64_MAX} to {INT64_MAX}"
            raise InputError(
                f"{where[:120]} must be {expected}, got {shown}",
                field=where[:120],
                expected=expected,
                status_code=422,
            )
        if isinstance(item, dict):
            stack.extend((f"{where}.{key}", child) for key, child in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((f"{where}[{i}]", child) for i, child in reversed(list(enumerate(item))))
