"""A Bambu printer's card over implicit FTPS (port 990, user ``bblp``): blocking, for one worker thread at a time.

The quirks handled here are bambu-printers.md §1-§2: TLS from byte 0 (no ``AUTH TLS``), TLS 1.2 only (under 1.3
uploads die with 426), data connections that must resume the control connection's TLS session (vsftpd's
``522 ... session reuse required``), PASV to the control host's own address, ``LIST`` only (no MLSD), a ``426`` or a
very late ``226`` after a complete upload, and no answer at all to ``unwrap()`` on some models. Nothing here trusts
the printer's clock: entries carry names and sizes only.
"""

from __future__ import annotations

import ftplib
import re
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from farmsync.gcode.backends.bambu_models import USER

CHUNK = 64 * 1024
MIN_TRANSFER_SECONDS = 600.0
SLOWEST_BYTES_PER_SECOND = 25_000
"""A transfer may take max(600 s, size / 25 KB/s): a third of the slowest printer seen (an A1 on Wi-Fi, 75 KB/s)."""


def transfer_deadline(size: int) -> float:
    """Seconds one transfer of ``size`` bytes may take before it is given up."""
    return max(MIN_TRANSFER_SECONDS, size / SLOWEST_BYTES_PER_SECOND)


def tls_context(ca_bundle: str | Path | None) -> ssl.SSLContext:
    """TLS 1.2 exactly, verified against ``ca_bundle`` with the printer's serial as the expected name, else
    encrypted but unverified.

    The printer's certificate names its serial (CN, no IP SAN) under Bambu's own CA, so the caller passes
    ``server_hostname=serial``. Bambu's CA lacks keyUsage, which Python 3.13's strict X.509 checks reject, so the
    strict flag is cleared (as ha-bambulab does); the chain and the name are still checked.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    if ca_bundle is None:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context.load_verify_locations(cafile=str(Path(ca_bundle).expanduser()))
    context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
    context.hostname_checks_common_name = True
    return context


class ImplicitFTPS(ftplib.FTP_TLS):
    """ftplib's FTP_TLS with TLS from the first byte and data channels that resume the control channel's session.

    The ``ntransfercmd`` override is the one every working Python client of these printers uses (bambuddy,
    ha-bambulab, bambu-printer-manager, bambulabs_api): wrap the data socket with ``session=`` the control socket's
    session. ftplib's ``transfercmd`` already waits for the ``150`` before the data-side handshake starts.
    """

    def __init__(self, context: ssl.SSLContext, server_hostname: str, timeout: float) -> None:
        super().__init__(context=context, timeout=timeout)
        self.server_hostname = server_hostname

    def connect(
        self, host: str = "", port: int = 0, timeout: float = -999, source_address: Any = None
    ) -> str:
        self.host, self.port = host, port
        if timeout != -999:
            self.timeout = timeout
        raw = socket.create_connection((host, port), self.timeout)
        try:
            self.sock = self.context.wrap_socket(raw, server_hostname=self.server_hostname)
        except BaseException:
            raw.close()
            raise
        self.af = self.sock.family
        self.file = self.sock.makefile("r", encoding=self.encoding)
        self.welcome = self.getresp()
        return self.welcome

    def ntransfercmd(self, cmd: str, rest: int | str | None = None) -> tuple[socket.socket, int | None]:
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)  # noqa: S321 - TLS is added just below
        if self._prot_p:  # type: ignore[attr-defined]  # FTP_TLS's PROT P flag, private so not in typeshed
            try:
                conn = self.context.wrap_socket(
                    conn,
                    server_hostname=self.server_hostname,
                    session=self.sock.session,  # type: ignore[union-attr]  # the control socket is TLS by now
                )
            except BaseException:
                conn.close()
                raise
        return conn, size


# ------------------------------------------------------------------------------------------------ listing

_LIST_LINE = re.compile(
    r"^(?P<type>[-dlbcps])[rwxsStTl-]{9}[.+@]?\s+\d+\s+\S+\s+\S+\s+(?P<size>\d+)\s+"
    r"(?P<month>[A-Za-z]{3})\s+\d{1,2}\s+(?:\d{1,2}:\d{2}|\d{4})\s(?P<name>.+)$"
)


@dataclass(frozen=True)
class ListedEntry:
    """One line of a ``LIST`` answer: the name, whether it is a folder, and its size. No time on purpose."""

    name: str
    is_dir: bool
    size: int


def parse_list(lines: list[str]) -> tuple[list[ListedEntry], list[str]]:
    """vsftpd's ``ls -l`` lines as entries, and the lines that could not be read (for a warning).

    Names may hold spaces (everything after the time or year is the name). ``total``, ``.`` and ``..`` are left
    out, and so are symlinks and devices, which a printer card does not hold and the mirror must not follow.
    """
    entries: list[ListedEntry] = []
    unreadable: list[str] = []
    for line in lines:
        text = line.rstrip("\r\n")
        if not text.strip() or re.match(r"^total\s+\d+$", text):
            continue
        match = _LIST_LINE.match(text)
        if match is None:
            unreadable.append(text)
            continue
        name = match["name"]
        if name in (".", ".."):
            continue
        if match["type"] in "-d":
            entries.append(ListedEntry(name=name, is_dir=match["type"] == "d", size=int(match["size"])))
    return entries, unreadable


# ------------------------------------------------------------------------------------------------ session


def reply_code(error: BaseException) -> int | None:
    """The three-digit code of an ftplib error reply, or None."""
    match = re.match(r"^(\d{3})", str(error))
    return int(match.group(1)) if match else None


class FolderMissing(ftplib.error_perm):
    """``CWD`` answered 550: no such folder (the reply text is kept, so it reads like any 550)."""


@dataclass
class StoreOutcome:
    """What the server said after the bytes went out; only ``SIZE`` afterwards says whether they arrived."""

    reply: str
    notes: list[str]


class CardSession:
    """One logged-in FTPS session to one printer. Not thread-safe: the back end runs it in one thread at a time."""

    def __init__(
        self,
        host: str,
        port: int,
        serial: str,
        access_code: str,
        context: ssl.SSLContext,
        *,
        timeout: float = 30.0,
        reply_wait: float = 90.0,
    ) -> None:
        self.ftp = ImplicitFTPS(context, serial, timeout)
        self.timeout = timeout
        self.reply_wait = reply_wait
        try:
            self.ftp.connect(host, port)
            self.ftp.login(USER, access_code)
            self.ftp.prot_p()  # PBSZ 0 + PROT P
            self.ftp.voidcmd("TYPE I")
            self.ftp.set_pasv(True)
        except BaseException:
            self.ftp.close()  # a half-open session would hold the printer's only slot
            raise

    @property
    def welcome(self) -> str:
        return self.ftp.welcome or ""

    def close(self) -> None:
        """QUIT politely, but never wait long for it: the session is over either way."""
        try:
            if self.ftp.sock is not None:
                self.ftp.sock.settimeout(5.0)
            self.ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            pass
        finally:
            self.ftp.close()

    def list_dir(self, wire: str) -> tuple[list[ListedEntry], list[str]]:
        """``CWD`` into ``wire`` (an absolute card path) and ``LIST`` it.

        Only CWD's 550 means the folder is missing (:class:`FolderMissing`); a LIST that fails is an error.
        """
        try:
            self.ftp.cwd(wire)
        except ftplib.error_perm as exc:
            if reply_code(exc) == 550:
                raise FolderMissing(str(exc)) from None
            raise
        lines: list[str] = []
        self.ftp.retrlines("LIST", lines.append)  # switches to TYPE A
        self.ftp.voidcmd("TYPE I")  # SIZE and transfers need binary mode
        return parse_list(lines)

    def size(self, wire: str) -> int | None:
        """``SIZE`` of one file (binary mode), or None when the printer has no such file (550)."""
        try:
            answer = self.ftp.sendcmd(f"SIZE {wire}")
        except ftplib.error_perm as exc:
            if reply_code(exc) == 550:
                return None
            raise
        return int(answer.split()[1])

    def store(
        self, wire: str, source: BinaryIO, size: int, progress: Callable[[int], None] | None = None
    ) -> StoreOutcome:
        """``STOR`` exactly ``size`` bytes of ``source`` to ``wire``, then read the server's verdict.

        The data socket is closed without a TLS close_notify (``unwrap()`` hangs on some models), so vsftpd may
        answer ``426`` for a file that arrived whole; some models take 30 s or more for the ``226``. Neither is
        taken as the result: the caller checks ``SIZE``. A refusal before any byte moved (553 no card or bad name,
        552 full, 550) is raised as is.
        """
        deadline = time.monotonic() + transfer_deadline(size)
        sent = 0
        self.ftp.voidcmd("TYPE I")
        conn = self.ftp.transfercmd(f"STOR {wire}")
        try:
            while sent < size:
                chunk = source.read(min(CHUNK, size - sent))
                if not chunk:
                    raise OSError(f"local file ended after {sent} of {size} bytes")
                conn.sendall(chunk)
                sent += len(chunk)
                if progress is not None:
                    progress(len(chunk))
                if time.monotonic() > deadline:
                    raise TimeoutError(f"upload took longer than {transfer_deadline(size):.0f} s")
        finally:
            conn.close()
        return self._verdict()

    def _verdict(self) -> StoreOutcome:
        assert self.ftp.sock is not None
        self.ftp.sock.settimeout(self.reply_wait)
        try:
            reply = self.ftp.getresp()
            return StoreOutcome(reply=reply, notes=[])
        except ftplib.error_temp as exc:
            if reply_code(exc) == 426:
                return StoreOutcome(reply=str(exc), notes=["426 after the upload (checked by SIZE)"])
            raise
        finally:
            self.ftp.sock.settimeout(self.timeout)

    def retrieve(
        self, wire: str, out: BinaryIO, size: int | None, progress: Callable[[int], None] | None
    ) -> int:
        """``RETR`` into ``out``; the deadline follows the listed size."""
        deadline = time.monotonic() + transfer_deadline(size or 0)
        written = 0
        self.ftp.voidcmd("TYPE I")
        conn = self.ftp.transfercmd(f"RETR {wire}")
        try:
            while True:
                chunk = conn.recv(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(len(chunk))
                if time.monotonic() > deadline:
                    raise TimeoutError("download took longer than its deadline")
        finally:
            conn.close()
        self._verdict()
        return written

    def rename(self, old: str, new: str) -> None:
        self.ftp.rename(old, new)

    def delete(self, wire: str) -> None:
        self.ftp.delete(wire)

    def mkdir(self, wire: str) -> None:
        self.ftp.mkd(wire)

    def rmdir(self, wire: str) -> None:
        self.ftp.rmd(wire)
