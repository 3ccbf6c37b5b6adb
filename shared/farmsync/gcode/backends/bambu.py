"""Bambu Lab printers (X1, P1, P2S, A1, H2) in LAN mode: the card over implicit FTPS, the busy state over MQTT.

Display paths are relative to one folder of the card (``storage``, default ``farmsync``), so the mirror never
sees, let alone deletes, what Bambu Studio and the cloud keep in ``/`` and ``/cache``. Every FTP step for one
printer runs in one worker thread at a time over one session (two sessions, or two STORs, break these printers);
different printers run in parallel. Uploads go to a temporary name, are checked with ``SIZE`` and only then renamed
over the real name, so an interrupted upload never leaves a truncated file where the printer would start it.
Listings carry names and sizes only: the printer's clock is never used (its zone and year are unreliable), and the
mirror judges staleness by the sha256 it recorded at upload time. Reference: bambu-printers.md.
"""

from __future__ import annotations

import asyncio
import ftplib
import logging
import secrets
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from farmsync.errors import (
    UpstreamAuthError,
    UpstreamConflict,
    UpstreamError,
    UpstreamNotFound,
    UpstreamTransportError,
    UpstreamValidation,
)
from farmsync.gcode.backends.bambu_ftps import CardSession, FolderMissing, reply_code, tls_context
from farmsync.gcode.backends.bambu_models import (
    BAMBU_SUFFIXES,
    DEFAULT_STORAGE,
    FTP_PORT,
    IDLE_STATES,
    MQTT_PORT,
    PUSHALL_INTERVAL,
    PUSHALL_LIMITED_TYPES,
    BambuTarget,
    Resolver,
    bambu_type,
)
from farmsync.gcode.backends.bambu_mqtt import SLOTS_FULL, MqttClosed, MqttNoState, MqttRefused, read_state
from farmsync.gcode.backends.base import Kind, PrinterStatus, ProgressCallback, RemoteEntry, UploadResult
from farmsync.gcode.backends.common import (
    UPLOAD_RETRY,
    SkipLog,
    UploadVerificationError,
    basename,
    check_path,
    join,
    local_size,
    name_problem,
    parent_of,
)

log = logging.getLogger("farmsync.gcode.backends.bambu")
T = TypeVar("T")
TEMP_SUFFIX = ".farmsync-part"
_FAT_FORBIDDEN = set('<>:"\\|?*')
RELOGIN = (
    "the printer refused the access code: re-enter it from the printer's screen (it changes when LAN mode or "
)
RELOGIN += "Developer Mode is switched, or when it is refreshed)"


def fat_problem(path: str) -> str | None:
    """Why a card (FAT32/exFAT) would refuse ``path``, or None (bambuddy ``utils/filename.py``'s rules)."""
    for part in path.split("/"):
        bad = sorted(set(part) & _FAT_FORBIDDEN)
        if bad:
            return f"{part!r} holds {''.join(bad)!r}, which the printer's card does not allow"
        if part != part.rstrip(" ."):
            return f"{part!r} ends in a space or dot, which the printer's card does not allow"
        if len(part.encode("utf-8")) > 255:
            return f"{part[:40]!r}... is longer than 255 bytes"
    return None


class BambuBackend(SkipLog):
    """One Bambu printer. ``access_code`` is the LAN access code; it never appears in errors or logs."""

    kind = Kind.BAMBU
    accepts = BAMBU_SUFFIXES  # the mirror leaves other source files (.bgcode) off Bambu printers
    session_retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0)
    """Seconds before each new login after a 421: printers free the slot of a closed session slowly."""

    def __init__(
        self,
        name: str,
        *,
        access_code: str,
        host: str | None = None,
        serial: str | None = None,
        model: str | None = None,
        storage: str = DEFAULT_STORAGE,
        ca_bundle: str | Path | None = None,
        ftp_port: int = FTP_PORT,
        mqtt_port: int = MQTT_PORT,
        timeout: float = 30.0,
        state_wait: float = 10.0,
        reply_wait: float = 90.0,
        pushall_interval: float | None = None,
        resolve: Resolver | None = None,
    ) -> None:
        self.name = name
        self._code = access_code
        self._target = BambuTarget(host, serial, bambu_type(model)) if host and serial else None
        self._model = bambu_type(model)
        self._resolve = resolve
        self.folder = storage.strip("/")
        self.ca_bundle = ca_bundle
        self.ftp_port = ftp_port
        self.mqtt_port = mqtt_port
        self.timeout = timeout
        self.state_wait = state_wait
        self.reply_wait = reply_wait
        self._pushall_interval = pushall_interval
        self._context = tls_context(ca_bundle)
        self._session: CardSession | None = None
        self._lock = asyncio.Lock()
        self.skipped: list[str] = []

    # ------------------------------------------------------------------ plumbing

    @property
    def verified(self) -> bool:
        """Whether the printer's certificate is checked (a CA bundle is configured)."""
        return self.ca_bundle is not None

    async def target(self) -> BambuTarget:
        """Host and serial, asking Bambuddy once when printers.yml named the printer by its Bambuddy name."""
        if self._target is None:
            if self._resolve is None:
                raise UpstreamValidation(self.name, "CONNECT", "/", "no host and serial configured")
            self._target = await self._resolve()
            self._model = self._model or bambu_type(self._target.model)
        return self._target

    @property
    def pushall_interval(self) -> float:
        if self._pushall_interval is not None:
            return self._pushall_interval
        return PUSHALL_INTERVAL if self._model in PUSHALL_LIMITED_TYPES else 0.0

    def wire(self, path: str) -> str:
        """The absolute card path of a display path ("" is the mirror's folder itself)."""
        return "/" + join(self.folder, path).strip("/")

    def _open(self, target: BambuTarget) -> CardSession:
        """Log in; a 421 (the printer has not yet freed the slot of a session just closed) is tried again later."""
        delays = self.session_retry_delays
        for attempt in range(len(delays) + 1):
            try:
                return CardSession(
                    target.host,
                    self.ftp_port,
                    target.serial,
                    self._code,
                    self._context,
                    timeout=self.timeout,
                    reply_wait=self.reply_wait,
                )
            except ftplib.error_temp as exc:
                if reply_code(exc) != 421 or attempt == len(delays):
                    raise
                time.sleep(delays[attempt])
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def _error(self, exc: BaseException, method: str, wire: str) -> UpstreamError:
        """One FTP failure as the project's error classes, without the access code and with a hint to act on."""
        text = str(exc).strip()[:300]
        code = reply_code(exc) if isinstance(exc, ftplib.Error) else None
        if isinstance(exc, ssl.SSLCertVerificationError):
            return UpstreamAuthError(
                self.name,
                method,
                wire,
                f"the printer's certificate failed verification against ca_bundle: {text}",
            )
        if code == 530:
            return UpstreamAuthError(self.name, method, wire, RELOGIN, status=530)
        if code == 550:
            return UpstreamNotFound(self.name, method, wire, text, status=550)
        if code in (552, 553):
            why = "card full" if code == 552 else "no card, card full or a name the card refuses"
            return UpstreamValidation(self.name, method, wire, f"{text} ({why})", status=code)
        if code == 522:
            return UpstreamError(self.name, method, wire, f"{text} (data channel TLS)", status=522)
        if code is not None and 400 <= code < 500:
            return UpstreamTransportError(self.name, method, wire, text, status=code)
        if code is not None:
            return UpstreamError(self.name, method, wire, text, status=code)
        if isinstance(exc, OSError | EOFError | ftplib.Error):
            kind = "timed out" if isinstance(exc, TimeoutError | socket.timeout) else type(exc).__name__
            return UpstreamTransportError(self.name, method, wire, f"{kind}: {text}" if text else kind)
        return UpstreamError(self.name, method, wire, f"{type(exc).__name__}: {text}")

    async def _ftp(self, method: str, wire: str, work: Callable[[CardSession], T]) -> T:
        """Run ``work`` on this printer's one FTP session, in a worker thread, one call at a time."""
        target = await self.target()
        async with self._lock:
            return await asyncio.to_thread(self._in_thread, target, method, wire, work)

    def _in_thread(self, target: BambuTarget, method: str, wire: str, work: Callable[[CardSession], T]) -> T:
        try:
            if self._session is None:
                self._session = self._open(target)
            return work(self._session)
        except UpstreamError:
            raise
        except (ftplib.Error, OSError, EOFError, ValueError) as exc:
            error = self._error(exc, method, wire)
            if not isinstance(exc, ftplib.error_perm):
                self._drop()  # the control channel's state is unknown after a timeout or a 4xx
            raise error from None

    async def aclose(self) -> None:
        async with self._lock:
            await asyncio.to_thread(self._drop)

    async def __aenter__(self) -> BambuBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ status

    async def status(self) -> PrinterStatus:
        """``print.gcode_state`` from one brief MQTT visit; unknown or missing is not idle."""
        target = await self.target()
        try:
            reading = await asyncio.to_thread(
                read_state,
                target.host,
                self.mqtt_port,
                target.serial,
                self._code,
                self._context,
                wait=self.state_wait,
                pushall_interval=self.pushall_interval,
            )
        except MqttRefused:
            raise UpstreamAuthError(self.name, "MQTT", "connect", RELOGIN) from None
        except MqttNoState as exc:
            return PrinterStatus(state="unknown", idle=False, detail=f"state unknown: {exc}")
        except ssl.SSLCertVerificationError as exc:
            raise self._error(exc, "MQTT", "connect") from None
        except (ssl.SSLEOFError, ConnectionResetError, MqttClosed):
            # accepted, then dropped before the login was answered: how a full broker turns clients away
            return PrinterStatus(state="unknown", idle=False, detail=f"state unknown: {SLOTS_FULL}")
        except (OSError, ValueError) as exc:
            raise UpstreamTransportError(
                self.name, "MQTT", "connect", f"{type(exc).__name__}: {exc}"
            ) from None
        state = reading.state or "unknown"
        idle = state in IDLE_STATES
        detail = ""
        if not idle:
            job = reading.report.get("subtask_name") or reading.report.get("gcode_file") or ""
            detail = f"printing {job}" if job else f"state {state} is not known to be idle"
        return PrinterStatus(state=state, idle=idle, detail=detail)

    # ------------------------------------------------------------------ listing

    async def list_tree(self, root: str = "") -> list[RemoteEntry]:
        root = check_path(root, what="root", allow_root=True)
        return await self._ftp("LIST", self.wire(root), lambda s: self._walk(s, root))

    def _walk(self, session: CardSession, root: str) -> list[RemoteEntry]:
        out: list[RemoteEntry] = []
        pending = [root]
        while pending:
            folder = pending.pop(0)
            try:
                entries, unreadable = session.list_dir(self.wire(folder))
            except FolderMissing:
                if folder == root and root == "" and self.folder:
                    session.list_dir("/")  # the card answers: the mirror's folder is simply not made yet
                    return []
                raise
            for line in unreadable:
                self.skip(folder or "/", f"unreadable LIST line {line[:80]!r}")
            for item in entries:
                path = join(folder, item.name)
                problem = name_problem(item.name)
                if problem:
                    self.skip(path, problem)
                    continue
                out.append(
                    RemoteEntry(
                        path=path,
                        is_dir=item.is_dir,
                        size=None if item.is_dir else item.size,
                        read_only=item.name.endswith(TEMP_SUFFIX),
                        ref=self.wire(path),
                    )
                )
                if item.is_dir:
                    pending.append(path)
        return sorted(out, key=lambda e: e.path)

    async def stat(self, path: str) -> RemoteEntry | None:
        path = check_path(path)

        def work(session: CardSession) -> RemoteEntry | None:
            try:
                entries, _ = session.list_dir(self.wire(parent_of(path)))
            except FolderMissing:
                return None
            for item in entries:
                if item.name == basename(path):
                    size = None if item.is_dir else item.size
                    return RemoteEntry(path=path, is_dir=item.is_dir, size=size, ref=self.wire(path))
            return None

        return await self._ftp("LIST", self.wire(path), work)

    # ------------------------------------------------------------------ upload

    async def upload(
        self,
        path: str,
        source: Path,
        *,
        size: int,
        sha256: str | None = None,
        progress: ProgressCallback | None = None,
    ) -> UploadResult:
        path = check_path(path)
        wire = self.wire(path)
        if size <= 0:
            raise UpstreamValidation(self.name, "STOR", wire, "refusing to upload a 0-byte file")
        problem = fat_problem(path)
        if problem:
            raise UpstreamValidation(self.name, "STOR", wire, problem)
        local_size(source, size)
        loop = asyncio.get_running_loop()
        reported = [0, 0]  # bytes of this attempt, furthest point reported so far

        def step(nbytes: int) -> None:
            reported[0] += nbytes
            if progress is not None and reported[0] > reported[1]:
                loop.call_soon_threadsafe(progress, reported[0] - reported[1])
                reported[1] = reported[0]

        attempt = 1
        while True:
            reported[0] = 0
            try:
                notes = await self._ftp("STOR", wire, lambda s: self._store(s, path, source, size, step))
                break
            except UpstreamTransportError:
                if attempt >= UPLOAD_RETRY.attempts:
                    raise
            await asyncio.sleep(UPLOAD_RETRY.delay(attempt))
            attempt += 1
        if attempt > 1:
            notes.append(f"sent {attempt} times")
        return UploadResult(path=path, size=size, verified=True, notes=notes)

    def _store(
        self, session: CardSession, path: str, source: Path, size: int, step: Callable[[int], None]
    ) -> list[str]:
        """STOR to a temporary name, prove it with SIZE, then rename it over the real name."""
        final = self.wire(path)
        self._make_parents(session, parent_of(path))
        temp = self.wire(join(parent_of(path), f".{secrets.token_hex(4)}{TEMP_SUFFIX}"))
        notes: list[str] = []
        try:
            with open(source, "rb") as handle:
                outcome = session.store(temp, handle, size, step)
            notes.extend(outcome.notes)
        except TimeoutError:
            # no verdict in time: this session's replies are out of step; judge on a fresh one
            self._drop()
            session = self._session = self._open(self._target)  # type: ignore[arg-type]  # set: a session was open
            notes.append(f"no reply within {self.reply_wait:g} s after the upload (checked by SIZE)")
        held = session.size(temp)
        if held != size:
            self._discard(session, temp)
            raise UploadVerificationError(
                self.name,
                "STOR",
                final,
                f"printer holds {held} bytes of the temporary file, {size} were sent",
            )
        try:
            session.rename(temp, final)
        except ftplib.error_perm:
            if session.size(final) is None:
                self._discard(session, temp)
                raise
            session.delete(final)  # this printer does not rename over an existing file
            session.rename(temp, final)
            notes.append("deleted the old copy before renaming the new one into place")
        held = session.size(final)
        if held != size:
            raise UploadVerificationError(
                self.name, "RNTO", final, f"printer holds {held} bytes after the rename, {size} were sent"
            )
        return notes

    def _discard(self, session: CardSession, wire: str) -> None:
        try:
            session.delete(wire)
        except (ftplib.Error, OSError):
            log.warning("%s: could not delete the temporary file %s", self.name, wire)

    def _make_parents(self, session: CardSession, folder: str) -> None:
        """MKD every missing level of the mirror's folder and ``folder``; an existing one answers 550."""
        parts = [p for p in join(self.folder, folder).split("/") if p]
        for index in range(1, len(parts) + 1):
            wire = "/" + "/".join(parts[:index])
            try:
                session.mkdir(wire)
            except ftplib.error_perm as exc:
                if reply_code(exc) != 550:
                    raise

    # ------------------------------------------------------------------ delete / mkdir / download

    async def delete_file(self, entry: RemoteEntry) -> None:
        path = check_path(entry.path)
        await self._ftp("DELE", self.wire(path), lambda s: s.delete(self.wire(path)))

    async def delete_folder(self, entry: RemoteEntry) -> None:
        path = check_path(entry.path)
        wire = self.wire(path)

        def work(session: CardSession) -> None:
            try:
                session.rmdir(wire)
            except ftplib.error_perm as exc:
                if reply_code(exc) != 550:
                    raise
                try:
                    entries, _ = session.list_dir(wire)
                except FolderMissing:
                    raise UpstreamNotFound(self.name, "RMD", wire, "no such folder", status=550) from None
                raise UpstreamConflict(
                    self.name, "RMD", wire, f"folder not deleted: it still holds {len(entries)} entries"
                ) from None

        await self._ftp("RMD", wire, work)

    async def make_folder(self, path: str) -> None:
        path = check_path(path)
        await self._ftp("MKD", self.wire(path), lambda s: self._make_parents(s, path))

    async def download(
        self, entry: RemoteEntry, dest: Path, *, progress: ProgressCallback | None = None
    ) -> int:
        if entry.is_dir:
            raise UpstreamValidation(self.name, "RETR", entry.path, "cannot download a folder")
        wire = self.wire(check_path(entry.path))
        loop = asyncio.get_running_loop()

        def step(nbytes: int) -> None:
            if progress is not None:
                loop.call_soon_threadsafe(progress, nbytes)

        def work(session: CardSession) -> int:
            with open(dest, "wb") as out:
                return session.retrieve(wire, out, entry.size, step)

        return await self._ftp("RETR", wire, work)

    # ------------------------------------------------------------------ validate

    async def probe(self) -> list[tuple[str, str, str]]:
        """``(check, level, message)`` for validate: TLS, FTPS login, the mirror's folder, MQTT login and state."""
        out: list[tuple[str, str, str]] = []
        try:
            target = await self.target()
        except UpstreamError as exc:
            return [("printer", "error", str(exc))]
        async with self._lock:
            await asyncio.to_thread(self._drop)  # one session per printer: this one replaces any open one
            try:
                self._session = await asyncio.to_thread(self._open, target)
            except ssl.SSLError as exc:
                return [("tls", "error", f"TLS handshake on port {self.ftp_port} failed: {exc}")]
            except ftplib.error_perm as exc:
                message = RELOGIN if reply_code(exc) == 530 else str(self._error(exc, "LOGIN", "/"))
                return [("tls", "ok", "TLS 1.2 handshake"), ("ftps", "error", message)]
            except (OSError, EOFError, ftplib.Error) as exc:
                return [("tls", "error", str(self._error(exc, "CONNECT", "/")))]
            session = self._session
        if self.verified:
            out.append(("tls", "ok", f"TLS 1.2; certificate verified for serial {target.serial}"))
        else:
            out.append(
                (
                    "tls",
                    "warning",
                    "encrypted but NOT verified: set ca_bundle to Bambu's CA to check the printer",
                )
            )
        banner = session.welcome[:60]
        out.append(("ftps", "ok", f"logged in as bblp ({banner})"))
        try:
            folder = self.wire("")
            exists = await self._ftp("LIST", folder, lambda s: _listable(s, folder))
            if not exists:
                await self._ftp("LIST", "/", lambda s: s.list_dir("/"))  # no card fails here
            out.append(
                ("folder", "ok", f"{folder} is listed")
                if exists
                else ("folder", "warning", f"{folder} does not exist yet: the first upload creates it")
            )
        except UpstreamError as exc:
            out.append(("folder", "error", str(exc)))
        try:
            status = await self.status()
            level = "ok" if status.state != "unknown" else "warning"
            out.append(
                (
                    "mqtt",
                    level,
                    f"logged in; print state {status.state}"
                    + (f" ({status.detail})" if status.detail else ""),
                )
            )
        except UpstreamError as exc:
            out.append(("mqtt", "error", str(exc)))
        return out


def _listable(session: CardSession, wire: str) -> bool:
    try:
        session.list_dir(wire)
    except FolderMissing:
        return False
    return True
