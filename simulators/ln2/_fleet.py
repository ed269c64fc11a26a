"""The simulated LN2 tanks of a room: their models, controllers and lines, stepped together.

`Ln2Fleet.from_config` builds one `SimulatedTank` per `ln2_tank` device with a `simulation`
block; entering the fleet serves them, one `Ln2PtyLine` per device path and one `Ln2TcpServer`
per `socket://` port (several tanks on one line share it).
"""

from __future__ import annotations

import contextlib
import random
from collections import defaultdict
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from controllerd.config import Config, Ln2TankConfig
from controllerd.sim_config import SimulatorSection
from simulators._errors import FaultError
from simulators.ln2._physics import TankModel
from simulators.ln2._server import Ln2PtyLine, Ln2TcpServer
from simulators.ln2._tank import SimulatedTank


def tcp_port(url: str) -> int | None:
    """The TCP port of `socket://host:port`, None for a device path."""
    if not url.startswith("socket://"):
        return None
    port = urlsplit(url).port
    assert port is not None  # Ln2SerialConfig validated it
    return port


class Ln2Fleet:
    """Every simulated tank of a room, and the lines that serve them while entered."""

    def __init__(self, *, tanks: dict[str, SimulatedTank]) -> None:
        self.tanks = tanks
        self.lines: dict[str, Ln2PtyLine | Ln2TcpServer] = {}
        self._stack: contextlib.AsyncExitStack | None = None

    @classmethod
    def from_config(cls, config: Config, section: SimulatorSection) -> Ln2Fleet:
        tanks = {}
        for dev in config.devices:
            if isinstance(dev, Ln2TankConfig) and dev.simulation is not None:
                model = TankModel(
                    params=dev.simulation,
                    ambient_c=section.ambient_c,
                    rng=random.Random(f"{section.seed}:{dev.id}"),
                    start_pct=dev.fill.start_pct,
                    stop_pct=dev.fill.stop_pct,
                )
                tanks[dev.id] = SimulatedTank(
                    config=dev, model=model, rng=random.Random(f"{section.seed}:{dev.id}/faults")
                )
        return cls(tanks=tanks)

    def __bool__(self) -> bool:
        return bool(self.tanks)

    def get(self, device: str) -> SimulatedTank | None:
        return self.tanks.get(device)

    async def __aenter__(self) -> Self:
        by_port: dict[str, dict[int, SimulatedTank]] = defaultdict(dict)
        for tank in self.tanks.values():
            by_port[tank.port][tank.address] = tank
        async with contextlib.AsyncExitStack() as stack:
            for port, tanks in by_port.items():
                tcp = tcp_port(port)
                line: Ln2PtyLine | Ln2TcpServer = (
                    Ln2PtyLine(path=Path(port), tanks=tanks)
                    if tcp is None
                    else Ln2TcpServer(port=tcp, tanks=tanks)
                )
                self.lines[port] = await stack.enter_async_context(line)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self.lines.clear()
        if stack is not None:
            await stack.aclose()

    def step(self, dt_s: float) -> None:
        for tank in self.tanks.values():
            tank.model.step(dt_s)

    def inject(self, device: str, fault: str, *, clear: bool = False) -> bool:
        tank = self.tanks.get(device)
        if tank is None:
            raise FaultError(f"no simulated tank '{device}'", device=device, fault=fault)
        return tank.inject(fault, clear=clear)

    async def unplug(self, port: str) -> None:
        """Pull a line's plug: the pty vanishes, or the TCP adapter drops off the network."""
        line = self.lines[port]
        if isinstance(line, Ln2PtyLine):
            line.unplug()
        else:
            await line.aunplug()

    async def replug(self, port: str) -> None:
        line = self.lines[port]
        if isinstance(line, Ln2PtyLine):
            line.replug()
        else:
            await line.areplug()

    def status(self) -> dict[str, dict[str, Any]]:
        return {tank.id: tank.state() for tank in self.tanks.values()}
