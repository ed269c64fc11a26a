"""Faults a simulated device can be given, and what each one does.

| fault           | kinds       | effect                                                  |
| --------------- | ----------- | ------------------------------------------------------- |
| disconnect      | all         | stops answering: a Modbus TCP server closes its         |
|                 |             | connections and stops listening; an RTU unit is silent  |
| garbage         | all         | answers with malformed frames or exception responses,   |
|                 |             | mixed by the device's seeded random generator           |
| stuck           | all         | register words frozen as they are; physics goes on      |
| power_fail      | all         | silent as `disconnect`; a freezer's compressor stops    |
|                 |             | and `alarm_bits` bit 3 is set (seen once power is back) |
| sensor_open     | all         | `temperature_c` reads its open-circuit code, the first  |
|                 |             | of its `fault_codes` (refused when it has none)         |
| compressor_fail | ult_freezer | no cooling; `compressor_on` reads 0; `alarm_bits` bit 2 |
| door_open       | ult_freezer | the cabinet warms fast; `door_open` reads 1; bit 1      |
| door_open       | tube_store  | door open: Maintenance, robot pauses, chambers warm     |
| robot_jam       | tube_store  | the running (or next) operation fails: Faulted until    |
|                 |             | the jam is cleared and Reset is called                  |
| chamber_warm    | tube_store  | refrigeration fails: both chambers warm toward the room |
| restart         | tube_store  | the OPC UA server restarts at once (one-shot)           |
| hang            | tube_store  | method calls held unanswered; cleared, refused unrun    |
| disconnect      | tube_store  | the OPC UA server stops until cleared; the robot works  |

Injecting a fault twice, or clearing one that is not active, changes nothing. Not modelled:
partial answers on a TCP stream, slow answers, or a TCP peer that stops acknowledging (a
powered-off device on a real network makes connects time out; here they are refused).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

from drivers.modbus import RegisterSpec
from simulators._errors import FaultError
from simulators.modbus._framing import ExceptionCode, encode_exception
from simulators.picker._server import FAULTS as PICKER_FAULTS

FAULTS: Mapping[str, str] = {
    "disconnect": "stops answering (TCP: closes connections and stops listening)",
    "garbage": "answers with malformed frames or exception responses",
    "stuck": "register values frozen while the physics goes on",
    "power_fail": "silent; a freezer also stops cooling",
    "sensor_open": "temperature_c reads its open-circuit fault code",
    "compressor_fail": "freezer: the compressor stops cooling",
    "door_open": "freezer: the door is open; tube store: the door is open (Maintenance)",
    # Tube stores (simulators/store): see docs/simulators.md.
    "robot_jam": "tube store: the running operation fails, Faulted until Reset",
    "chamber_warm": "tube store: refrigeration fails, both chambers warm",
    "restart": "tube store: the OPC UA server restarts (sessions and subscriptions lost)",
    "hang": "tube store: method calls are held unanswered; cleared, refused (never run)",
    # LN2 tanks (simulators/ln2): see docs/simulators.md.
    "supply_empty": "ln2 tank: fills raise nothing",
    "valve_stuck": "ln2 tank: the fill valve stays open (the fill never stops)",
    "lid_open": "ln2 tank: the lid is open (faster boil-off, warmer vapour)",
    "thermocouple_open": "ln2 tank: temperature A reads OPEN",
    "noise": "ln2 tank: the requests it hears and its replies lose and gain random bytes",
    # Tube pickers (simulators/picker): see docs/simulators.md.
    **{name: f"tube picker: {text}" for name, text in PICKER_FAULTS.items()},
}

#: Which faults each device kind supports.
FAULTS_BY_KIND: Mapping[str, frozenset[str]] = {
    "ult_freezer": frozenset(
        {"disconnect", "garbage", "stuck", "power_fail", "sensor_open"}
        | {"compressor_fail", "door_open"}
    ),
    "probe": frozenset({"disconnect", "garbage", "stuck", "power_fail", "sensor_open"}),
    "tube_store": frozenset(
        {"disconnect", "restart", "hang", "robot_jam", "door_open", "chamber_warm"}
    ),
    "ln2_tank": frozenset(
        {"disconnect", "supply_empty", "valve_stuck", "lid_open", "thermocouple_open", "noise"}
    ),
    "tube_picker": frozenset(PICKER_FAULTS),
}

#: Faults that make a device stop answering altogether.
SILENT_FAULTS = frozenset({"disconnect", "power_fail"})


def check_fault(*, device: str, kind: str, fault: str, registers: Sequence[RegisterSpec]) -> None:
    """Raise FaultError when `fault` cannot be injected into this device."""
    if fault not in FAULTS:
        raise FaultError(
            f"unknown fault '{fault}' (known: {', '.join(sorted(FAULTS))})",
            device=device,
            fault=fault,
        )
    supported = FAULTS_BY_KIND.get(kind, frozenset())
    if fault not in supported:
        raise FaultError(
            f"a {kind} has no '{fault}' fault (it has: {', '.join(sorted(supported))})",
            device=device,
            fault=fault,
        )
    if fault == "sensor_open":
        spec = next((reg for reg in registers if reg.name == "temperature_c"), None)
        if spec is None or not spec.fault_codes:
            raise FaultError(
                f"{device}: 'sensor_open' needs fault_codes on its temperature_c "
                "register, and it has none",
                device=device,
                fault=fault,
            )


def open_circuit_code(registers: Sequence[RegisterSpec]) -> int:
    """The raw code `temperature_c` reads with an open sensor (checked by `check_fault`)."""
    return next(reg for reg in registers if reg.name == "temperature_c").fault_codes[0]


def garbage_reply(
    *, function_code: int, reply_pdu: bytes, frame: Callable[[bytes], bytes], rng: random.Random
) -> bytes:
    """What a device with the `garbage` fault sends instead of `frame(reply_pdu)`.

    A seeded mix of exception responses (codes 1-4) and broken frames: truncated, one byte
    flipped (a bad CRC on RTU, a wrong header or value on TCP), or random bytes.
    """
    roll = rng.random()
    if roll < 0.4:
        code = rng.choice(list(ExceptionCode))
        return frame(encode_exception(function_code, code))
    good = frame(reply_pdu)
    if roll < 0.6:
        return good[: rng.randrange(1, len(good))]
    if roll < 0.8:
        index = rng.randrange(len(good))
        flipped = good[index] ^ rng.randrange(1, 256)
        return good[:index] + bytes([flipped]) + good[index + 1 :]
    return rng.randbytes(rng.randrange(1, 24))
