"""HTTP Digest auth that PrusaLink printers accept, with the nonce kept between requests.

Why not ``httpx.DigestAuth``: it computes the RFC 2069 (no ``qop``) response correctly, but always sends
``algorithm=MD5`` even when the challenge named none, which older Buddy firmware refused (pyprusalink carries a
workaround, httpx PR #3045, Buddy PR #3665). This class echoes ``algorithm`` only when the challenge had it, handles
``qop=auth`` with MD5-sess (PrusaLink 0.8) and ``opaque``, reuses one challenge for every request until the printer
says ``stale=true`` (one 401 round trip per client lifetime, not per request), and never loops on a wrong password.

:class:`BuddyAuth` adds Buddy's split: ``X-Api-Key`` on ``/api`` (no challenge, and an upload body is never sent
into a 401), digest for downloads (Buddy takes the same secret both ways; sending both headers is avoided on
purpose).
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from urllib.request import parse_http_list, parse_keqv_list

import httpx

SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str | None = None
    qop: str | None = None
    opaque: str | None = None
    stale: bool = False


def parse_challenge(headers: list[str]) -> Challenge | None:
    """The first ``Digest`` challenge among ``WWW-Authenticate`` values, or None."""
    for header in headers:
        scheme, _, rest = header.strip().partition(" ")
        if scheme.lower() != "digest":
            continue
        fields = {k.lower(): v for k, v in parse_keqv_list(parse_http_list(rest)).items()}
        if "nonce" not in fields:
            continue
        qop = None
        if "qop" in fields:
            offered = [q.strip().lower() for q in fields["qop"].split(",")]
            qop = "auth" if "auth" in offered else None
            if qop is None:
                continue  # only auth-int offered: we cannot answer it
        return Challenge(
            realm=fields.get("realm", ""),
            nonce=fields["nonce"],
            algorithm=fields.get("algorithm"),
            qop=qop,
            opaque=fields.get("opaque"),
            stale=fields.get("stale", "").lower() == "true",
        )
    return None


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def digest_response(
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    challenge: Challenge,
    nc: int = 1,
    cnonce: str = "",
) -> str:
    """The ``response`` value: RFC 2069 form without qop, RFC 2617 form with ``qop=auth`` (MD5 or MD5-sess)."""
    algorithm = (challenge.algorithm or "MD5").upper()
    if algorithm not in ("MD5", "MD5-SESS"):
        raise ValueError(f"unsupported digest algorithm {challenge.algorithm!r}")
    ha1 = _md5(f"{username}:{challenge.realm}:{password}")
    if algorithm == "MD5-SESS":
        ha1 = _md5(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _md5(f"{method}:{uri}")
    if challenge.qop is None:
        return _md5(f"{ha1}:{challenge.nonce}:{ha2}")
    return _md5(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:{challenge.qop}:{ha2}")


class DigestAuth(httpx.Auth):
    """Digest auth that keeps the last challenge and re-challenges only when the server asks (401, stale)."""

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self, username: str, password: str, *, cnonce_factory: Callable[[], str] | None = None
    ) -> None:
        self._username = username
        self._password = password
        self._challenge: Challenge | None = None
        self._nc = 0
        self._lock = threading.Lock()
        self._cnonce = cnonce_factory or (lambda: os.urandom(8).hex())
        self.challenges = 0
        """How many 401 challenges were answered (tests and benchmarks read it)."""

    @property
    def has_challenge(self) -> bool:
        return self._challenge is not None

    def _header(self, request: httpx.Request, challenge: Challenge) -> str:
        uri = request.url.raw_path.decode("ascii")
        method = request.method
        with self._lock:
            self._nc += 1
            nc = self._nc
        cnonce = self._cnonce() if challenge.qop or (challenge.algorithm or "").upper() == "MD5-SESS" else ""
        response = digest_response(
            username=self._username,
            password=self._password,
            method=method,
            uri=uri,
            challenge=challenge,
            nc=nc,
            cnonce=cnonce,
        )
        parts = [
            f'username="{_quote(self._username)}"',
            f'realm="{_quote(challenge.realm)}"',
            f'nonce="{_quote(challenge.nonce)}"',
            f'uri="{_quote(uri)}"',
            f'response="{response}"',
        ]
        if challenge.algorithm:
            parts.append(f"algorithm={challenge.algorithm}")
        if challenge.opaque is not None:
            parts.append(f'opaque="{_quote(challenge.opaque)}"')
        if challenge.qop:
            parts += [f"qop={challenge.qop}", f"nc={nc:08x}", f'cnonce="{cnonce}"']
        return "Digest " + ", ".join(parts)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        sent_with = self._challenge
        if sent_with is not None:
            request.headers["Authorization"] = self._header(request, sent_with)
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get_list("www-authenticate"))
        if challenge is None:
            return
        if sent_with is not None and not challenge.stale and challenge.nonce == sent_with.nonce:
            return  # the same nonce was refused: wrong credentials, do not loop
        self._challenge = challenge
        self._nc = 0
        self.challenges += 1
        request.headers["Authorization"] = self._header(request, challenge)
        yield request


class BuddyAuth(httpx.Auth):
    """Buddy: ``X-Api-Key`` (the same password) on every ``/api`` route, digest for the rest (file downloads).

    Buddy checks the key on every ``/api`` route (printer-apis.md §2.1), so reads need no 401 round trip: at 32
    printers that was one request in ten of a no-op run. Downloads (``/usb/...``) are not ``/api`` routes and
    keep digest, whose challenge is answered once per client.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(self, password: str, username: str = "maker") -> None:
        self.digest = DigestAuth(username, password)
        self._api_key = password

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if request.method in SAFE_METHODS and not request.url.path.startswith("/api/"):
            yield from self.digest.auth_flow(request)
            return
        request.headers.pop("Authorization", None)
        request.headers["X-Api-Key"] = self._api_key
        yield request


_QUOTE_RE = re.compile(r'(["\\])')


def _quote(value: str) -> str:
    return _QUOTE_RE.sub(r"\\\1", value)
