"""The tube picker as a daemon device: the `drivers.Driver` interface plus the motion API.

`PickerDriver` opens its `FirmwareLink` on first use and reopens it, with capped jittered
backoff, after a communication loss; `read` reports the latest heartbeat (so polling never
waits behind a running move), and `motion` is the API the pick-job executor calls.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Self

import structlog

from drivers import Backoff, DriverError, InvalidRequest, NotConnected, Reading
from firmware_bridge._config import FirmwareSerialConfig, MotionConfig
from firmware_bridge._errors import CommunicationLost
from firmware_bridge._link import FirmwareLink
from firmware_bridge._messages import StatusArgs, code_name, parse_ack
from firmware_bridge._motion import PickerMotion

_log = structlog.get_logger("firmware_bridge.driver")


def reading_of(status: StatusArgs) -> Reading:
    """Telemetry values of a status; active controller faults go under `motion`."""
    values = {
        "x_mm": status.x_um / 1000,
        "y_mm": status.y_um / 1000,
        "z_mm": status.z_um / 1000,
        "holding": float(status.holding),
        "homed": float(status.homed),
        "moving": float(status.moving),
        "estop": float(status.estop),
    }
    faults = {}
    if status.faults:
        faults["motion"] = ", ".join(code_name(code) for code in status.faults)
    return Reading(values=values, faults=faults)


class PickerDriver:
    """A tube picker's motion controller on a framed serial link (`async with` closes it)."""

    def __init__(
        self,
        *,
        device_id: str,
        config: FirmwareSerialConfig,
        motion: MotionConfig | None = None,
        host: str = "controllerd",
    ) -> None:
        self._device_id = device_id
        self._config = config
        self._motion_config = motion
        self._host = host
        self._link: FirmwareLink | None = None
        self._lock = asyncio.Lock()
        self._backoff = Backoff(initial_s=config.reconnect_initial_s, max_s=config.reconnect_max_s)
        self._next_attempt = 0.0
        self._log = _log.bind(device=device_id)
        self.motion = PickerMotion(source=self)

    @property
    def device_id(self) -> str:
        return self._device_id

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def connect(self) -> None:
        await self.link()

    async def link(self) -> FirmwareLink:
        """The open link, opened (hello, set_motion) when there is none; raises NotConnected
        while waiting out the backoff, ConnectFailed / IncompatibleFirmware when opening fails."""
        link = self._link
        if link is not None and link.lost is None:
            return link
        async with self._lock:
            if self._link is not None and self._link.lost is None:
                return self._link
            await self._drop_link()
            wait = self._next_attempt - time.monotonic()
            if wait > 0:
                raise NotConnected(
                    f"{self._config.port} is down, next attempt in {wait:.1f} s",
                    retry_in_s=wait,
                    device=self._device_id,
                    operation="connect",
                )
            link = FirmwareLink(config=self._config, device=self._device_id, host=self._host)
            try:
                await link.__aenter__()
                if self._motion_config is not None:
                    try:
                        await link.request("set_motion", self._motion_config.to_args().model_dump())
                    except BaseException:
                        await link.__aexit__(None, None, None)
                        raise
            except DriverError as exc:
                self._failed(str(exc))
                raise
            if self._backoff.failures:
                self._log.info("controller reachable again", after_failures=self._backoff.failures)
            self._backoff.reset()
            self._link = link
            return link

    def _failed(self, reason: str) -> None:
        delay = self._backoff.next_delay()
        self._next_attempt = time.monotonic() + delay
        level = self._log.warning if self._backoff.failures == 1 else self._log.debug
        level("controller unreachable", reason=reason, retry_in_s=round(delay, 2))

    async def _drop_link(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            if link.lost is not None:
                self._failed(str(link.lost))
            await link.__aexit__(None, None, None)

    async def close(self) -> None:
        async with self._lock:
            await self._drop_link()

    async def read(self) -> Reading:
        link = await self.link()
        if link.silent_s > self._config.heartbeat_timeout_s:
            raise CommunicationLost(
                f"controller silent for {link.silent_s:.1f} s",
                retry_in_s=0.0,
                device=self._device_id,
                operation="read",
            )
        status = link.status
        if status is None:
            ack = parse_ack("status", await link.request("status"))
            assert isinstance(ack, StatusArgs)
            status = ack
        return reading_of(status)

    async def write(self, name: str, value: float) -> None:
        raise InvalidRequest(
            f"a tube picker has no writable value '{name}'; use its motion API",
            device=self._device_id,
            operation="write",
        )
