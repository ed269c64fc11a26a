"""One simulated device: its physics model, its register bank and its active faults.

Transport-agnostic: a server hands the device a request PDU and a function that frames a
response PDU, and gets back the bytes to send, or None when the device stays silent.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import Any

from controllerd.config import ProbeConfig, UltFreezerConfig
from drivers.modbus import ModbusRtuConfig
from simulators._faults import SILENT_FAULTS, check_fault, garbage_reply, open_circuit_code
from simulators.modbus._bank import RegisterBank, serve_pdu
from simulators.physics import FreezerModel, ProbeModel

SimulatedConfig = UltFreezerConfig | ProbeConfig


class SimulatedDevice:
    """A freezer or probe as its Modbus registers show it, with scriptable faults."""

    def __init__(
        self,
        *,
        config: SimulatedConfig,
        model: FreezerModel | ProbeModel,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.model = model
        self.bank = RegisterBank(registers=config.registers)
        self._rng = rng
        self._faults: set[str] = set()
        self.refresh()

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def unit_id(self) -> int:
        return self.config.driver.unit_id

    @property
    def transport(self) -> str:
        """'tcp' or 'rtu'."""
        return "rtu" if isinstance(self.config.driver, ModbusRtuConfig) else "tcp"

    @property
    def faults(self) -> frozenset[str]:
        """The active faults."""
        return frozenset(self._faults)

    @property
    def answering(self) -> bool:
        """False while a fault keeps the device silent (disconnect, power_fail)."""
        return not self._faults & SILENT_FAULTS

    def check_fault(self, fault: str) -> None:
        """Raise FaultError when this device cannot have `fault`."""
        check_fault(device=self.id, kind=self.kind, fault=fault, registers=self.config.registers)

    def inject(self, fault: str, *, clear: bool = False) -> bool:
        """Inject (or clear) a fault; True when that changed anything."""
        self.check_fault(fault)
        if clear == (fault not in self._faults):
            return False
        if fault == "stuck":
            # Freeze the words as the device shows them at this moment.
            self.refresh()
        if clear:
            self._faults.discard(fault)
        else:
            self._faults.add(fault)
        self.bank.frozen = "stuck" in self._faults
        if isinstance(self.model, FreezerModel):
            self.model.door_open = "door_open" in self._faults
            self.model.compressor_failed = "compressor_fail" in self._faults
            self.model.power_failed = "power_fail" in self._faults
        self.refresh()
        return True

    def values(self) -> dict[str, float]:
        """The named values the device's registers show (before faults on raw codes)."""
        model = self.model
        if isinstance(model, ProbeModel):
            return {"temperature_c": model.reading_c}
        return {
            "temperature_c": model.reading_c,
            "setpoint_c": model.setpoint_c,
            "door_open": float(model.door_open),
            "compressor_on": float(model.compressor_on),
            "alarm_bits": float(model.alarm_bits),
        }

    def refresh(self) -> None:
        """Bring the register words up to date with the model (a no-op while stuck)."""
        raw = {}
        if "sensor_open" in self._faults:
            raw["temperature_c"] = open_circuit_code(self.config.registers)
        self.bank.update(self.values(), raw=raw)

    def _on_write(self, values: Mapping[str, float]) -> None:
        if "setpoint_c" in values:
            if not isinstance(self.model, FreezerModel):
                raise ValueError("a probe has no setpoint")
            self.model.set_setpoint(values["setpoint_c"])

    def reply(self, pdu: bytes, frame: Callable[[bytes], bytes]) -> bytes | None:
        """The bytes this device sends for a request PDU; None when it stays silent."""
        if not self.answering:
            return None
        self.refresh()
        response = serve_pdu(self.bank, pdu, self._on_write)
        if "garbage" in self._faults:
            function = pdu[0] if pdu else 0
            return garbage_reply(
                function_code=function, reply_pdu=response, frame=frame, rng=self._rng
            )
        return frame(response)

    def state(self) -> dict[str, Any]:
        """What the control endpoint's `status` reports for this device."""
        state: dict[str, Any] = {
            "kind": self.kind,
            "transport": self.transport,
            "unit_id": self.unit_id,
            "answering": self.answering,
            "faults": sorted(self._faults),
        }
        model = self.model
        if isinstance(model, FreezerModel):
            state.update(
                cabinet_c=round(model.cabinet_c, 3),
                temperature_c=round(model.reading_c, 3),
                setpoint_c=model.setpoint_c,
                compressor_on=model.compressor_on,
                door_open=model.door_open,
                alarm_bits=model.alarm_bits,
            )
        else:
            state.update(temperature_c=round(model.reading_c, 3), follows=model.params.follows)
        return state
