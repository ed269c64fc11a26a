"""The command table: our operations and the wire commands a tank controller understands.

This one table is all that maps the driver's operations onto a controller's ASCII commands; a
real controller with other mnemonics is supported by editing `wire` here (and nothing else).
See docs/ln2-protocol.md for the frames around these commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

#: How a reply's payload reads:
#:   number  a decimal (`-197.10`), or `OPEN` for a sensor with an open circuit
#:   flag    `0` or `1`
#:   flags   4 hexadecimal digits, a bit field (`00A1`)
#:   text    printable ASCII (a firmware version)
#:   levels  two decimals separated by a space (fill start and stop level, %)
#:   ok      `OK` (a command that was carried out)
ReplyKind = Literal["number", "flag", "flags", "text", "levels", "ok"]

Operation = Literal[
    "temperature_a",
    "temperature_b",
    "level_mm",
    "level_pct",
    "filling",
    "bypass",
    "lid",
    "alarms",
    "version",
    "fill_levels",
    "start_fill",
    "stop_fill",
    "set_fill_levels",
]


@dataclass(frozen=True, slots=True)
class WireCommand:
    """One row of the table: what to send for an operation and how its reply reads."""

    operation: Operation
    #: The mnemonic after the address; queries end with `?`.
    wire: str
    reply: ReplyKind
    #: Number of arguments the command takes (decimals separated by spaces).
    args: int = 0
    description: str = ""

    @property
    def is_query(self) -> bool:
        return self.wire.endswith("?")


_TABLE = (
    WireCommand("temperature_a", "TEMPA?", "number", description="vapour temperature A (top), °C"),
    WireCommand("temperature_b", "TEMPB?", "number", description="temperature B (bottom), °C"),
    WireCommand("level_mm", "LEVEL?", "number", description="LN2 level, mm"),
    WireCommand("level_pct", "LEVELP?", "number", description="LN2 level, % of full"),
    WireCommand("filling", "FILL?", "flag", description="1 while the fill valve is open"),
    WireCommand("bypass", "BYPASS?", "flag", description="1 while the hot-gas bypass is open"),
    WireCommand("lid", "LID?", "flag", description="1 while the lid is open"),
    WireCommand("alarms", "ALARMS?", "flags", description="the controller's alarm bits"),
    WireCommand("version", "VER?", "text", description="firmware version"),
    WireCommand("fill_levels", "FILLSET?", "levels", description="fill start and stop, %"),
    WireCommand("start_fill", "FILLSTART", "ok", description="open the fill valve now"),
    WireCommand("stop_fill", "FILLSTOP", "ok", description="close the fill valve now"),
    WireCommand(
        "set_fill_levels",
        "FILLSET",
        "levels",
        args=2,
        description="set fill start and stop level, %; stop above start",
    ),
)

#: Operation -> wire command.
COMMANDS: Mapping[str, WireCommand] = {row.operation: row for row in _TABLE}
#: Wire mnemonic -> wire command (what a controller, or the simulator, looks requests up by).
BY_WIRE: Mapping[str, WireCommand] = {row.wire: row for row in _TABLE}

#: The queries one poll sends, in order.
POLL_QUERIES: tuple[Operation, ...] = (
    "temperature_a",
    "temperature_b",
    "level_mm",
    "level_pct",
    "filling",
    "bypass",
    "lid",
    "alarms",
)

#: Bits of the `ALARMS?` reply.
ALARM_BITS: Mapping[int, str] = {
    0: "low level",
    1: "high level",
    2: "temperature A high",
    3: "lid open",
    4: "thermocouple open",
    5: "fill time exceeded",
}

#: Error codes of an `ERR` reply.
ERROR_CODES: Mapping[int, str] = {
    1: "unknown command",
    2: "bad argument",
    3: "value out of range",
    4: "not possible now",
    5: "sensor fault",
}
