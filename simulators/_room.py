"""A simulated room: every device of a room config that has a `simulation` block, served.

`SimulatedRoom` builds one `SimulatedDevice` per simulated device, one Modbus TCP server per
configured port, one RTU pseudo-terminal per configured serial port path, the control endpoint
and the scenario, and steps the physics on the simulated clock. Devices without a `simulation`
block are not served (they are real hardware, or simulated elsewhere).

Physics advances in fixed steps of `STEP_S` simulated seconds, so a run is reproducible from
the seed whatever the speed; register words follow the models on every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import structlog

from controllerd.config import Config, ProbeConfig, UltFreezerConfig
from controllerd.sim_config import SimulatorSection
from drivers.modbus import ModbusRtuConfig, ModbusTcpConfig
from simulators._clock import SimClock
from simulators._control import ControlServer
from simulators._device import SimulatedDevice
from simulators._errors import FaultError, ScenarioError, SimulatorError
from simulators._scenario import Scenario, load_scenario, run_scenario
from simulators._station import PickStation, default_station
from simulators.ln2 import Ln2Fleet
from simulators.modbus._server import ModbusRtuLine, ModbusTcpServer
from simulators.physics import FreezerModel, ProbeModel
from simulators.picker import PickerFleet
from simulators.store import StoreFleet

_log = structlog.get_logger("simulators")

#: Simulated seconds per physics step.
STEP_S = 1.0
#: Real seconds between two physics catch-ups.
TICK_S = 0.05


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one simulated device is served."""

    device: str
    transport: str
    address: str
    unit_id: int

    def describe(self) -> str:
        """`freezer-1 tcp 127.0.0.1:15021` or `probe-1 rtu /tmp/line unit 1`."""
        if self.transport == "firmware_serial":
            return f"{self.device} firmware_serial {self.address}"
        if self.transport in ("tcp", "opcua"):
            return f"{self.device} tcp {self.address}"
        return f"{self.device} {self.transport} {self.address} unit {self.unit_id}"


def _build_devices(config: Config, section: SimulatorSection) -> dict[str, SimulatedDevice]:
    devices: dict[str, SimulatedDevice] = {}
    freezers: dict[str, FreezerModel] = {}

    def rng(device_id: str) -> random.Random:
        # Seeded by name, so adding a device does not change the others' random draws.
        return random.Random(f"{section.seed}:{device_id}")

    for dev in config.devices:
        if isinstance(dev, UltFreezerConfig) and dev.simulation is not None:
            model = FreezerModel(
                params=dev.simulation, ambient_c=section.ambient_c, rng=rng(dev.id)
            )
            freezers[dev.id] = model
            devices[dev.id] = SimulatedDevice(config=dev, model=model, rng=rng(f"{dev.id}/faults"))
    for dev in config.devices:
        if isinstance(dev, ProbeConfig) and dev.simulation is not None:
            follows = dev.simulation.follows
            if follows is not None and follows not in freezers:
                raise SimulatorError(f"{dev.id}: follows '{follows}', which is not simulated")
            probe = ProbeModel(
                params=dev.simulation,
                ambient_c=section.ambient_c,
                source=freezers.get(follows) if follows else None,
                rng=rng(dev.id),
            )
            devices[dev.id] = SimulatedDevice(config=dev, model=probe, rng=rng(f"{dev.id}/faults"))
    return devices


class SimulatedRoom:
    """Serves a room's simulated devices while entered (`async with`).

    `speed` and `control_socket` override `[simulator]`; `config_dir` is where a relative
    scenario path starts (the config file's directory); `scenario=False` skips the scenario.
    Raises SimulatorError (FaultError, ScenarioError) for a room it cannot simulate.
    """

    def __init__(
        self,
        *,
        config: Config,
        config_dir: Path | None = None,
        speed: float | None = None,
        control_socket: Path | None = None,
        scenario: bool = True,
    ) -> None:
        if config.simulator is None:
            raise SimulatorError("the config has no [simulator] section")
        self.section = config.simulator
        self.speed = speed if speed is not None else self.section.speed
        if not self.speed > 0:
            raise SimulatorError(f"speed must be positive, got {self.speed}")
        self.control_socket = control_socket or self.section.control_socket
        self.devices = _build_devices(config, self.section)
        self.tanks = Ln2Fleet.from_config(config, self.section)
        #: the pick station the stores fill and the picker works on
        self.station: PickStation = default_station()
        self.stores = StoreFleet.from_config(
            config,
            self.section,
            station=self.station,
            now=lambda: self.clock.now(),
            config_dir=config_dir,
        )
        self.pickers = PickerFleet.from_config(
            config, self.section, station=self.station, clock=lambda: self.clock
        )
        if not self.devices and not self.tanks and not self.stores and not self.pickers:
            raise SimulatorError("no device in the config has a simulation block")
        self.scenario: Scenario | None = None
        if scenario and self.section.scenario is not None:
            path = self.section.scenario
            if not path.is_absolute() and config_dir is not None:
                path = config_dir / path
            self.scenario = load_scenario(path)
            self._check_scenario(self.scenario, str(path))
        self.clock = SimClock(speed=self.speed)
        self.tcp_servers: list[ModbusTcpServer] = []
        self.rtu_lines: list[ModbusRtuLine] = []
        self._server_of: dict[str, ModbusTcpServer] = {}
        self._stack: contextlib.AsyncExitStack | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._running: list[asyncio.Task[None]] = []
        self._stepped_s = 0.0

    def _check_scenario(self, scenario: Scenario, source: str) -> None:
        problems = []
        for index, step in enumerate(scenario.steps):
            device = (
                self.devices.get(step.device)
                or self.tanks.get(step.device)
                or self.stores.get(step.device)
                or self.pickers.get(step.device)
            )
            if device is None:
                problems.append(f"steps[{index}].device: '{step.device}' is not simulated")
                continue
            try:
                device.check_fault(step.fault)
            except FaultError as exc:
                problems.append(f"steps[{index}].fault: {exc}")
        if problems:
            raise ScenarioError(f"{source}: " + "; ".join(problems))

    @property
    def endpoints(self) -> list[Endpoint]:
        """Where each device is served, in config order."""
        result = []
        for device in self.devices.values():
            link = device.config.driver
            if isinstance(link, ModbusTcpConfig):
                result.append(Endpoint(device.id, "tcp", f"127.0.0.1:{link.port}", link.unit_id))
            else:
                result.append(Endpoint(device.id, "rtu", link.port, link.unit_id))
        for tank in self.tanks.tanks.values():
            result.append(Endpoint(tank.id, "ln2", tank.port, tank.address))
        for store in self.stores.stores.values():
            result.append(Endpoint(store.id, "opcua", store.url, 0))
        for picker in self.pickers.pickers.values():
            result.append(Endpoint(picker.id, "firmware_serial", str(picker.path), 0))
        return result

    def ready_line(self) -> str:
        """`simulators ready: freezer-1 tcp 127.0.0.1:15021, probe-1 rtu PATH unit 1, ...`."""
        return "simulators ready: " + ", ".join(e.describe() for e in self.endpoints)

    async def __aenter__(self) -> Self:
        tcp: dict[int, dict[int, SimulatedDevice]] = defaultdict(dict)
        rtu: dict[str, dict[int, SimulatedDevice]] = defaultdict(dict)
        silence: dict[str, float] = {}
        for device in self.devices.values():
            link = device.config.driver
            if isinstance(link, ModbusRtuConfig):
                rtu[link.port][link.unit_id] = device
                if link.port not in silence and (link.parity != "N" or link.bytesize != 8):
                    # The pty driver drops PARENB and CS7, and glibc's tcsetattr then fails
                    # with EINVAL: a client asking for them cannot open the line.
                    _log.warning(
                        "a pseudo-terminal cannot carry parity or 7-bit characters; "
                        "clients should open it with parity N, 8 bits",
                        path=link.port,
                        parity=link.parity,
                        bytesize=link.bytesize,
                    )
                silence[link.port] = link.gap_s
            else:
                tcp[link.port][link.unit_id] = device
        async with contextlib.AsyncExitStack() as stack:
            for port, units in tcp.items():
                server = await stack.enter_async_context(ModbusTcpServer(port=port, devices=units))
                self.tcp_servers.append(server)
                self._server_of.update({device.id: server for device in units.values()})
            for path, units in rtu.items():
                line = ModbusRtuLine(path=Path(path), devices=units, silence_s=silence[path])
                self.rtu_lines.append(await stack.enter_async_context(line))
            await stack.enter_async_context(self.tanks)
            await stack.enter_async_context(self.stores)
            await stack.enter_async_context(self.pickers)
            await stack.enter_async_context(ControlServer(path=self.control_socket, target=self))
            self._tasks = await stack.enter_async_context(asyncio.TaskGroup())
            self.clock = SimClock(speed=self.speed)
            self._stepped_s = 0.0
            self._running.append(self._tasks.create_task(self._physics(), name="physics"))
            if self.scenario is not None:
                self._running.append(
                    self._tasks.create_task(
                        run_scenario(self.scenario, clock=self.clock, inject=self._scenario_inject),
                        name="scenario",
                    )
                )
            self._stack = stack.pop_all()
        for endpoint in self.endpoints:
            _log.info(
                "serving",
                device=endpoint.device,
                transport=endpoint.transport,
                address=endpoint.address,
                unit_id=endpoint.unit_id,
            )
        _log.info("control endpoint", socket=str(self.control_socket), speed=self.speed)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._running:
            task.cancel()
        self._running.clear()
        stack, self._stack, self._tasks = self._stack, None, None
        self.tcp_servers.clear()
        self.rtu_lines.clear()
        self._server_of.clear()
        if stack is not None:
            await stack.aclose()

    def step_to(self, sim_time_s: float) -> None:
        """Advance every model in fixed steps up to `sim_time_s` (freezers before probes)."""
        while self._stepped_s + STEP_S <= sim_time_s:
            for device in self.devices.values():
                if isinstance(device.model, FreezerModel):
                    device.model.step(STEP_S)
            for device in self.devices.values():
                if isinstance(device.model, ProbeModel):
                    device.model.step(STEP_S)
            self.tanks.step(STEP_S)
            self._stepped_s += STEP_S

    async def _physics(self) -> None:
        while True:
            self.step_to(self.clock.now())
            await asyncio.sleep(TICK_S)

    async def _scenario_inject(self, device: str, fault: str, clear: bool) -> None:
        await self.inject(device, fault, clear=clear)

    async def inject(self, device: str, fault: str, *, clear: bool = False) -> None:
        """Inject (or clear) a fault; FaultError when the device or fault is not possible."""
        store = self.stores.get(device)
        if store is not None:
            if await store.inject(fault, clear=clear):
                _log.info(
                    "fault cleared" if clear else "fault injected",
                    device=device,
                    fault=fault,
                    sim_time_s=round(self.clock.now(), 1),
                )
            return
        target = self.devices.get(device) or self.tanks.get(device) or self.pickers.get(device)
        if target is None:
            known = [*self.devices, *self.tanks.tanks, *self.stores.stores, *self.pickers.pickers]
            raise FaultError(
                f"no simulated device '{device}' (simulated: {', '.join(known)})",
                device=device,
                fault=fault,
            )
        if target.inject(fault, clear=clear):
            _log.info(
                "fault cleared" if clear else "fault injected",
                device=device,
                fault=fault,
                sim_time_s=round(self.clock.now(), 1),
            )
        server = self._server_of.get(device)
        if server is not None:
            await server.sync()

    def status(self) -> dict[str, Any]:
        """Simulated time, speed, and every device's state."""
        return {
            "sim_time_s": round(self.clock.now(), 3),
            "speed": self.speed,
            "devices": {device.id: device.state() for device in self.devices.values()}
            | self.tanks.status()
            | self.stores.status()
            | self.pickers.status(),
            "station": self.station.snapshot(),
        }
