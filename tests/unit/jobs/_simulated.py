"""The executor's store and picker on the simulators' pure models, on a virtual clock.

`SimulatedCell` holds a `PickStation`, a `StoreModel` and a `PickerModel` (the same state
machines the simulator servers run) and exposes them through the executor's `StoreOps` and
`MotionOps` interfaces: each operation runs to completion at once and advances the virtual
clock by its simulated duration. No sockets, no OPC UA, no serial link: what is measured or
tested is the executor's logic on the real device models. Used by tests/unit/jobs and by
bench/jobs.py.
"""

from __future__ import annotations

import asyncio
import random

from controllerd.sim_config import StoreSimulation
from drivers import DeviceRejected
from drivers.opcua_model import Inventory, RackRecord
from firmware_bridge import (
    AxisMotion,
    CommandRejected,
    CommunicationLost,
    MotionConfig,
    MotionFault,
    PickerStatus,
    Position,
)
from simulators._station import PickStation, SimRack, default_station
from simulators.picker._model import PickerModel
from simulators.store._model import StoreModel, StoreRejected

MOTION = MotionConfig(
    x=AxisMotion(v_mm_s=400.0, a_mm_s2=2000.0),
    y=AxisMotion(v_mm_s=300.0, a_mm_s2=1500.0),
    pick_s=1.2,
    place_s=1.0,
    scan_s=0.3,
)


#: How long a silent controller keeps a request waiting before the link gives up (virtual s).
SILENT_TIMEOUT_S = 2.0


class VirtualClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        """The executor's backoff waits, on virtual time."""
        self.now += seconds
        await asyncio.sleep(0)


class SimulatedCell:
    """A store and a picker sharing a pick station, advanced on `clock`."""

    def __init__(self, *, racks: int = 30, seed: int = 1, tube_fill: float = 0.75) -> None:
        self.clock = VirtualClock()
        self.station: PickStation = default_station()
        self.store_model = StoreModel(
            params=StoreSimulation(
                racks=racks, tube_fill=tube_fill, towers=max(4, -(-racks // 10))
            ),
            ambient_c=22.0,
            station=self.station,
            rng=random.Random(seed),
        )
        self.picker = PickerModel(station=self.station, motion=MOTION, travel_mm=(700.0, 200.0))
        self.misread: set[str] = set()
        #: this many next moves jam (then the gantry moves again)
        self.jam_moves = 0
        #: every move and home jams while set (an injected jam, until cleared)
        self.jammed = False
        #: a move that starts with a tube in the gripper sets `jammed`
        self.jam_when_carrying = False
        #: the controller does not answer (every request, status included, times out)
        self.silent = False
        self._seq = 0

    # ------------------------------------------------------------------ StoreOps

    async def _operate(self, start: tuple[int, float]) -> float:
        _, duration = start
        self.store_model.step(duration + 1e-6)
        self.clock.now += duration
        await asyncio.sleep(0)
        return duration

    async def retrieve_rack(self, rack: str, port: str) -> float:
        try:
            return await self._operate(self.store_model.retrieve(rack, port))
        except StoreRejected as exc:
            raise DeviceRejected(
                f"{exc.status}: {exc.message}", code=0, device="store-1", operation="retrieve"
            ) from exc

    async def store_rack(self, rack: str) -> float:
        return await self._operate(self.store_model.store(rack))

    async def scan_rack(self, rack: str) -> float:
        return await self._operate(self.store_model.scan(rack))

    async def load_inventory(self) -> Inventory:
        """The store's inventory as its OPC UA model would report it."""
        model = self.store_model
        racks = tuple(
            RackRecord(
                rack_id=rack,
                tower=model.home[rack][0],
                shelf=model.home[rack][1],
                location=model.location[rack],
                tubes=dict(model.scanned[rack]),
            )
            for rack in sorted(model.racks)
        )
        ports = {port: rack.rack_id if rack else None for port, rack in self.station.racks.items()}
        return Inventory(racks=racks, ports=ports)

    def rack_tubes(self, rack: str) -> dict[str, str]:
        """position -> barcode of a store rack as it physically is."""
        return {pos: code for pos, code in self.store_model.racks[rack].tubes.items() if code}

    @property
    def output(self) -> SimRack:
        rack = self.station.racks["OUT"]
        assert rack is not None
        return rack

    # ------------------------------------------------------------------ MotionOps

    def _check_answering(self, op: str) -> None:
        if self.silent:
            self.clock.now += SILENT_TIMEOUT_S
            raise CommunicationLost(f"{op}: no reply", retry_in_s=1.0, operation=op)

    async def _motion(self, op: str, x_mm: float = 0.0, y_mm: float = 0.0) -> str | None:
        self._check_answering(op)
        self._seq += 1
        if op == "move" and self.jam_when_carrying and self.picker.holding is not None:
            self.jammed = True
        if op == "move" and self.jam_moves:
            self.jam_moves -= 1
            self.picker.jam = True
        if op in ("move", "home") and self.jammed:
            self.picker.jam = True
        code = self.picker.begin(op=op, seq=self._seq, now_s=self.clock.now, x_mm=x_mm, y_mm=y_mm)
        if code is not None:
            raise CommandRejected(code.name, code=int(code), code_name=code.name, operation=op)
        current = self.picker.current
        assert current is not None
        self.clock.now = current.end_s
        fault, barcode = self.picker.finish(self.clock.now)
        self.picker.jam = False
        await asyncio.sleep(0)
        if fault is not None:
            raise MotionFault(fault.name, code=int(fault), code_name=fault.name, operation=op)
        if op == "scan" and barcode in self.misread:
            self.misread.discard(barcode)
            return None
        return barcode

    def _position(self) -> Position:
        return Position(x_mm=self.picker.x_mm, y_mm=self.picker.y_mm, z_mm=0.0)

    async def home(self) -> Position:
        await self._motion("home")
        return self._position()

    async def move_to(self, *, x_mm: float, y_mm: float) -> Position:
        await self._motion("move", x_mm, y_mm)
        return self._position()

    async def pick(self) -> Position:
        await self._motion("pick")
        return self._position()

    async def place(self) -> Position:
        await self._motion("place")
        return self._position()

    async def scan(self) -> str | None:
        return await self._motion("scan")

    async def status(self) -> PickerStatus:
        self._check_answering("status")
        await asyncio.sleep(0)
        return PickerStatus(
            position=self._position(),
            homed=self.picker.homed,
            holding=self.picker.holding is not None,
            moving=self.picker.current is not None,
            estop=self.picker.estop,
            faults=(),
        )
