"""Who may call what: the service token for manual routes, the shared secret for the webhook.

Both are compared with :func:`hmac.compare_digest` on equal-length digests, so neither the value nor its length
leaks through timing. Bambuddy cannot send custom headers, so the webhook secret is also accepted as
``Authorization: Bearer <secret>`` (what Bambuddy's ``auth_header`` sends) or as ``?secret=`` on the URL.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from farmsync.errors import AuthRequired


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time equality that also hides the expected length."""
    if given is None:
        given = ""
    left = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    right = hashlib.sha256(expected.encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(left, right) and given != "" and expected != ""


def require_service_token(headers: Mapping[str, str], expected: str) -> None:
    """Manual routes: ``X-Service-Token`` must match SERVICE_API_TOKEN when one is set."""
    if not expected:
        return
    if not same_secret(headers.get("x-service-token"), expected):
        raise AuthRequired(
            "missing or wrong X-Service-Token",
            field="X-Service-Token",
            expected="the SERVICE_API_TOKEN value",
        )


def bearer(headers: Mapping[str, str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    scheme, _, credential = value.partition(" ")
    return credential.strip() if scheme.lower() == "bearer" else None


def require_webhook_secret(headers: Mapping[str, str], query: Mapping[str, str], expected: str) -> None:
    """Webhook: any one of X-Sync-Secret, ``Authorization: Bearer``, or ``?secret=`` must match."""
    if not expected:
        return
    offered = [headers.get("x-sync-secret"), bearer(headers), query.get("secret")]
    # evaluate every candidate: which one matched must not change the time taken
    matches = [same_secret(value, expected) for value in offered if value is not None]
    if not any(matches):
        raise AuthRequired(
            "missing or wrong webhook secret",
            field="Authorization",
            expected="Authorization: Bearer <WEBHOOK_SHARED_SECRET>, X-Sync-Secret or ?secret=",
        )
