"""Secure defaults in one place: which tokens are only placeholders, which addresses are loopback, and how a
credential written into a URL (``http://user:password@host``) is kept out of everything farmsync shows or logs.

Without SERVICE_API_TOKEN every manual route is open, destructive ones included (an applied filament run, a G-code
mirror that deletes files); without WEBHOOK_SHARED_SECRET anyone can trigger ticks. ``farmsync serve`` therefore
refuses a non-loopback address without a real service token unless the operator opts in (``--allow-open-access``
or ALLOW_OPEN_ACCESS=true), and ``config``, ``validate`` and ``serve`` warn about each unset or placeholder token.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

if TYPE_CHECKING:
    from farmsync.settings import Settings

MASK = "********"
PLACEHOLDERS = frozenset({"change-me", "changeme", "change_me", "replace-me", "secret", "token", "password"})
"""Values that example files and tutorials use (``.env.example`` ships ``SERVICE_API_TOKEN=change-me``)."""

SERVER_SECRETS = (
    ("SERVICE_API_TOKEN", "service_api_token", "every manual route is open"),
    ("WEBHOOK_SHARED_SECRET", "webhook_shared_secret", "anyone can trigger ticks"),
)


def is_placeholder(value: str) -> bool:
    """A token that only looks set: an example file's value such as ``change-me`` or ``replace-with-...``."""
    folded = value.strip().casefold()
    return folded in PLACEHOLDERS or folded.startswith(("replace-with", "your-", "<"))


def real_token(value: str) -> bool:
    return bool(value.strip()) and not is_placeholder(value)


def token_warnings(settings: Settings) -> list[str]:
    """One line per server-side token that is unset or a placeholder, saying what that leaves open."""
    lines = []
    for variable, field, consequence in SERVER_SECRETS:
        value = getattr(settings, field).get_secret_value()
        state = "is not set" if not value.strip() else "is a placeholder"
        if not real_token(value):
            lines.append(f"{variable} {state}: {consequence}")
    return lines


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address to listen on) only accepts connections from this machine."""
    name = host.strip().strip("[]").casefold()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def open_bind_refusal(settings: Settings, host: str, *, allow_open: bool) -> list[str]:
    """Why ``farmsync serve`` must not listen on ``host``, one line each (empty when it may)."""
    if allow_open or settings.allow_open_access or is_loopback(host):
        return []
    if real_token(settings.service_api_token.get_secret_value()):
        return []
    where = "every address" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - naming, not binding
    return [
        f"no real SERVICE_API_TOKEN: listening on {where} opens every route",
        "set SERVICE_API_TOKEN, use --host 127.0.0.1, or pass --allow-open-access",
    ]


def mask_url(url: str) -> str:
    """``url`` with the password of its user part masked (the user alone, when it is the only part: a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, _password = userinfo.partition(":")
    shown = f"{user}:{MASK}" if sep else MASK
    return urlunsplit(parts._replace(netloc=f"{shown}@{hostport}"))


def strip_credentials(url: str) -> str:
    """``url`` without any user part: for links people open in a browser (they must not carry a password)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def url_secrets(url: str) -> list[str]:
    """The credential of a URL's user part, as written and percent-decoded, for log and error redaction."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    if "@" not in parts.netloc:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    user, sep, password = userinfo.partition(":")
    secret = password if sep else user
    return [value for value in {secret, unquote(secret), userinfo, unquote(userinfo)} if value]


def secret_parts(url: str) -> list[str]:
    """The URL as written and as httpx prints it, and its path and query (where ntfy topics, Home Assistant
    webhook ids and Slack tokens live), so a log line carrying any of them is redacted."""
    url = url.strip()
    if not url:
        return []
    parts = urlsplit(url)
    found = [url, url.rstrip("/")]
    if parts.path and parts.path != "/":
        found.append(parts.path)
        segments = [segment for segment in parts.path.split("/") if segment]
        found.extend(
            segment
            for index, segment in enumerate(segments)
            if len(segment) >= 6 and (index == len(segments) - 1 or any(c.isdigit() for c in segment))
        )
    if parts.query:
        found.append(parts.query)
    try:
        import httpx

        found.append(str(httpx.URL(url)))
    except Exception:  # noqa: S110 - an unparsable URL fails later, with a message that does not echo it
        pass
    return found
