"""One device's poll loop: read on a fixed schedule, publish telemetry and state changes.

The poller turns driver results into the MQTT contract: telemetry every poll (`bad` when the read
failed or a sensor has no valid reading, `uncertain` when a value is stale), and the retained
device state whenever `connected` or the error changes. It logs transitions, not repeats.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import structlog

from controllerd._time import utc_now
from controllerd.config import DeviceConfig
from controllerd.mqtt import TelemetryPublisher
from controllerd.topics import DeviceStatePayload, Topics, telemetry_json
from drivers import Driver, DriverError, Reading

_log = structlog.get_logger("controllerd.poller")

#: `stale` of a device without stale-checked values (never modified)
_NONE_STALE: list[str] = []


#: "123Z" for 123 ms: the end of a timestamp, without formatting a number every poll
_MILLIS = [f"{ms:03d}Z" for ms in range(1000)]


class _Timestamps:
    """`utc_now()` for the poll path: strftime once a second, the milliseconds every poll."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        """Now, e.g. '2026-11-22T10:15:30.123Z' (what `controllerd._time.utc_now` returns)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second = second
        return self._prefix + _MILLIS[int((now - second) * 1000)]


_timestamps = _Timestamps()


@dataclass(slots=True)
class _Track:
    """Last value of one stale-checked value and when it last changed."""

    value: float
    changed_at: float


class AlarmInput(Protocol):
    """What the poller tells the alarm engine after every poll."""

    def on_reading(self, device: str, reading: Reading, stale: Iterable[str] = ()) -> None: ...

    def on_failure(self, device: str, error: str) -> None: ...


class DevicePoller:
    """Polls one device through its driver and publishes what it learns."""

    def __init__(
        self,
        *,
        device: DeviceConfig,
        driver: Driver,
        mqtt: TelemetryPublisher,
        topics: Topics,
        alarms: AlarmInput | None = None,
    ) -> None:
        self.device = device
        self._alarms = alarms
        self._driver = driver
        self._mqtt = mqtt
        self._topics = topics
        self._telemetry_topic = topics.telemetry(device.id)
        self._publish_nowait = mqtt.publish_nowait  # telemetry: no await, no coroutine
        self._device_id = device.id
        self._log = _log.bind(device=device.id, kind=device.kind)
        self._stale_after = device.stale_limits()
        self._tracks: dict[str, _Track] = {}
        self.connected: bool | None = None
        self.error: str | None = None
        self.polls = 0
        self.failures = 0
        #: monotonic time of the last completed poll cycle (success or failure)
        self.last_cycle = time.monotonic()
        self.first_cycle_done = asyncio.Event()

    async def run(self) -> None:
        """Poll forever on a fixed-rate schedule; a slow cycle skips ticks, never bunches them."""
        interval = self.device.poll_interval_s
        # Connect first (every device at once, each within its driver's own timeout), so the
        # first poll does not report a session that is still being opened as a failure. A
        # failed connect is reported by that first poll.
        try:
            await self._driver.connect()
        except DriverError:
            pass
        except Exception:
            self._log.exception("driver raised an untranslated error on connect")
        next_tick = time.monotonic()
        while True:
            await self.poll_once()
            next_tick += interval
            now = time.monotonic()
            if next_tick < now:
                next_tick = now + interval - (now - next_tick) % interval
            await asyncio.sleep(next_tick - now)

    async def poll_once(self) -> None:
        """One read, its telemetry, and a state update when something changed."""
        try:
            reading = await self._driver.read()
        except DriverError as exc:
            await self._failed(exc)
            now = time.monotonic()
        except Exception as exc:
            # A driver bug must cost this device a poll, never the daemon: the other devices
            # keep being watched, and the failure is as visible as any other.
            self._log.exception("driver raised an untranslated error")
            await self._failed(
                DriverError(
                    f"internal driver error: {exc!r}", device=self.device.id, operation="read"
                )
            )
            now = time.monotonic()
        else:
            # The success path inline (every poll of a healthy device: no frame of its own).
            now = time.monotonic()
            stale = self._stale_values(reading, now) if self._stale_after else _NONE_STALE
            faults = reading.faults
            payload = telemetry_json(
                ts=_timestamps.now(),
                values=reading.values,
                quality="bad" if faults else "uncertain" if stale else "good",
                faults=faults,
                stale=stale,
                texts=reading.texts,
            )
            self._publish_nowait(self._telemetry_topic, payload)
            if self._alarms is not None:
                self._alarms.on_reading(self._device_id, reading, stale)
            if self.connected is not True or self.error is not None:
                await self._now_connected()
            self.failures = 0
        self.polls += 1
        self.last_cycle = now
        if self.polls == 1:
            self.first_cycle_done.set()

    async def _now_connected(self) -> None:
        """A good poll of a device that was not connected (or carried an error)."""
        if self.connected is False:
            self._log.info("device recovered", after_failures=self.failures)
        elif self.connected is None:
            self._log.info("device connected")
        await self._set_state(connected=True, error=None)

    async def _failed(self, exc: DriverError) -> None:
        self.failures += 1
        error = str(exc)
        if self.failures == 1:
            self._log.warning("device not answering", error=error, error_type=type(exc).__name__)
        else:
            self._log.debug("device still not answering", error=error, failures=self.failures)
        payload = telemetry_json(ts=_timestamps.now(), values={}, quality="bad", error=error)
        await self._mqtt.publish(self._telemetry_topic, payload)
        if self._alarms is not None:
            self._alarms.on_failure(self.device.id, error)
        # The retained state keeps the error that started the outage: later errors of the same
        # outage (retry countdowns, refused reconnects) would rewrite the topic every poll.
        outage_error = self.error if self.connected is False and self.error else error
        await self._set_state(connected=False, error=outage_error)

    async def _set_state(self, *, connected: bool, error: str | None) -> None:
        if connected == self.connected and error == self.error:
            return
        self.connected, self.error = connected, error
        payload = DeviceStatePayload(
            connected=connected, since=utc_now(), error=error, kind=self.device.kind
        )
        await self._mqtt.publish(
            self._topics.device_state(self.device.id), payload.to_json(), qos=1, retain=True
        )

    def _stale_values(self, reading: Reading, now: float) -> list[str]:
        values = reading.values
        stale = []
        for name, limit in self._stale_after.items():
            value = values.get(name)
            if value is None:
                continue
            track = self._tracks.get(name)
            if track is None:
                self._tracks[name] = _Track(value=value, changed_at=now)
            elif track.value != value:
                track.value, track.changed_at = value, now
            elif now - track.changed_at >= limit:
                stale.append(name)
        return stale
