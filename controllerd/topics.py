"""MQTT topic names and payloads of the external contract (see docs/mqtt.md)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from json.encoder import encode_basestring_ascii as _quote
from typing import Literal

from pydantic import BaseModel, ConfigDict

from controllerd import __version__

Quality = Literal["good", "uncertain", "bad"]


class Topics:
    """Topic names under BASE = {prefix}/{site}/{controller}."""

    def __init__(self, *, prefix: str, site: str, controller: str) -> None:
        self.base = f"{prefix}/{site}/{controller}"
        self._site_base = f"{prefix}/{site}"
        self._controller = controller

    def job(self, job: str) -> str:
        """Retained progress of one pick job."""
        return f"{self.base}/jobs/{job}"

    @property
    def movements(self) -> str:
        """Specimen movement events (QoS 1, from the durable outbox)."""
        return f"{self.base}/events/movements"

    @property
    def inventory_ack(self) -> str:
        """The inventory's retained end-to-end ack of this controller's movements."""
        return f"{self._site_base}/inventory/acks/{self._controller}"

    @property
    def controller_telemetry(self) -> str:
        """The controller's own telemetry (outbox depth and oldest unacknowledged age)."""
        return f"{self.base}/telemetry"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    def device_state(self, device: str) -> str:
        return f"{self.base}/devices/{device}/state"

    def telemetry(self, device: str) -> str:
        return f"{self.base}/devices/{device}/telemetry"

    def alarm(self, alarm: str) -> str:
        return f"{self.base}/alarms/{alarm}"

    @property
    def alarms(self) -> str:
        """Filter of every alarm topic."""
        return f"{self.base}/alarms/+"

    @property
    def pages(self) -> str:
        return f"{self.base}/pages"

    @property
    def heartbeat(self) -> str:
        return f"{self.base}/heartbeat"

    def command(self, verb: str) -> str:
        return f"{self.base}/cmd/{verb}"

    @property
    def commands(self) -> str:
        """Filter of every command topic."""
        return f"{self.base}/cmd/+"


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(exclude_none=False), separators=(",", ":")).encode()


class StatusPayload(_Payload):
    """Retained `BASE/status`; `offline` is also the last will."""

    state: Literal["online", "offline"]
    ts: str
    version: str = __version__


class DeviceStatePayload(_Payload):
    """Retained `BASE/devices/{id}/state`, published on every change."""

    connected: bool
    since: str
    error: str | None
    kind: str


class TelemetryPayload(_Payload):
    """`BASE/devices/{id}/telemetry`, every poll."""

    ts: str
    values: dict[str, float]
    quality: Quality
    #: value name -> why it has no valid reading (sensor fault); absent values are not zero.
    faults: dict[str, str] = {}
    #: values unchanged for longer than their stale_after_s (a frozen sensor)
    stale: list[str] = []
    error: str | None = None
    #: value name -> the device's own words on it (a tube store's fault text for `state_code`)
    texts: dict[str, str] = {}

    def to_json(self) -> bytes:
        return telemetry_json(
            ts=self.ts,
            values=self.values,
            quality=self.quality,
            faults=self.faults,
            stale=self.stale,
            error=self.error,
            texts=self.texts,
        )


_COMPACT = json.JSONEncoder(separators=(",", ":"))
#: Entries kept in each of the caches below before they start over.
_CACHE_MAX = 4096
#: JSON text around a device's values, by their names (a device sends the same names every
#: poll): '{"ts":%s,"values":{"name":%s,...},"quality":"%s"'
_TEMPLATES: dict[tuple[str, ...], str] = {}
#: JSON numbers by value (a device sends the same few values poll after poll; a float's repr
#: is its costliest part). Zeros stay out: 0.0 and -0.0 are one key with two spellings.
_NUMBERS: dict[float, str] = {}


def telemetry_json(
    *,
    ts: str,
    values: Mapping[str, float],
    quality: Quality,
    faults: Mapping[str, str] | None = None,
    stale: Sequence[str] | None = None,
    error: str | None = None,
    texts: Mapping[str, str] | None = None,
) -> bytes:
    """The `TelemetryPayload` JSON without building the model: the poller sends one every poll.

    Byte for byte what `TelemetryPayload(...).to_json()` gives for the same fields (compact
    `json.dumps`, ASCII-escaped strings, values as floats), several times faster.
    """
    number = _NUMBERS.get
    numbers = [number(value) or _json_number(value) for value in values.values()]
    names = tuple(values)
    template = _TEMPLATES.get(names) or _template(names)
    body = template % (_quote(ts), *numbers, quality)
    if faults:
        body += ',"faults":' + _COMPACT.encode(dict(faults))
    if stale:
        body += ',"stale":' + _COMPACT.encode(list(stale))
    if error is not None:
        body += ',"error":' + _quote(error)
    if texts:
        body += ',"texts":' + _COMPACT.encode(dict(texts))
    return (body + "}").encode()


def _json_number(value: float) -> str:
    if value == 0:  # a zero is never cached (see `_NUMBERS`): its sign says which it is
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    number = float(value)  # as pydantic would: 1 -> 1.0
    # repr is what json writes for a finite float; NaN and infinities take json's spelling.
    text = repr(number) if number - number == 0 else _COMPACT.encode(number)
    if number:
        if len(_NUMBERS) >= _CACHE_MAX:
            _NUMBERS.clear()
        _NUMBERS[value] = text
    return text


def _template(names: tuple[str, ...]) -> str:
    members = ",".join(_quote(name).replace("%", "%%") + ":%s" for name in names)
    if len(_TEMPLATES) >= _CACHE_MAX:
        _TEMPLATES.clear()
    template = _TEMPLATES[names] = '{"ts":%s,"values":{' + members + '},"quality":"%s"'
    return template


AlarmStateName = Literal[
    "normal", "unacked", "acked", "rtn_unacked", "shelved", "suppressed", "out_of_service"
]


class AlarmPayload(_Payload):
    """Retained `BASE/alarms/{alarm}`, published on every change of the alarm."""

    alarm: str
    device: str
    state: AlarmStateName
    severity: str
    active: bool
    acked: bool
    value: float | None
    limit: float | None
    message: str
    since: str
    occurrence: int
    shelved_until: str | None = None
    shelve_reason: str | None = None


class HeartbeatPayload(_Payload):
    """`BASE/heartbeat`, every `heartbeat_s`: the sentinel's sign of life."""

    ts: str
    seq: int
    devices_connected: int
    devices: int
    alarms_active: int
