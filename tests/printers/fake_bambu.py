"""A fake Bambu Lab printer from real servers, as bambu-printers.md §5 describes, on 127.0.0.1 free ports.

- **Card**: pyftpdlib's TLS FTP server made to behave like the printers' vsftpd 3.0.3: implicit TLS from byte 0,
  banner ``220 (vsFTPd 3.0.3)``, TLS 1.2 only (``tls13=True`` also offers 1.3, as a P2S does), data connections that
  must resume the control connection's TLS session (``522 SSL connection failed: session reuse required``
  otherwise), no MLSD (500), no AVBL, ``426 Failure reading network stream.`` when the client closes the data
  channel without a TLS close_notify (vsftpd's ``strict_ssl_read_eof``; the file is whole), an optional delay
  before the ``226`` (H2D), at most ``max_sessions`` sessions (421 over TLS beyond), a "no card" switch (553 on
  STOR, 550 on CWD/LIST), an optional refusal to rename onto an existing name, and a bandwidth cap.
- **MQTT**: Debian's Mosquitto with a TLS 1.2 listener (``bblp`` + access code, ``max_connections``), and a small
  "printer" client (paho-mqtt) that answers ``pushall`` with a full report and publishes pushes on
  ``device/<serial>/report``: the full object in X1 mode, only changed fields in P1 mode; ``stall()`` makes it go
  quiet while its connection stays up.
- **Certificates**: a throwaway "BBL CA" without keyUsage (like Bambu's), and a leaf whose only name is
  ``CN=<serial>`` (no IP SAN), made with ``cryptography``.
"""

from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from paho.mqtt.enums import CallbackAPIVersion
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import FTPServer

from farmsync_sim.fakehttp import Throttle
from tests.printers.procs import LOOPBACK, free_port

_FTP_LOG = logging.getLogger("pyftpdlib")
_FTP_LOG.setLevel(logging.WARNING)
_FTP_LOG.addHandler(logging.NullHandler())  # else pyftpdlib installs its own INFO handler
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
CARD_FOLDERS = ("cache", "model", "timelapse", "image")


# ------------------------------------------------------------------------------------------------ certificates


@dataclass(frozen=True)
class Pki:
    """A test CA, and one leaf per serial (files beside it)."""

    folder: Path
    ca_pem: Path
    ca_key: Any

    def leaf(self, serial: str) -> tuple[Path, Path]:
        """``(cert chain, key)`` for ``CN=<serial>``, signed by the CA; made once per serial."""
        cert_path, key_path = self.folder / f"{serial}.pem", self.folder / f"{serial}.key"
        if cert_path.exists():
            return cert_path, key_path
        ca_cert = x509.load_pem_x509_certificate(self.ca_pem.read_bytes())
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, serial)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(self.ca_key, hashes.SHA256())
        )
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + self.ca_pem.read_bytes())
        return cert_path, key_path


def make_pki(folder: Path, *, name: str = "BBL CA") -> Pki:
    """A self-signed CA like Bambu's: ``O=BBL Technologies Co. Ltd``, basicConstraints CA, no keyUsage."""
    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "BBL Technologies Co. Ltd"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca_pem = folder / "ca.pem"
    ca_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(folder=folder, ca_pem=ca_pem, ca_key=key)


# ------------------------------------------------------------------------------------------------ FTPS


class _DataChannel(TLS_DTPHandler):
    """Data connection: refuses a TLS session that was not resumed (522), answers 426 after a bare close, and
    reads no faster than the printer's ``bandwidth`` (one budget per printer, across its data connections:
    pyftpdlib's own throttle starts afresh per connection and lets small files through at full speed)."""

    _refused = False
    _paced = 0  # bytes of this transfer already paced

    def recv(self, buffer_size: int) -> bytes:
        chunk = super().recv(buffer_size)
        delay = 0.0
        if self.receive and chunk:
            delay = self.cmd_channel.fake.pace(len(chunk), continuing=self._paced > 0)
            self._paced += len(chunk)
        if delay > 0.002:
            self.del_channel()
            self.ioloop.call_later(delay, self._resume, _errback=self.handle_error)
        return chunk

    def _resume(self) -> None:
        if not self._closed:
            self.add_channel(events=self.ioloop.READ)

    def handle_ssl_established(self) -> None:
        fake: FakeBambu = self.cmd_channel.fake
        reused = bool(SSL._lib.SSL_session_reused(self.socket._ssl))
        fake.data_sessions.append("reused" if reused else "new")
        if fake.require_reuse and not reused:
            self._refused = True
            self.cmd_channel.respond("522 SSL connection failed: session reuse required")
            self._resp = ()
            self.close()

    def handle_close(self) -> None:
        if not self._refused:
            super().handle_close()

    def close(self) -> None:
        fake: FakeBambu = self.cmd_channel.fake
        if (
            self.receive
            and self._resp
            and self._resp[0].startswith("226")
            and self._ssl_established
            and not (self.socket.get_shutdown() & SSL.RECEIVED_SHUTDOWN)
        ):
            self._resp = ("426 Failure reading network stream.", self._resp[1])
            fake.bare_closes += 1
        if self.receive and self._resp and self._resp[0][:3] in ("226", "426") and fake.slow_226:
            answer, self._resp = self._resp, ()
            super().close()
            self.cmd_channel.ioloop.call_later(fake.slow_226, self.cmd_channel.respond, answer[0])
            return
        super().close()


class _CardFS(AbstractedFS):
    """pyftpdlib's ``chdir`` moves the whole process's working directory, and the FTP server runs in a thread of
    the test process: a printer's card folder deleted after a test left pytest in a folder that no longer
    existed. This one checks the folder and keeps the FTP session's own cwd only."""

    def chdir(self, path: str) -> None:
        if not os.path.isdir(path):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if not os.access(path, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        self.cwd = self.fs2ftp(path)


class _Control(TLS_FTPHandler):
    """Control connection: TLS at once, vsftpd's banner, the printer's quirks. ``fake`` is set per printer."""

    fake: FakeBambu
    abstracted_fs = _CardFS
    banner = "(vsFTPd 3.0.3)"
    dtp_handler = _DataChannel
    tls_control_required = True
    auth_failed_timeout = 1  # vsftpd's delay_failed_login
    proto_cmds: ClassVar[dict[str, Any]] = {
        k: v for k, v in TLS_FTPHandler.proto_cmds.items() if k not in ("MLSD", "MLST")
    }

    def handle(self) -> None:
        self.secure_connection(self.ssl_context)
        super().handle()

    def handle_max_cons_per_ip(self) -> None:
        self.secure_connection(self.ssl_context)
        self.respond("421 There are too many connections from your internet address.")
        self.close_when_done()

    def handle_max_cons(self) -> None:
        self.handle_max_cons_per_ip()

    def handle_ssl_established(self) -> None:
        self.fake.tls_versions.append(self.socket.get_protocol_version_name())

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        self.fake.commands.append("PASS ***" if cmd.upper() == "PASS" else line)
        super().pre_process_command(line, cmd, arg)

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        fake = self.fake
        if cmd == "LIST" and fake.list_fails:
            self.respond("550 Failed to open directory.")  # bambuddy#266: a P1S failed LIST / and /cache
            return
        if not fake.card and cmd in ("CWD", "LIST", "NLST", "STOR", "RETR", "SIZE", "MKD", "DELE", "RNFR"):
            self.respond("553 Could not create file." if cmd == "STOR" else "550 Failed to change directory.")
            return
        # pyftpdlib hands over the file system path
        if cmd == "RNTO" and not fake.rename_over_existing and args and os.path.exists(args[0]):
            self.respond("550 Rename failed.")
            return
        super().process_command(cmd, *args, **kwargs)


# ------------------------------------------------------------------------------------------------ MQTT


def _report(state: str, job: str) -> dict[str, Any]:
    """A full ``push_status`` as an X1 sends it (trimmed, but with many keys, as clients expect)."""
    report: dict[str, Any] = {
        "command": "push_status",
        "sequence_id": "2021",
        "msg": 0,
        "gcode_state": state,
        "gcode_file": job,
        "subtask_name": job.rsplit("/", 1)[-1].removesuffix(".gcode.3mf") if job else "",
        "mc_percent": 0 if state in ("IDLE", "FINISH") else 42,
        "mc_remaining_time": 0,
        "print_error": 0,
        "sdcard": True,
        "home_flag": 256,
        "hms": [],
        "upgrade_state": {"status": "IDLE"},
    }
    report.update({f"field_{index}": index for index in range(30)})
    return report


class _PrinterBrain:
    """The printer's side of MQTT: answers pushall, pushes reports (full or delta), can stall."""

    def __init__(self, fake: FakeBambu) -> None:
        self.fake = fake
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"printer-{fake.serial}"
        )
        self.client.username_pw_set("printer", fake.brain_password)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.client.tls_set_context(context)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.ready = threading.Event()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._pushes, daemon=True)

    @property
    def report_topic(self) -> str:
        return f"device/{self.fake.serial}/report"

    def start(self) -> None:
        self.client.connect(LOOPBACK, self.fake.mqtt_port, keepalive=30)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("the fake printer's MQTT client did not get in")
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if not reason.is_failure:
            client.subscribe(f"device/{self.fake.serial}/request", qos=0)
            self.ready.set()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        try:
            request = json.loads(message.payload)
        except ValueError:
            return
        if (request.get("pushing") or {}).get("command") == "pushall":
            self.fake.pushalls += 1
            if not self.fake.stalled:
                self.publish(_report(self.fake.state, self.fake.job))

    def publish(self, report: dict[str, Any]) -> None:
        self.client.publish(self.report_topic, json.dumps({"print": report}), qos=0)

    def _pushes(self) -> None:
        """Every ``push_interval`` s: the full report (X1) or a delta without the state (P1: only what changed)."""
        while not self.stop_event.wait(self.fake.push_interval):
            if self.fake.stalled:
                continue
            if self.fake.pushes == "full":
                self.publish(_report(self.fake.state, self.fake.job))
            else:
                self.publish({"command": "push_status", "msg": 1, "wifi_signal": "-48dBm"})


# ------------------------------------------------------------------------------------------------ the printer


class FakeBambu:
    """One fake printer: ``start()``, use ``ftp_port``/``mqtt_port``/``serial``/``access_code``, ``stop()``."""

    def __init__(
        self,
        workdir: Path,
        pki: Pki,
        *,
        serial: str = "01S00C123456789",
        access_code: str = "7Q2k9xW4",
        model: str = "X1C",
        pushes: str | None = None,
        push_interval: float = 1.0,
        mqtt_clients: int = 4,
        max_sessions: int = 1,
        bandwidth: int | None = None,
        slow_226: float = 0.0,
        require_reuse: bool = True,
        rename_over_existing: bool = True,
        tls13: bool = False,
    ) -> None:
        self.workdir = workdir
        self.card_root = workdir / "card"
        self.pki = pki
        self.serial = serial
        self.access_code = access_code
        self.model = model
        self.pushes = pushes or ("delta" if model.startswith("P1") else "full")
        self.push_interval = push_interval
        self.mqtt_clients = mqtt_clients
        self.max_sessions = max_sessions
        self.bandwidth = bandwidth
        self.slow_226 = slow_226
        self.require_reuse = require_reuse
        self.rename_over_existing = rename_over_existing
        self.tls13 = tls13
        self.card = True
        self.list_fails = False
        self.state = "IDLE"
        self.job = ""
        self.stalled = False
        self.pushalls = 0
        self.bare_closes = 0
        self.commands: list[str] = []
        self.tls_versions: list[str] = []
        self.data_sessions: list[str] = []
        self.brain_password = "brain-" + access_code
        self.ftp_port = 0
        self.mqtt_port = 0
        self._link = Throttle(
            bandwidth, clock=lambda: time.monotonic()
        )  # looked up per call: tests fake the clock
        self._ftp: FTPServer | None = None
        self._ftp_thread: threading.Thread | None = None
        self._ftp_stop = threading.Event()
        self._mosquitto: subprocess.Popen[bytes] | None = None
        self._mosquitto_log: Any = None
        self._brain: _PrinterBrain | None = None

    # --- lifecycle

    def start(self) -> FakeBambu:
        self.card_root.mkdir(parents=True, exist_ok=True)
        for folder in CARD_FOLDERS:
            (self.card_root / folder).mkdir(exist_ok=True)
        try:
            self._start_ftp()
            self._start_mqtt()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._brain is not None:
            self._brain.stop()
            self._brain = None
        if self._mosquitto is not None:
            self._mosquitto.terminate()
            try:
                self._mosquitto.wait(5)
            except subprocess.TimeoutExpired:
                self._mosquitto.kill()
                self._mosquitto.wait(5)
            self._mosquitto = None
        if self._mosquitto_log is not None:
            self._mosquitto_log.close()
            self._mosquitto_log = None
        self.cut_card_power()

    def cut_card_power(self) -> None:
        """Stop the FTP server at once, dropping every connection mid-transfer (MQTT stays up)."""
        if self._ftp_thread is not None:
            self._ftp_stop.set()
            self._ftp_thread.join(10)
            self._ftp_thread = None

    def __enter__(self) -> FakeBambu:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ssl_context(self) -> SSL.Context:
        cert, key = self.pki.leaf(self.serial)
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_max_proto_version(0 if self.tls13 else SSL.TLS1_2_VERSION)
        context.use_certificate_chain_file(str(cert))
        context.use_privatekey_file(str(key))
        context.set_session_id(b"fake-bambu")
        context.set_options(SSL.OP_NO_COMPRESSION)
        return context

    def _start_ftp(self) -> None:
        authorizer = DummyAuthorizer()
        authorizer.add_user("bblp", self.access_code, str(self.card_root), perm="elradfmwMT")
        handler = type(
            "Control",
            (_Control,),
            {"fake": self, "authorizer": authorizer, "ssl_context": self._ssl_context()},
        )
        # its own loop: pyftpdlib's default IOLoop is one per process, and two servers' threads must not share it
        self._ftp = FTPServer((LOOPBACK, 0), handler, ioloop=IOLoop())
        self._ftp.max_cons_per_ip = self.max_sessions
        self.ftp_port = self._ftp.address[1]
        server = self._ftp

        def serve() -> None:
            try:
                while not self._ftp_stop.is_set():
                    server.ioloop.loop(0.05, blocking=False)
            finally:
                server.close_all()

        self._ftp_thread = threading.Thread(target=serve, name=f"fake-bambu-ftp-{self.serial}", daemon=True)
        self._ftp_thread.start()

    def _start_mqtt(self) -> None:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed: apt-get install mosquitto (the Makefile does)")
        folder = self.workdir / "mqtt"
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = self.pki.leaf(self.serial)
        passwords = folder / "passwd"
        for flags, user, password in (
            (["-c"], "bblp", self.access_code),
            ([], "printer", self.brain_password),
        ):
            subprocess.run(
                [MOSQUITTO_PASSWD, *flags, "-b", str(passwords), user, password], check=True, timeout=30
            )
        self.mqtt_port = free_port()
        config = folder / "mosquitto.conf"
        config.write_text(
            "\n".join(
                [
                    "user root",
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "allow_anonymous false",
                    f"password_file {passwords}",
                    f"listener {self.mqtt_port} {LOOPBACK}",
                    f"certfile {cert}",
                    f"keyfile {key}",
                    "tls_version tlsv1.2",
                    f"max_connections {self.mqtt_clients + 1}",  # the printer's own client takes one
                    "",
                ]
            )
        )
        self._mosquitto_log = open(folder / "mosquitto.log", "wb")  # noqa: SIM115 - closed in stop()
        self._mosquitto = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=self._mosquitto_log,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((LOOPBACK, self.mqtt_port), timeout=1).close()
                break
            except OSError:
                if self._mosquitto.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "mosquitto.log").read_text(errors="replace")
                    raise RuntimeError(f"mosquitto did not start: {log[-500:]}") from None
                time.sleep(0.02)
        self._brain = _PrinterBrain(self)
        self._brain.start()

    PACE_CREDIT = Throttle.CREDIT
    """Seconds a read may come late inside one transfer and still be caught up: the simulator's Throttle paces
    this printer too, so the fake's own late reads (its ioloop serving other printers) do not slow the printer
    below its rate; the rate is never exceeded."""

    def pace(self, nbytes: int, *, continuing: bool = False) -> float:
        """Seconds to wait before reading more, so that what was read arrives at ``bandwidth`` bytes/s."""
        self._link.rate = self.bandwidth
        return self._link.delay(nbytes, continuing=continuing)

    # --- the printer's side

    def set_state(self, state: str, job: str = "") -> None:
        """Change ``gcode_state`` and push it (the full report in X1 mode, only the changed fields in P1 mode)."""
        self.state, self.job = state, job
        if self._brain is not None and not self.stalled:
            if self.pushes == "full":
                self._brain.publish(_report(state, job))
            else:
                self._brain.publish({"command": "push_status", "gcode_state": state, "gcode_file": job})

    def stall(self, stalled: bool = True) -> None:
        """Stop (or resume) publishing while the broker connection stays up (P1 brokers do this)."""
        self.stalled = stalled

    def add_file(self, path: str, data: bytes) -> None:
        target = self.card_root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)

    def files(self, under: str = "") -> dict[str, bytes]:
        """Every file on the card (or under one folder of it), by card path."""
        base = self.card_root / under if under else self.card_root
        return {
            p.relative_to(self.card_root).as_posix(): p.read_bytes()
            for p in sorted(base.rglob("*"))
            if p.is_file()
        }

    def printers_yml(self, name: str, *, ca_bundle: Path | None = None, **extra: Any) -> str:
        """This printer's printers.yml entry."""
        lines = [
            f"{name}:",
            f"  printer_type: {self.model}",
            f"  host: {LOOPBACK}",
            f"  serial: {self.serial}",
            f"  access_code: {self.access_code}",
            f"  ftp_port: {self.ftp_port}",
            f"  mqtt_port: {self.mqtt_port}",
        ]
        if ca_bundle is not None:
            lines.append(f"  ca_bundle: {ca_bundle}")
        lines += [f"  {key}: {value}" for key, value in extra.items()]
        return "\n".join(lines) + "\n"
