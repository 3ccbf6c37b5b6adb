"""One HTTP call as route handlers see it: typed access to query, body and path, with clear 4xx errors.

Handlers never parse raw input themselves, so every rejection names the field and what was expected, and
nothing a caller sends can turn into a 500.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from farmsync.errors import InputError

MAX_BODY_BYTES = 1024 * 1024
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
    def query(self) -> Any:
        return self.request.query_params

    def flag(self, name: str, default: bool | None = None) -> bool | None:
        """A boolean query parameter (``?force=true``); an unknown word is a 400 naming the parameter."""
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise InputError(
            f"query parameter {name!r} must be true or false, got {raw[:40]!r}",
            field=name,
            expected="true or false",
            status_code=422,
        )

    def integer(
        self, name: str, default: int | None = None, *, minimum: int | None = None, maximum: int | None = None
    ) -> int | None:
        """An integer query parameter within bounds, else a 422 naming it."""
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        expected = (
            "an integer"
            + (f" >= {minimum}" if minimum is not None else "")
            + (f" <= {maximum}" if maximum is not None else "")
        )
        try:
            value = int(raw)
        except ValueError:
            raise InputError(
                f"query parameter {name!r} must be {expected}, got {raw[:40]!r}",
                field=name,
                expected=expected,
                status_code=422,
            ) from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise InputError(
                f"query parameter {name!r} must be {expected}, got {value}",
                field=name,
                expected=expected,
                status_code=422,
            )
        return value

    def choice(self, name: str, options: tuple[str, ...], default: str | None = None) -> str | None:
        raw = self.query.get(name)
        if raw is None or raw == "":
            return default
        if raw not in options:
            raise InputError(
                f"query parameter {name!r} must be one of {', '.join(options)}, got {raw[:40]!r}",
                field=name,
                expected=" | ".join(options),
                status_code=422,
            )
        return raw

    async def body(self, limit: int = MAX_BODY_BYTES) -> bytes:
        """The raw body, refused with 413 past ``limit`` bytes (checked while reading, not after)."""
        if self._body is not None:
            return self._body
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
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
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(
                f"body is not valid JSON: {str(exc)[:120]}", field="body", expected="a JSON document"
            ) from None
        except RecursionError:  # "[[[[...]]]]" well within the size limit: the parser recurses per level
            raise InputError(
                "body is nested too deeply", field="body", expected="a JSON document of ordinary depth"
            ) from None
