"""The LN2 tank controller driver: the command table's queries and commands over a shared line."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from drivers._errors import DeviceRejected, InvalidRequest, ProtocolError
from drivers._interface import Reading
from drivers.ln2 import (
    COMMANDS,
    ForeignFrame,
    Ln2SerialConfig,
    Operation,
    Reply,
    decode_reply,
    encode_request,
    next_line,
    parse_flag,
    parse_flags,
    parse_levels,
    parse_number,
    parse_ok,
    parse_text,
)
from drivers.serial_line import LineSettings, SerialLine, SerialLines

T = TypeVar("T")

#: Poll value name -> the query that reads it (temperatures may read OPEN: a sensor fault).
_NUMBERS: tuple[tuple[str, Operation], ...] = (
    ("temperature_a_c", "temperature_a"),
    ("temperature_b_c", "temperature_b"),
    ("ln2_level_mm", "level_mm"),
    ("ln2_level_pct", "level_pct"),
)
_FLAGS: tuple[tuple[str, Operation], ...] = (
    ("filling", "filling"),
    ("lid_open", "lid"),
    ("bypass_open", "bypass"),
)
THERMOCOUPLE_OPEN = "thermocouple open"


def line_settings(config: Ln2SerialConfig) -> LineSettings:
    """The line a controller's link config describes."""
    return LineSettings(
        port=config.port,
        baudrate=config.baudrate,
        parity=config.parity,
        stopbits=config.stopbits,
        bytesize=config.bytesize,
        gap_s=config.gap_s,
        reconnect_initial_s=config.reconnect_initial_s,
        reconnect_max_s=config.reconnect_max_s,
    )


def ln2_line(lines: SerialLines, config: Ln2SerialConfig) -> SerialLine:
    """The shared line a controller sits on, from a daemon's pool."""
    return lines.line_for(line_settings(config), framer=next_line)


class Ln2Driver:
    """One tank controller at `config.address` on a shared `SerialLine`."""

    def __init__(self, *, device_id: str, link: SerialLine, config: Ln2SerialConfig) -> None:
        self._device_id = device_id
        self._link = link
        self._config = config

    @property
    def device_id(self) -> str:
        return self._device_id

    async def connect(self) -> None:
        await self._link.connect(device=self._device_id)

    async def close(self) -> None:
        # The line is shared with the other controllers on it; its pool closes it.
        return None

    async def _ask(
        self, operation: Operation, parse: Callable[[str], T], args: tuple[float, ...] = ()
    ) -> T:
        command = COMMANDS[operation]
        try:
            request = encode_request(self._config.address, command, args)
        except ValueError as exc:
            raise InvalidRequest(str(exc), device=self._device_id, operation=operation) from exc

        def accept(line: bytes) -> Reply | None:
            try:
                reply = decode_reply(line, address=self._config.address, command=command)
            except ForeignFrame:
                return None
            if reply.error_code is None:
                parse(reply.payload)  # a damaged value fails the attempt (ValueError): retried
            return reply

        cfg = self._config
        reply = await self._link.exchange(
            request,
            accept=accept,
            timeout_s=cfg.timeout_s,
            retries=cfg.retries,
            device=self._device_id,
            operation=command.wire,
        )
        code = reply.error_code
        if code is not None:
            raise DeviceRejected(
                f"{command.wire} refused: {reply.error_text}",
                code=code,
                device=self._device_id,
                operation=command.wire,
            )
        return parse(reply.payload)

    async def read(self) -> Reading:
        """Temperatures, level, fill, lid and bypass state, and the alarm bits."""
        values: dict[str, float] = {}
        faults: dict[str, str] = {}
        for name, operation in _NUMBERS:
            value = await self._ask(operation, parse_number)
            if value is None:
                if not name.startswith("temperature"):
                    raise ProtocolError(
                        f"{COMMANDS[operation].wire} read OPEN, which only a temperature may",
                        device=self._device_id,
                        operation=COMMANDS[operation].wire,
                    )
                faults[name] = THERMOCOUPLE_OPEN
            else:
                values[name] = value
        for name, operation in _FLAGS:
            values[name] = float(await self._ask(operation, parse_flag))
        values["alarm_bits"] = float(await self._ask("alarms", parse_flags))
        return Reading(values=values, faults=faults)

    async def version(self) -> str:
        """The controller's firmware version."""
        return await self._ask("version", parse_text)

    async def filling(self) -> bool:
        """Whether the controller reports a fill in progress."""
        return await self._ask("filling", parse_flag)

    async def fill_levels(self) -> tuple[float, float]:
        """The fill start and stop levels the controller uses, %."""
        return await self._ask("fill_levels", parse_levels)

    async def start_fill(self) -> None:
        """Open the fill valve now (a fill already running goes on)."""
        await self._ask("start_fill", parse_ok)

    async def stop_fill(self) -> None:
        """Close the fill valve now (safe to repeat)."""
        await self._ask("stop_fill", parse_ok)

    async def set_fill_levels(self, start_pct: float, stop_pct: float) -> tuple[float, float]:
        """Set the automatic fill levels; returns what the controller now uses."""
        if not 0 <= start_pct < stop_pct <= 100:
            raise InvalidRequest(
                f"fill levels need 0 <= start < stop <= 100, got {start_pct} and {stop_pct}",
                device=self._device_id,
                operation="set_fill_levels",
            )
        return await self._ask("set_fill_levels", parse_levels, (start_pct, stop_pct))

    async def write(self, name: str, value: float) -> None:
        """Only `filling` is writable: 1 starts a fill, 0 stops it."""
        if name != "filling":
            raise InvalidRequest(
                f"'{name}' is not writable (only 'filling': 1 starts, 0 stops a fill)",
                device=self._device_id,
                operation="write",
            )
        if value == 1:
            await self.start_fill()
        elif value == 0:
            await self.stop_fill()
        else:
            raise InvalidRequest(
                f"filling takes 0 or 1, got {value}", device=self._device_id, operation="write"
            )
