"""The one error hierarchy of farmsync.

Callers catch at the level they mean::

    FarmsyncError
    ├── ConfigError              settings, printers.yml: one line per problem, exit code 1
    ├── InputError               something a caller sent (HTTP 4xx, CLI usage): field + what was expected
    │   └── AuthRequired         missing or wrong token/secret (HTTP 401)
    ├── StoreError               the idempotency store failed (Firestore down, SQLite locked too long)
    │   └── LeaseLost            our claim on a key was taken over or finished by someone else
    └── UpstreamError            a call to Bambuddy, InvenTree or a printer failed
        ├── UpstreamAuthError        401/403 from the upstream
        ├── UpstreamNotFound         404
        ├── UpstreamConflict         409
        ├── UpstreamValidation       400/411/413/414/415/422 (field errors kept as a dict)
        ├── UpstreamUnavailable      429 and 5xx: retryable
        └── UpstreamTransportError   connection refused/reset, timeout: retryable

Messages name the system, the method and the path, never a token, key, password or secret: the request that
failed is described from its method and URL path only (query strings can carry tokens, so they are dropped).
"""

from __future__ import annotations

from typing import Any


class FarmsyncError(Exception):
    """Base of every error farmsync raises on purpose."""


class ConfigError(FarmsyncError):
    """Configuration is invalid. ``problems`` holds one human line per problem."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class InputError(FarmsyncError):
    """A caller sent something we cannot use. Maps to an HTTP 4xx, never a 500."""

    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        expected: str | None = None,
        status_code: int | None = None,
    ) -> None:
        self.field = field
        self.expected = expected
        if status_code is not None:
            self.status_code = status_code
        super().__init__(message)

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": str(self), "status": self.status_code}
        if self.field:
            body["field"] = self.field
        if self.expected:
            body["expected"] = self.expected
        return body


class AuthRequired(InputError):
    """A token or secret was missing or wrong."""

    status_code = 401


class StoreError(FarmsyncError):
    """The idempotency store could not do what was asked (unreachable, contention beyond retries)."""


class LeaseLost(StoreError):
    """The claim we held was taken over (lease expired) or completed by someone else."""


class UpstreamError(FarmsyncError):
    """A call to an external system failed.

    ``system`` is "bambuddy", "inventree" or a printer name; ``path`` is the URL path without query string.
    """

    retryable = False

    def __init__(
        self,
        system: str,
        method: str,
        path: str,
        detail: str = "",
        *,
        status: int | None = None,
        errors: dict[str, Any] | None = None,
    ) -> None:
        self.system = system
        self.method = method.upper()
        self.path = path
        self.status = status
        self.detail = detail
        self.errors = errors or {}
        where = f"{system} {self.method} {path}"
        code = f" -> {status}" if status is not None else ""
        super().__init__(f"{where}{code}: {detail}" if detail else f"{where}{code}")


class UpstreamAuthError(UpstreamError):
    """The upstream refused our credentials (401) or our permissions (403)."""


class UpstreamNotFound(UpstreamError):
    """The upstream has no such object or route (404)."""


class UpstreamConflict(UpstreamError):
    """The upstream refused because of its current state (409): busy file, transfer in progress, exists."""


class UpstreamValidation(UpstreamError):
    """The upstream rejected what we sent (400/411/413/414/415/422). ``errors`` holds the field errors."""


class UpstreamUnavailable(UpstreamError):
    """The upstream is overloaded or broken right now (429, 5xx). Safe to retry a read."""

    retryable = True


class UpstreamTransportError(UpstreamError):
    """No usable answer: connection refused or reset, timeout. Safe to retry a read."""

    retryable = True


def error_for_status(status: int) -> type[UpstreamError]:
    """The UpstreamError subclass that stands for an HTTP status code."""
    if status in (401, 403):
        return UpstreamAuthError
    if status == 404:
        return UpstreamNotFound
    if status == 409:
        return UpstreamConflict
    if status == 429 or status >= 500:
        return UpstreamUnavailable
    if 400 <= status < 500:
        return UpstreamValidation
    return UpstreamError


def format_field_errors(body: Any) -> str:
    """Flatten an upstream error body (values may be str, list or nested dict/list) into one short line."""
    if isinstance(body, str):
        return body[:300]
    if isinstance(body, list):
        parts = [format_field_errors(item) for item in body]
        return "; ".join(p for p in parts if p)[:300]
    if isinstance(body, dict):
        parts = []
        for key, value in body.items():
            text = format_field_errors(value)
            if not text:
                continue
            parts.append(
                text if key in ("detail", "non_field_errors", "message", "error") else f"{key}: {text}"
            )
        return "; ".join(parts)[:300]
    return "" if body is None else str(body)[:300]
