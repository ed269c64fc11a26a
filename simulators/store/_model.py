"""The simulated tube store's state and physics, without any I/O (the OPC UA server mirrors it).

What is modelled:
* a rack hotel: `towers` towers of `shelves` shelves on a carousel, one SBS rack per shelf,
  `racks` of them filled with tubes of unique seeded barcodes;
* a robot that moves one rack at a time between its shelf and a pick-station port. A move takes
  `rotation + 2 * lift + handling_s`: the carousel turns the shortest way from the tower it
  faces to the rack's tower (360 / towers degrees per tower at `rotation_deg_per_s`), the lift
  travels from the transfer level (shelf 1) to the shelf and back (`(shelf - 1) *
  shelf_pitch_mm` at `lift_mm_per_s`), and the rack is gripped, carried and released;
* a scan re-reads a rack's barcodes (`scan_s`, plus a carousel and lift trip for a rack on its
  shelf); the inventory shows what the last scan saw, which may lag what the picker did;
* the device state machine: Idle, Busy, Faulted (robot jam, until Reset) and Maintenance
  (door open: the robot pauses, methods are refused);
* two chambers relaxing toward their setpoints, or toward the room when the door is open
  (the pick chamber fast, the -80 chamber ten times slower) or the refrigeration fails.

Not modelled: several racks per shelf, the robot's own position within a move, a rack stuck
between shelf and port (a jammed rack goes home on Reset), defrost, sensor lag.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from controllerd.sim_config import StoreSimulation
from drivers.opcua_model import OUTPUT_PORT, POSITIONS, FaultCode, StoreState
from drivers.opcua_model import names as model
from simulators._station import PickStation, SimRack

#: Store faults and what each does (the server adds `disconnect` and `restart`).
MODEL_FAULTS = ("robot_jam", "door_open", "chamber_warm")


class StoreRejected(Exception):
    """A method the store refuses; nothing changed. `status` is an OPC UA status code name."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Operation:
    """A robot operation under way."""

    op_id: int
    method: str
    rack: str
    port: str | None
    duration_s: float
    remaining_s: float


@dataclass(frozen=True)
class Completed:
    """How the last operation ended."""

    op_id: int = 0
    method: str = ""
    status: str = "Good"
    duration_s: float = 0.0
    message: str = ""


def seed_racks(params: StoreSimulation, rng: random.Random) -> dict[str, tuple[int, int, SimRack]]:
    """rack id -> (tower, shelf, rack): racks in random slots, tubes with unique barcodes."""
    slots = [(t, s) for t in range(1, params.towers + 1) for s in range(1, params.shelves + 1)]
    chosen = sorted(rng.sample(slots, params.racks))
    used: set[str] = set()
    racks: dict[str, tuple[int, int, SimRack]] = {}
    for index, (tower, shelf) in enumerate(chosen, start=1):
        rack_id = f"R{index:04d}"
        tubes: dict[str, str | None] = {}
        for position in POSITIONS:
            if rng.random() < params.tube_fill:
                code = f"{rng.randrange(10**9, 10**10)}"
                while code in used:
                    code = f"{rng.randrange(10**9, 10**10)}"
                used.add(code)
                tubes[position] = code
        racks[rack_id] = (tower, shelf, SimRack.filled(rack_id, tubes))
    return racks


class StoreModel:
    """The store as its OPC UA model shows it; methods raise StoreRejected and change nothing."""

    def __init__(
        self,
        *,
        params: StoreSimulation,
        ambient_c: float,
        station: PickStation,
        rng: random.Random,
    ) -> None:
        self.params = params
        self.ambient_c = ambient_c
        self.station = station
        self._rng = rng
        seeded = seed_racks(params, rng)
        self.racks: dict[str, SimRack] = {rid: rack for rid, (_, _, rack) in seeded.items()}
        self.home: dict[str, tuple[int, int]] = {rid: (t, s) for rid, (t, s, _) in seeded.items()}
        self.location: dict[str, str] = dict.fromkeys(self.racks, model.LOCATION_STORE)
        #: what the last scan of each rack saw (the inventory the store reports)
        self.scanned: dict[str, dict[str, str | None]] = {
            rid: dict(rack.tubes) for rid, rack in self.racks.items()
        }
        #: bumped on every change of a rack's location or scan (the server mirrors on change)
        self.rack_version: dict[str, int] = dict.fromkeys(self.racks, 0)
        if OUTPUT_PORT in station.racks and station.racks[OUTPUT_PORT] is None:
            station.put(OUTPUT_PORT, SimRack.empty("OUT-0001"))
        self.carousel_tower = 1
        self.jammed = False
        self.door_open = False
        self.refrigeration_failed = False
        self.faulted_text = ""
        self.operation: Operation | None = None
        self.completed = Completed()
        self.last_rejection = ""
        self._next_op = 1
        self.chamber_c = params.chamber_setpoint_c
        self.pick_chamber_c = params.pick_chamber_setpoint_c
        self.chamber_reading_c = self.chamber_c
        self.pick_chamber_reading_c = self.pick_chamber_c

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> StoreState:
        if self.faulted_text:
            return StoreState.FAULTED
        if self.door_open:
            return StoreState.MAINTENANCE
        if self.operation is not None:
            return StoreState.BUSY
        return StoreState.IDLE

    @property
    def fault_code(self) -> FaultCode:
        return FaultCode.ROBOT_JAM if self.faulted_text else FaultCode.NONE

    # ------------------------------------------------------------------ geometry

    def rotation_s(self, from_tower: int, to_tower: int) -> float:
        """Carousel turn, the shortest way round."""
        steps = abs(to_tower - from_tower) % self.params.towers
        steps = min(steps, self.params.towers - steps)
        return steps * (360.0 / self.params.towers) / self.params.rotation_deg_per_s

    def lift_s(self, shelf: int) -> float:
        """Lift travel one way between the transfer level (shelf 1) and `shelf`."""
        return (shelf - 1) * self.params.shelf_pitch_mm / self.params.lift_mm_per_s

    def move_s(self, rack_id: str) -> float:
        """A rack's trip between its shelf and a port, from where the carousel is now."""
        tower, shelf = self.home[rack_id]
        return (
            self.rotation_s(self.carousel_tower, tower)
            + 2 * self.lift_s(shelf)
            + self.params.handling_s
        )

    # ------------------------------------------------------------------ methods

    def _refuse(self, status: str, message: str) -> StoreRejected:
        self.last_rejection = message
        return StoreRejected(status, message)

    def _check_ready(self, rack_id: str) -> None:
        if self.faulted_text:
            raise self._refuse(
                "BadInvalidState", f"store is Faulted ({self.faulted_text}); Reset first"
            )
        if self.door_open:
            raise self._refuse("BadInvalidState", "door is open (Maintenance); close it first")
        if self.operation is not None:
            raise self._refuse(
                "BadResourceUnavailable",
                f"store is Busy with operation {self.operation.op_id} "
                f"({self.operation.method} {self.operation.rack})",
            )
        if rack_id not in self.racks:
            raise self._refuse("BadNotFound", f"no rack '{rack_id}' in this store")

    def _start(
        self, method: str, rack_id: str, port: str | None, duration_s: float
    ) -> tuple[int, float]:
        op = Operation(self._next_op, method, rack_id, port, duration_s, duration_s)
        self._next_op += 1
        self.operation = op
        self.last_rejection = ""
        return op.op_id, duration_s

    def retrieve(self, rack_id: str, port: str) -> tuple[int, float]:
        """Start bringing a rack to a port: (operation id, expected duration in seconds)."""
        self._check_ready(rack_id)
        if port not in self.station.racks:
            ports = ", ".join(p for p in self.station.ports if p != OUTPUT_PORT)
            raise self._refuse("BadInvalidArgument", f"no port '{port}' (ports: {ports})")
        if port == OUTPUT_PORT:
            raise self._refuse("BadInvalidArgument", f"{port} is the output port, not a rack port")
        held = self.station.racks[port]
        if held is not None:
            raise self._refuse("BadResourceUnavailable", f"port {port} holds rack {held.rack_id}")
        where = self.location[rack_id]
        if where != model.LOCATION_STORE:
            raise self._refuse("BadInvalidState", f"rack {rack_id} is not on its shelf ({where})")
        result = self._start(model.RETRIEVE_RACK, rack_id, port, self.move_s(rack_id))
        self._set_location(rack_id, model.LOCATION_ROBOT)
        return result

    def store(self, rack_id: str) -> tuple[int, float]:
        """Start putting a rack back from its port onto its shelf."""
        self._check_ready(rack_id)
        port = self.station.port_of(rack_id)
        if port is None:
            where = self.location[rack_id]
            raise self._refuse("BadInvalidState", f"rack {rack_id} is not at a port ({where})")
        result = self._start(model.STORE_RACK, rack_id, port, self.move_s(rack_id))
        # The robot lifts the rack out of the port at once: the picker no longer sees it.
        self.racks[rack_id] = self.station.take(port)
        self._set_location(rack_id, model.LOCATION_ROBOT)
        return result

    def scan(self, rack_id: str) -> tuple[int, float]:
        """Start re-reading a rack's barcodes (on its shelf or in its port)."""
        self._check_ready(rack_id)
        where = self.location[rack_id]
        duration = self.params.scan_s
        if where == model.LOCATION_STORE:
            duration += self.move_s(rack_id) - self.params.handling_s
        return self._start(model.SCAN_RACK, rack_id, None, duration)

    def reset(self) -> None:
        """Leave Faulted: a rack left on the robot goes back to its shelf."""
        if self.jammed:
            raise self._refuse("BadInvalidState", "the robot is still jammed; clear the jam first")
        self.faulted_text = ""
        for rack_id, where in self.location.items():
            if where == model.LOCATION_ROBOT:
                self._set_location(rack_id, model.LOCATION_STORE)
        self.last_rejection = ""

    # ------------------------------------------------------------------ faults

    def set_fault(self, fault: str, active: bool) -> None:
        """Set or clear one of MODEL_FAULTS."""
        if fault == "robot_jam":
            self.jammed = active
        elif fault == "door_open":
            self.door_open = active
        elif fault == "chamber_warm":
            self.refrigeration_failed = active
        else:
            raise ValueError(f"the store model has no fault '{fault}'")

    # ------------------------------------------------------------------ time

    def step(self, dt_s: float) -> None:
        """Advance the robot and the chambers by `dt_s` seconds."""
        self._step_operation(dt_s)
        self._step_thermal(dt_s)

    def _set_location(self, rack_id: str, where: str) -> None:
        self.location[rack_id] = where
        self.rack_version[rack_id] += 1

    def _step_operation(self, dt_s: float) -> None:
        op = self.operation
        if op is None:
            return
        if self.jammed:
            self.operation = None
            self.faulted_text = f"robot jam during {op.method} {op.rack}"
            self.completed = Completed(
                op.op_id,
                op.method,
                "BadDeviceFailure",
                op.duration_s - op.remaining_s,
                self.faulted_text,
            )
            return
        if self.door_open:
            return  # the safety interlock pauses the robot
        op.remaining_s -= dt_s
        if op.remaining_s > 1e-9:
            return
        self.operation = None
        tower, _ = self.home[op.rack]
        if op.method == model.RETRIEVE_RACK:
            assert op.port is not None
            self.station.put(op.port, self.racks[op.rack])
            self._set_location(op.rack, model.PORT_PREFIX + op.port)
            self.carousel_tower = tower
        elif op.method == model.STORE_RACK:
            self._set_location(op.rack, model.LOCATION_STORE)
            self.carousel_tower = tower
        else:
            self.scanned[op.rack] = dict(self.racks[op.rack].tubes)
            self.rack_version[op.rack] += 1
            if self.location[op.rack] == model.LOCATION_STORE:
                self.carousel_tower = tower
        self.completed = Completed(op.op_id, op.method, "Good", op.duration_s, "")

    def _step_thermal(self, dt_s: float) -> None:
        p = self.params
        ambient = self.ambient_c

        def relax(value: float, target: float, tau_min: float) -> float:
            return target + (value - target) * math.exp(-dt_s / (tau_min * 60.0))

        if self.refrigeration_failed:
            self.chamber_c = relax(self.chamber_c, ambient, p.warm_tau_min)
            self.pick_chamber_c = relax(self.pick_chamber_c, ambient, p.warm_tau_min)
        else:
            self.chamber_c = relax(self.chamber_c, p.chamber_setpoint_c, p.cool_tau_min)
            self.pick_chamber_c = relax(
                self.pick_chamber_c, p.pick_chamber_setpoint_c, p.cool_tau_min
            )
        if self.door_open:
            self.pick_chamber_c = relax(self.pick_chamber_c, ambient, p.door_tau_min)
            self.chamber_c = relax(self.chamber_c, ambient, p.door_tau_min * 10)
        self.chamber_reading_c = self.chamber_c + self._rng.gauss(0.0, p.noise_c)
        self.pick_chamber_reading_c = self.pick_chamber_c + self._rng.gauss(0.0, p.noise_c)

    def snapshot(self) -> dict[str, object]:
        """Inspectable state (the simulator's `status`)."""
        op = self.operation
        return {
            "kind": "tube_store",
            "state": self.state.label,
            "fault_text": self.faulted_text,
            "door_open": self.door_open,
            "refrigeration_failed": self.refrigeration_failed,
            "jammed": self.jammed,
            "chamber_c": round(self.chamber_c, 3),
            "pick_chamber_c": round(self.pick_chamber_c, 3),
            "carousel_tower": self.carousel_tower,
            "operation": None
            if op is None
            else {"id": op.op_id, "method": op.method, "rack": op.rack},
            "completed": {
                "id": self.completed.op_id,
                "method": self.completed.method,
                "status": self.completed.status,
                "duration_s": self.completed.duration_s,
            },
            "racks": {
                rid: {"tower": self.home[rid][0], "shelf": self.home[rid][1], "location": where}
                for rid, where in self.location.items()
            },
        }
