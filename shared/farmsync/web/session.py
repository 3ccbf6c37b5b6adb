"""The operator page's session: sign in once with the service token, then a signed cookie; CSRF on every button.

The cookie is signed with itsdangerous (a key derived from SERVICE_API_TOKEN, so changing the token signs everyone
out) and is HttpOnly and SameSite=Strict. It carries no secret: whether the holder signed in, a random CSRF token
that every form posts back in a hidden field, and at most one short message for the next view. Callers that send
``X-Service-Token`` (scripts) need neither the cookie nor the CSRF field: a browser cannot add that header to a
cross-site request. Without a token configured there is no sign-in, but the CSRF check still holds, under a key
made at process start.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from itsdangerous import BadSignature, URLSafeTimedSerializer

from farmsync.errors import AuthRequired, InputError
from farmsync.settings import Settings
from farmsync.web.auth import same_secret
from farmsync.web.call import Call

COOKIE = "farmsync_session"
MAX_AGE_SECONDS = 12 * 3600
FORM_MAX_BYTES = 16 * 1024
_PROCESS_KEY = secrets.token_bytes(32)  # no token configured: sessions last as long as the process


@dataclass
class Session:
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    signed_in: bool = False
    flash: str | None = None
    flash_kind: str = "ok"
    preview_at: float | None = None  # when this session last previewed a G-code sync
    preview_printer: str | None = None  # ... of which printer
    changed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "csrf": self.csrf,
            "in": self.signed_in,
            "flash": self.flash,
            "kind": self.flash_kind,
            "preview": self.preview_at,
            "printer": self.preview_printer,
        }

    def say(self, text: str, kind: str = "ok") -> None:
        self.flash, self.flash_kind, self.changed = text[:500], kind, True

    def take_flash(self) -> tuple[str | None, str]:
        text, kind = self.flash, self.flash_kind
        if text is not None:
            self.flash, self.changed = None, True
        return text, kind


def token_of(settings: Settings) -> str:
    return settings.service_api_token.get_secret_value()


def serializer(settings: Settings) -> URLSafeTimedSerializer:
    token = token_of(settings)
    key = (
        hmac.new(token.encode("utf-8", "surrogateescape"), b"farmsync page session", hashlib.sha256).digest()
        if token
        else _PROCESS_KEY
    )
    return URLSafeTimedSerializer(key, salt="farmsync-page")


def load(call: Call, settings: Settings) -> Session:
    """The caller's session, or a new one (a bad, old or foreign cookie counts as none)."""
    raw = call.request.cookies.get(COOKIE)
    if raw:
        try:
            data = serializer(settings).loads(raw, max_age=MAX_AGE_SECONDS)
        except BadSignature:
            data = None
        if isinstance(data, dict) and isinstance(data.get("csrf"), str):
            preview = data.get("preview")
            return Session(
                csrf=data["csrf"],
                signed_in=data.get("in") is True,
                flash=data.get("flash") if isinstance(data.get("flash"), str) else None,
                flash_kind=str(data.get("kind") or "ok"),
                preview_at=float(preview) if isinstance(preview, int | float) else None,
                preview_printer=data.get("printer") if isinstance(data.get("printer"), str) else None,
            )
    return Session(changed=True)


def cookie(call: Call, settings: Settings, session: Session | None) -> str:
    """The Set-Cookie value for ``session`` (None: sign out, the cookie expires now)."""
    secure = "; Secure" if call.request.url.scheme == "https" else ""
    if session is None:
        return f"{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict{secure}"
    value = serializer(settings).dumps(session.as_dict())
    return f"{COOKIE}={value}; Path=/; Max-Age={MAX_AGE_SECONDS}; HttpOnly; SameSite=Strict{secure}"


def header_token_ok(call: Call, settings: Settings) -> bool:
    token = token_of(settings)
    return bool(token) and same_secret(call.headers.get("x-service-token"), token)


def allowed(call: Call, settings: Settings, session: Session) -> bool:
    """May this caller see the page: no token configured, the header token, or a signed-in session."""
    return not token_of(settings) or header_token_ok(call, settings) or session.signed_in


def sign_in(settings: Settings, session: Session, offered: str | None) -> bool:
    """Check the token typed into the sign-in form; a new CSRF token on success (no fixation)."""
    if not same_secret(offered, token_of(settings)):
        return False
    session.signed_in, session.csrf, session.changed = True, secrets.token_urlsafe(24), True
    return True


async def form(call: Call) -> dict[str, str]:
    """A url-encoded form body as one value per field (the first when repeated)."""
    content_type = call.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await call.body(FORM_MAX_BYTES)
    if raw and content_type != "application/x-www-form-urlencoded":
        raise InputError(
            f"content type {content_type[:60]!r} is not a form",
            field="Content-Type",
            expected="application/x-www-form-urlencoded",
            status_code=415,
        )
    try:
        parsed = parse_qs(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InputError("the form is not valid", field="body", expected="a url-encoded form") from None
    return {k: v[0] for k, v in parsed.items()}


def require_action(call: Call, settings: Settings, session: Session, fields: dict[str, str]) -> None:
    """A button press: the header token alone, or a signed-in session (when a token is set) and its CSRF token."""
    if header_token_ok(call, settings):
        return
    if token_of(settings) and not session.signed_in:
        raise AuthRequired("sign in first", field="X-Service-Token", expected="the SERVICE_API_TOKEN value")
    offered = fields.get("csrf", "").encode("utf-8", "surrogateescape")
    if not secrets.compare_digest(offered, session.csrf.encode("ascii")):
        raise InputError(
            "the form's CSRF token is missing or stale: reload the page and press the button again",
            field="csrf",
            expected="the token of the page's form",
            status_code=403,
        )


def recent(at: float | None, seconds: float) -> bool:
    return at is not None and time.time() - at <= seconds
