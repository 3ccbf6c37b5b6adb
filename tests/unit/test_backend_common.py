"""Shared back-end pieces: path checks, streamed bodies, digest maths, the factory."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from farmsync.errors import ConfigError, InputError
from farmsync.gcode.backends import (
    Kind,
    MoonrakerBackend,
    OctoPrintBackend,
    PrusaLinkBackend,
    PrusaLinkLegacyBackend,
    make_backend,
)
from farmsync.gcode.backends.common import (
    FileBody,
    LocalFileChanged,
    MultipartFileBody,
    check_path,
    local_size,
    quote_path,
    same_origin_path,
)
from farmsync.gcode.backends.digest import Challenge, digest_response, parse_challenge


@pytest.mark.parametrize(
    "path",
    [
        "../x.gcode",
        "a/../../x.gcode",
        "/etc/passwd",
        "a\\b.gcode",
        "a/\x00.gcode",
        "a//b.gcode",
        "./a",
        "a/",
        "",
    ],
)
def test_unsafe_paths_are_input_errors(path: str) -> None:
    with pytest.raises(InputError):
        check_path(path)


@pytest.mark.parametrize("path", ["a.gcode", "apple/prusament pla/ä b+c.gcode", "x/y/z/..gcode", ".hidden"])
def test_safe_paths_pass(path: str) -> None:
    assert check_path(path) == path


def test_root_allowed_only_when_asked() -> None:
    assert check_path("", allow_root=True) == ""


def test_quote_path_keeps_slashes_and_sub_delimiters() -> None:
    assert quote_path("a b/c+d/é.gcode") == "a%20b/c+d/%C3%A9.gcode"


def test_links_to_other_hosts_lose_their_host() -> None:
    assert same_origin_path("http://p:80", "http://evil.example/x/y.gcode?k=1") == "/x/y.gcode?k=1"
    assert same_origin_path("http://p:80", "/usb/A.GCO") == "/usb/A.GCO"


async def _drain(body: object) -> bytes:
    return b"".join([chunk async for chunk in body])  # type: ignore[attr-defined]


async def test_file_body_is_reiterable_and_counts_progress_once(tmp_path: Path) -> None:
    source = tmp_path / "f.gcode"
    source.write_bytes(bytes(range(256)) * 1000)
    seen: list[int] = []
    body = FileBody(source, 256_000, progress=seen.append, hash_names=("sha1",), chunk_size=10_000)
    first = await _drain(body)
    second = await _drain(body)
    assert first == second == source.read_bytes()
    assert sum(seen) == 256_000  # a retry does not count the bytes twice
    assert body.passes == 2
    assert body.digests["sha1"] == hashlib.sha1(first, usedforsecurity=False).hexdigest()


async def test_file_body_notices_a_shrunken_file(tmp_path: Path) -> None:
    source = tmp_path / "f.gcode"
    source.write_bytes(b"x" * 10)
    with pytest.raises(LocalFileChanged):
        await _drain(FileBody(source, 20))
    with pytest.raises(LocalFileChanged):
        local_size(source, 20)


async def test_multipart_length_matches_what_is_sent(tmp_path: Path) -> None:
    source = tmp_path / "f.gcode"
    source.write_bytes(b"G28\n" * 100)
    body = FileBody(source, 400, hash_names=("sha256",))
    form = MultipartFileBody(
        fields=[("root", "gcodes"), ("path", 'a "q"/ü')],
        file_field="file",
        filename='we"ird.gcode',
        body=body,
        trailing_hashes={"checksum": "sha256"},
    )
    sent = await _drain(form)
    assert len(sent) == form.content_length
    assert b'filename="we%22ird.gcode"' in sent
    assert hashlib.sha256(b"G28\n" * 100).hexdigest().encode() in sent
    assert sent.endswith(f"--{form.boundary}--\r\n".encode())


def test_rfc2617_digest_vector() -> None:
    challenge = Challenge(realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", qop="auth")
    response = digest_response(
        username="Mufasa",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        challenge=challenge,
        nc=1,
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


def test_rfc2069_digest_without_qop() -> None:
    challenge = Challenge(realm="Printer API", nonce="0123456789abcdef")
    md5 = lambda s: hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()  # noqa: E731
    expected = md5(f"{md5('maker:Printer API:pw')}:0123456789abcdef:{md5('GET:/api/v1/status')}")
    got = digest_response(
        username="maker", password="pw", method="GET", uri="/api/v1/status", challenge=challenge
    )
    assert got == expected


def test_parse_challenge_picks_digest_and_flags() -> None:
    headers = ['ApiKey realm="Printer API"', 'Digest realm="Printer API", nonce="abcd", stale=true']
    challenge = parse_challenge(headers)
    assert challenge == Challenge(realm="Printer API", nonce="abcd", stale=True)
    legacy = parse_challenge(
        ['Digest realm="Administrator", qop="auth", algorithm="MD5-sess", nonce="n", opaque="o"']
    )
    assert (
        legacy is not None
        and legacy.qop == "auth"
        and legacy.algorithm == "MD5-sess"
        and legacy.opaque == "o"
    )
    assert parse_challenge(['Digest realm="x", nonce="n", qop="auth-int"']) is None


@pytest.mark.parametrize(
    ("kind", "kwargs", "cls"),
    [
        ("prusalink", {"password": "pw"}, PrusaLinkBackend),
        ("prusalink-legacy", {"api_key": "k"}, PrusaLinkLegacyBackend),
        ("prusalink-legacy", {"username": "u", "password": "p"}, PrusaLinkLegacyBackend),
        ("octoprint", {"api_key": "k"}, OctoPrintBackend),
        ("moonraker", {}, MoonrakerBackend),
    ],
)
async def test_make_backend_builds_each_kind(kind: str, kwargs: dict[str, str], cls: type) -> None:
    backend = make_backend("p1", kind, "127.0.0.1:8101", **kwargs)
    try:
        assert isinstance(backend, cls)
        assert backend.kind == Kind(kind)
        assert backend.name == "p1"
    finally:
        await backend.aclose()


@pytest.mark.parametrize(
    ("kind", "host", "kwargs"),
    [
        ("prusalink", "http://h", {}),
        ("prusalink-legacy", "http://h", {"username": "u"}),
        ("octoprint", "http://h", {}),
        ("bambu", "http://h", {"api_key": "k"}),
        ("moonraker", "ftp://h", {}),
        ("moonraker", "http://user:pw@h", {}),
    ],
)
def test_make_backend_config_errors(kind: str, host: str, kwargs: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as caught:
        make_backend("p1", kind, host, **kwargs)
    assert "pw" not in str(caught.value)
