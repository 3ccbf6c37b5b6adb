"""A Bambu printer's state over MQTT (port 8883, TLS, user ``bblp``): connect, ask, read, disconnect at once.

Printers accept very few MQTT clients (one to four by model and firmware) and Bambu Studio, the phone app and Home
Assistant need theirs, so farmsync never stays connected: it subscribes to ``device/<serial>/report``, asks for a
full report (``pushall``) and leaves as soon as a report names ``print.gcode_state``. It never subscribes to the
request topic (P1S and A1 brokers drop such clients). A P1P lags when asked for full reports too often, so there a
``pushall`` goes out at most once per :data:`PUSHALL_INTERVAL` (across processes); in between, only a report the
printer sends by itself can give the state, and without one the state is unknown (busy). Reference:
bambu-printers.md §3.

paho-mqtt connects to the address it is given and checks the certificate against that same name; the printer's
certificate names its serial, not its IP, so :class:`_SerialNamedClient` dials the IP and lets TLS see the serial.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from farmsync.gcode.backends.bambu_models import USER

PUSHALL = {"pushing": {"sequence_id": "0", "command": "pushall", "version": 1, "push_target": 1}}

PUSHALL_CLOCKS = Path(tempfile.gettempdir()) / "farmsync-bambu-pushall"
"""One empty file per serial whose mtime is the last ``pushall``: shared by every farmsync process on the machine
(each CLI run is a process of its own), forgotten on reboot, when the printer has most likely restarted too."""
_pushall_lock = threading.Lock()


class MqttRefused(Exception):
    """The broker refused the login (CONNACK 4 or 5): the access code is wrong or was renewed on the printer."""


class MqttClosed(Exception):
    """The broker dropped the connection before answering the login."""


SLOTS_FULL = (
    "the printer's MQTT broker dropped the connection before the login was answered; its few client slots may be "
    "taken (Bambu Studio, the phone app, Home Assistant)"
)


class MqttNoState(Exception):
    """Connected, but no report named ``gcode_state`` in time (wrong serial, or a stalled broker)."""


@dataclass
class StateReading:
    """What one brief visit learnt. ``state`` is None when no report named it."""

    state: str | None
    report: dict[str, Any] = field(default_factory=dict)
    pushall_sent: bool = False
    messages: int = 0
    note: str = ""


class _SerialNamedClient(mqtt.Client):
    """paho's client, dialling ``address`` while TLS uses the host name given to ``connect`` (the serial)."""

    def __init__(self, address: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._address = address

    def _create_socket_connection(self) -> socket.socket:
        return socket.create_connection((self._address, self._port), timeout=self._connect_timeout)


def pushall_allowed(serial: str, interval: float, now: float | None = None) -> bool:
    """Whether a ``pushall`` may go to this printer now; records it when so. ``interval`` 0: always."""
    if interval <= 0:
        return True
    now = time.time() if now is None else now
    clock = PUSHALL_CLOCKS / re.sub(r"[^A-Za-z0-9]", "_", serial)
    with _pushall_lock:
        try:
            if now - clock.stat().st_mtime < interval:
                return False
        except FileNotFoundError:
            PUSHALL_CLOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
            clock.touch()
        os.utime(clock, (now, now))
        return True


def read_state(
    host: str,
    port: int,
    serial: str,
    access_code: str,
    context: ssl.SSLContext,
    *,
    wait: float = 10.0,
    pushall_interval: float = 0.0,
) -> StateReading:
    """Connect, subscribe to the report topic, send ``pushall`` (rate permitting), read ``print.gcode_state``.

    Raises :class:`MqttRefused` on a refused login, OSError/ssl.SSLError when the broker cannot be reached, and
    :class:`MqttNoState` when nothing names the state within ``wait`` seconds.
    """
    client = _SerialNamedClient(
        host,
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"farmsync-{serial}-{os.getpid()}-{secrets.token_hex(3)}",
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    client.username_pw_set(USER, access_code)
    client.tls_set_context(context)
    client.connect_timeout = min(wait, 15.0)
    report_topic = f"device/{serial}/report"
    merged: dict[str, Any] = {}
    seen: dict[str, Any] = {"connack": None, "subscribed": False, "messages": 0, "state": None}

    def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        seen["connack"] = reason
        if not reason.is_failure:
            client.subscribe(report_topic, qos=0)

    def on_subscribe(*_: Any) -> None:
        seen["subscribed"] = True

    def on_message(_c: Any, _u: Any, message: Any) -> None:
        try:
            data = json.loads(message.payload)
        except ValueError:
            return
        printed = data.get("print") if isinstance(data, dict) else None
        if not isinstance(printed, dict):
            return
        seen["messages"] += 1
        merged.update(printed)
        state = printed.get("gcode_state")
        if isinstance(state, str) and state:
            seen["state"] = state.upper()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    deadline = time.monotonic() + wait
    reading = StateReading(state=None)
    client.connect(serial, port, keepalive=30)
    try:
        while time.monotonic() < deadline:
            code = client.loop(timeout=0.1)
            connack = seen["connack"]
            if connack is not None and connack.is_failure:
                raise MqttRefused(str(connack))
            if code not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_AGAIN):
                if connack is None:
                    raise MqttClosed(SLOTS_FULL)
                raise ConnectionError(f"the broker closed the connection ({mqtt.error_string(code)})")
            if seen["subscribed"] and not reading.pushall_sent and not reading.note:
                if pushall_allowed(serial, pushall_interval):
                    client.publish(f"device/{serial}/request", json.dumps(PUSHALL), qos=0)
                    reading.pushall_sent = True
                else:
                    reading.note = (
                        f"no full report asked: this model allows one every {pushall_interval:.0f} s"
                    )
            if seen["state"] is not None:
                break
    finally:
        client.disconnect()
        client.loop(timeout=0.05)
        sock = client.socket()
        if sock is not None:
            sock.close()
    reading.state = seen["state"]
    reading.report = merged
    reading.messages = seen["messages"]
    if reading.state is None:
        if seen["connack"] is None:
            raise MqttNoState(f"no answer to the MQTT login within {wait:g} s")
        why = reading.note or "check the serial, and that LAN mode is on"
        raise MqttNoState(f"no report named the print state within {wait:g} s ({why})")
    return reading
