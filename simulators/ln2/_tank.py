"""One simulated LN2 controller: answers protocol requests from its tank model, with faults.

Transport-agnostic: a line server passes the bytes on the line through `hear` (what this
controller's receiver gets), hands it each request decoded from them, and sends back the bytes
`reply` returns (None: the controller stays silent). With the `noise` fault both directions
are garbled: the requests it hears and the replies it sends.
"""

from __future__ import annotations

import random
from typing import Any

from controllerd.config import Ln2TankConfig
from drivers.ln2 import (
    OPEN_CIRCUIT,
    Request,
    command_for,
    encode_error,
    encode_reply,
)
from simulators._faults import check_fault
from simulators.ln2._noise import garble
from simulators.ln2._physics import TankModel

#: `ERR` codes (drivers.ln2.ERROR_CODES).
_UNKNOWN, _BAD_ARGUMENT, _OUT_OF_RANGE = 1, 2, 3


class SimulatedTank:
    """A tank controller at `address` on its line, with scriptable faults."""

    def __init__(self, *, config: Ln2TankConfig, model: TankModel, rng: random.Random) -> None:
        self.config = config
        self.model = model
        self._rng = rng
        self._faults: set[str] = set()
        #: Requests answered, and request lines this controller heard damaged (and ignored).
        self.requests = 0
        self.unreadable_requests = 0

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def address(self) -> int:
        return self.config.driver.address

    @property
    def port(self) -> str:
        return self.config.driver.port

    @property
    def faults(self) -> frozenset[str]:
        return frozenset(self._faults)

    @property
    def answering(self) -> bool:
        return "disconnect" not in self._faults

    def check_fault(self, fault: str) -> None:
        """Raise FaultError when this tank cannot have `fault`."""
        check_fault(device=self.id, kind=self.kind, fault=fault, registers=())

    def inject(self, fault: str, *, clear: bool = False) -> bool:
        """Inject (or clear) a fault; True when that changed anything."""
        self.check_fault(fault)
        if clear == (fault not in self._faults):
            return False
        if clear:
            self._faults.discard(fault)
        else:
            self._faults.add(fault)
        model = self.model
        model.supply_empty = "supply_empty" in self._faults
        model.valve_stuck = "valve_stuck" in self._faults
        model.lid_open = "lid_open" in self._faults
        model.thermocouple_open = "thermocouple_open" in self._faults
        return True

    @property
    def _noise_rate(self) -> float:
        return self.config.simulation.line_noise_rate if self.config.simulation else 0.01

    def hear(self, data: bytes) -> bytes:
        """The line's bytes as this controller's receiver gets them (garbled with `noise`)."""
        if "noise" not in self._faults:
            return data
        return garble(data, rate=self._noise_rate, rng=self._rng)

    def reply(self, request: Request) -> bytes | None:
        """The bytes this controller sends for a request addressed to it (None: silent)."""
        if not self.answering:
            return None
        self.requests += 1
        payload = self._answer(request)
        if isinstance(payload, int):
            data = encode_error(self.address, request.wire, payload)
        else:
            data = encode_reply(self.address, request.wire, payload)
        if "noise" in self._faults:
            data = garble(data, rate=self._noise_rate, rng=self._rng)
        return data

    def _answer(self, request: Request) -> str | int:
        command = command_for(request.wire)
        if command is None:
            return _UNKNOWN
        if len(request.args) != command.args:
            return _BAD_ARGUMENT
        model = self.model
        match command.operation:
            case "temperature_a":
                return OPEN_CIRCUIT if model.thermocouple_open else f"{model.temperature_a_c:.2f}"
            case "temperature_b":
                return f"{model.temperature_b_c:.2f}"
            case "level_mm":
                return f"{model.level_reading_pct() / 100 * model.params.capacity_mm:.1f}"
            case "level_pct":
                return f"{model.level_reading_pct():.1f}"
            case "filling":
                return "1" if model.filling else "0"
            case "bypass":
                return "1" if model.bypass_open else "0"
            case "lid":
                return "1" if model.lid_open else "0"
            case "alarms":
                return f"{model.alarm_bits():04X}"
            case "version":
                return model.params.firmware
            case "fill_levels":
                return f"{model.start_pct:.1f} {model.stop_pct:.1f}"
            case "start_fill":
                model.start_fill()
                return "OK"
            case "stop_fill":
                model.stop_fill()
                return "OK"
            case "set_fill_levels":
                try:
                    start, stop = (float(arg) for arg in request.args)
                except ValueError:
                    return _BAD_ARGUMENT
                try:
                    model.set_fill_levels(start, stop)
                except ValueError:
                    return _OUT_OF_RANGE
                return f"{model.start_pct:.1f} {model.stop_pct:.1f}"
        return _UNKNOWN

    def state(self) -> dict[str, Any]:
        """What the control endpoint's `status` reports for this tank."""
        model = self.model
        return {
            "kind": self.kind,
            "transport": "ln2",
            "port": self.port,
            "address": self.address,
            "answering": self.answering,
            "faults": sorted(self._faults),
            "requests": self.requests,
            "unreadable_requests": self.unreadable_requests,
            "level_pct": round(model.level_pct, 3),
            "level_mm": round(model.level_mm, 1),
            "temperature_a_c": round(model.temperature_a_c, 2),
            "filling": model.filling,
            "bypass_open": model.bypass_open,
            "lid_open": model.lid_open,
            "fill_levels": [model.start_pct, model.stop_pct],
            "fills": model.fills,
            "hours_to_low": round(model.hours_to_low(self.config.low_level_pct), 3),
        }
