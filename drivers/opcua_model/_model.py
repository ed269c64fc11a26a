"""The tube store's OPC UA information model: names both ends agree on (no I/O).

Everything is addressed by browse name under one namespace URI (`NAMESPACE_URI`), never by a
numeric node id; docs/store-opcua.md draws the tree. The driver and the simulator share these
names, the state and fault codes, and the inventory records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

#: The namespace every node of the model lives in.
NAMESPACE_URI = "urn:controllerd:biobank:tube-store"

#: Browse name of the store object (the device) under Objects.
STORE = "TubeStore"

# Browse paths below the store object (one tuple element per browse name). The layout follows
# the OPC UA LADS companion specification where that is cheap: a device state machine with a
# `CurrentState`, functional units in `FunctionalUnitSet`, each with its functions in a
# `FunctionSet` (sensors with a `SensorValue`, the door as a cover with a `CoverState` state
# machine). Every name lives in NAMESPACE_URI, LADS's own names included (docs/store-opcua.md).
STATE_MACHINE = "StateMachine"
CURRENT_STATE = "CurrentState"
#: The state number, a property of every `CurrentState` (OPC UA Part 16 `StateVariableType`).
STATE_NUMBER = "Number"
STATE = (STATE_MACHINE, CURRENT_STATE)
STATE_CODE = (STATE_MACHINE, CURRENT_STATE, STATE_NUMBER)
FAULT_CODE = (STATE_MACHINE, "FaultCode")
FAULT_TEXT = (STATE_MACHINE, "FaultText")

FUNCTIONAL_UNITS = "FunctionalUnitSet"
FUNCTIONS = "FunctionSet"
STORAGE_CHAMBER = (FUNCTIONAL_UNITS, "StorageChamber")
PICK_CHAMBER = (FUNCTIONAL_UNITS, "PickChamber")
RACK_ROBOT = (FUNCTIONAL_UNITS, "RackRobot")
SENSOR_VALUE = "SensorValue"
#: The EUInformation property of a sensor value (UNECE code `CEL` for °C).
ENGINEERING_UNITS = "EngineeringUnits"
CHAMBER_TEMPERATURE = (*STORAGE_CHAMBER, FUNCTIONS, "Temperature", SENSOR_VALUE)
PICK_CHAMBER_TEMPERATURE = (*PICK_CHAMBER, FUNCTIONS, "Temperature", SENSOR_VALUE)
#: The maintenance door into the pick chamber, a LADS cover function.
DOOR = (*PICK_CHAMBER, FUNCTIONS, "Door")
DOOR_STATE = (*DOOR, "CoverState", CURRENT_STATE)
DOOR_STATE_CODE = (*DOOR_STATE, STATE_NUMBER)

OPERATION = (*RACK_ROBOT, "Operation")
OP_COMPLETED_ID = (*OPERATION, "CompletedId")
OP_METHOD = (*OPERATION, "Method")
OP_RESULT = (*OPERATION, "Result")
OP_RESULT_CODE = (*OPERATION, "ResultCode")
OP_DURATION_S = (*OPERATION, "DurationS")
OP_MESSAGE = (*OPERATION, "Message")
OP_LAST_REJECTION = (*OPERATION, "LastRejection")

PICK_STATION = "PickStation"
RACKS = "Racks"
#: Children of each port object under PickStation.
PORT_RACK_ID = "RackId"
#: Children of each rack object under Racks (the rack object's browse name is the rack id).
RACK_TOWER = "Tower"
RACK_SHELF = "Shelf"
RACK_LOCATION = "Location"
RACK_TUBES = "Tubes"

# Methods of the rack robot (`RACK_ROBOT`): call them on that object.
RETRIEVE_RACK = "RetrieveRack"
STORE_RACK = "StoreRack"
SCAN_RACK = "ScanRack"
RESET = "Reset"
METHODS = (RETRIEVE_RACK, STORE_RACK, SCAN_RACK, RESET)


def method_path(method: str) -> tuple[str, ...]:
    """The browse path of one of `METHODS` below the store object."""
    return (*RACK_ROBOT, method)


#: The port that holds the output rack: racks are never retrieved into it.
OUTPUT_PORT = "OUT"

ROWS = "ABCDEFGH"
COLUMNS = 12
#: An SBS 96 rack's positions in reading order: the order of a rack's `Tubes` array.
POSITIONS: tuple[str, ...] = tuple(f"{row}{col}" for row in ROWS for col in range(1, COLUMNS + 1))


class StoreState(IntEnum):
    """The device state machine: `CurrentState/Number`; `CurrentState` holds the name."""

    IDLE = 0
    BUSY = 1
    FAULTED = 2
    MAINTENANCE = 3

    @property
    def label(self) -> str:
        return self.name.capitalize()


class DoorState(IntEnum):
    """The door's `CoverState` (`Number`); `CurrentState` holds the name (LADS cover states)."""

    CLOSED = 0
    OPENED = 1

    @property
    def label(self) -> str:
        return self.name.capitalize()


class FaultCode(IntEnum):
    """`FaultCode`: why the store is Faulted (0 while it is not)."""

    NONE = 0
    ROBOT_JAM = 1


#: Values the subscription watches, by the telemetry name the driver publishes them under.
TELEMETRY_PATHS: Mapping[str, tuple[str, ...]] = {
    "chamber_temperature_c": CHAMBER_TEMPERATURE,
    "pick_chamber_temperature_c": PICK_CHAMBER_TEMPERATURE,
    "state_code": STATE_CODE,
    "door_open": DOOR_STATE_CODE,
    "fault_code": FAULT_CODE,
}

#: `Location` of a rack: in its slot, on the robot, or in a port (`port:P1`).
LOCATION_STORE = "store"
LOCATION_ROBOT = "robot"
PORT_PREFIX = "port:"


def tubes_from_array(values: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """A rack's `Tubes` array (one barcode or "" per position) as position -> barcode | None."""
    if len(values) != len(POSITIONS):
        raise ValueError(f"a rack's Tubes must hold {len(POSITIONS)} entries, got {len(values)}")
    return {pos: (code or None) for pos, code in zip(POSITIONS, values, strict=True)}


def tubes_to_array(tubes: Mapping[str, str | None]) -> list[str]:
    """position -> barcode | None as the `Tubes` array ("" for an empty position)."""
    return [tubes.get(pos) or "" for pos in POSITIONS]


@dataclass(frozen=True, slots=True)
class RackRecord:
    """One rack of the store's inventory as the store reports it."""

    rack_id: str
    tower: int
    shelf: int
    #: `store`, `robot` or `port:<port>`
    location: str
    #: position -> barcode, None for an empty position (the last scan's result)
    tubes: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def port(self) -> str | None:
        """The port the rack is in, or None."""
        return (
            self.location.removeprefix(PORT_PREFIX)
            if self.location.startswith(PORT_PREFIX)
            else None
        )


@dataclass(frozen=True, slots=True)
class Inventory:
    """The store's racks, and what each pick-station port holds (rack id or None)."""

    racks: tuple[RackRecord, ...]
    ports: Mapping[str, str | None]

    def rack(self, rack_id: str) -> RackRecord:
        """The rack with this id (KeyError when there is none)."""
        for rack in self.racks:
            if rack.rack_id == rack_id:
                return rack
        raise KeyError(rack_id)


@dataclass(frozen=True, slots=True)
class OperationResult:
    """How a robot operation (retrieve, store, scan) ended, as the store reports it."""

    operation_id: int
    method: str
    status: str
    status_code: int
    #: the operation's duration on the store's own clock (simulated seconds in a simulator)
    duration_s: float
    message: str

    @property
    def ok(self) -> bool:
        return self.status_code & 0x80000000 == 0
