"""Small helpers both simulated servers share: clock, timestamp formats, JSON responses, tiny PNGs."""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response


def utcnow() -> datetime:
    """Naive UTC now: both servers store naive UTC timestamps."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse_dt(value: Any) -> datetime | None:
    """Read a seed timestamp (ISO string, with or without Z, or a datetime) as naive UTC."""
    if value is None or isinstance(value, datetime):
        return value
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1]
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def iso(value: datetime | None) -> str | None:
    """Bambuddy's timestamp form: ISO-8601 without a zone."""
    return value.isoformat() if value is not None else None


def minute_text(value: datetime | None) -> str | None:
    """InvenTree's display form for tracking dates and ``updated``: minute resolution."""
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else None


def date_text(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%d") if value is not None else None


class JSON(Response):
    """A JSON response that keeps non-ASCII text as is, like FastAPI and DRF do."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def stable_hex(*parts: object, length: int = 40) -> str:
    """Deterministic hex derived from ``parts``: ids, keys and tags that stay the same for one seed."""
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()
    while len(digest) < length:
        digest += hashlib.sha256(digest.encode()).hexdigest()
    return digest[:length]


def tiny_png(seed: object, size: int = 8) -> bytes:
    """A valid ``size`` x ``size`` single-colour RGB PNG whose colour depends on ``seed``."""
    rgb = bytes.fromhex(stable_hex("png", seed, length=6))
    raw = b"".join(b"\x00" + rgb * size for _ in range(size))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def parse_multipart(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    """Split a multipart/form-data body into ``{field: (filename, bytes)}``.

    python-multipart is not a dependency, and the stdlib email parser may rewrite line endings inside binary
    parts (PNG starts with CR LF), so the body is cut on the boundary by hand.
    """
    boundary = ""
    for piece in content_type.split(";")[1:]:
        key, _, value = piece.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        return {}
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in body.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break
        part = part.removeprefix(b"\r\n")
        head, _, content = part.partition(b"\r\n\r\n")
        content = content.removesuffix(b"\r\n")
        name: str | None = None
        filename: str | None = None
        for line in head.decode("utf-8", "replace").split("\r\n"):
            if not line.lower().startswith("content-disposition:"):
                continue
            for item in line.split(";")[1:]:
                key, _, value = item.strip().partition("=")
                value = value.strip().strip('"')
                if key == "name":
                    name = value
                elif key == "filename":
                    filename = value
        if name is not None:
            fields[name] = (filename, content)
    return fields


TIMESTAMP_KEYS = frozenset(
    {
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "archived_at",
        "deleted_at",
        "last_used",
        "encode_time",
        "last_weighed_at",
        "date",
        "updated",
        "creation_date",
    }
)


def dump_records(records: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """State records as JSON-ready seed rows (timestamps become ISO strings), in id order."""
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in records[key].items()}
        for key in sorted(records)
    ]


def load_records(rows: list[dict[str, Any]], key: str = "id") -> dict[int, dict[str, Any]]:
    """Seed rows as state records keyed by ``key``; timestamp fields are parsed to naive UTC."""
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        record = {k: parse_dt(v) if k in TIMESTAMP_KEYS and isinstance(v, str) else v for k, v in row.items()}
        out[int(record[key])] = record
    return out
