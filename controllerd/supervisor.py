"""The supervisor: owns the daemon's task group, its devices, its MQTT session and systemd.

Start-up brings every device up in parallel (one dead device never blocks another) while the
planner's worker warms up, then tells systemd READY=1 (after `STARTUP_WAIT_S` at most); the
watchdog is fed only while every poll loop keeps making progress, so a hung loop gets the daemon
restarted instead of silently publishing nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Any, Literal, Self

import structlog
from pydantic import Field

from controllerd._tasks import BackgroundTasks
from controllerd._time import utc_now
from controllerd.alarms.service import AlarmService
from controllerd.commands import CommandBase, CommandContext, CommandRouter
from controllerd.config import (
    Config,
    DeviceConfig,
    Ln2TankConfig,
    ProbeConfig,
    TubePickerConfig,
    TubeStoreConfig,
    UltFreezerConfig,
)
from controllerd.jobs import JobManager
from controllerd.ln2 import FillCommand, Ln2Tank, apply_fill
from controllerd.mqtt import MqttConnection
from controllerd.outbox import FILE_NAME as OUTBOX_FILE
from controllerd.outbox import Outbox, open_state_db
from controllerd.poller import DevicePoller
from controllerd.sdnotify import SystemdNotifier
from controllerd.statedb import StateDb
from controllerd.store import TubeStore
from controllerd.topics import HeartbeatPayload, Topics
from drivers import Driver
from drivers.ln2.client import Ln2Driver, ln2_line
from drivers.modbus_client import ModbusDriver, ModbusLinks
from drivers.opcua import OpcUaStoreDriver
from drivers.serial_line import SerialLines
from firmware_bridge import PickerDriver

_log = structlog.get_logger("controllerd.supervisor")

#: How long start-up waits for every device's first poll before declaring READY anyway.
STARTUP_WAIT_S = 10.0


def build_driver(
    device: DeviceConfig, links: ModbusLinks, *, serial_lines: SerialLines | None = None
) -> Driver:
    """The driver for a device's kind and link (one branch per driver family)."""
    if isinstance(device, Ln2TankConfig):
        if serial_lines is None:
            raise TypeError("an ln2_tank needs the daemon's serial line pool")
        driver = Ln2Driver(
            device_id=device.id, link=ln2_line(serial_lines, device.driver), config=device.driver
        )
        return Ln2Tank(config=device, driver=driver)
    if isinstance(device, UltFreezerConfig | ProbeConfig):
        return ModbusDriver(
            device_id=device.id,
            link=links.link_for(device.driver),
            unit_id=device.driver.unit_id,
            registers=device.registers,
        )
    if isinstance(device, TubeStoreConfig):
        return OpcUaStoreDriver(device_id=device.id, config=device.driver)
    if isinstance(device, TubePickerConfig):
        return PickerDriver(device_id=device.id, config=device.driver, motion=device.motion)
    raise TypeError(f"no driver for device kind {device.kind!r}")


class FillRequest(CommandBase):
    """`BASE/cmd/fill`: start or stop a fill of one LN2 tank (see controllerd.ln2)."""

    tank: str = Field(min_length=1, max_length=64)
    action: Literal["start", "stop"]


class Supervisor:
    """Runs one room: `async with Supervisor(config=...) as sup: await sup.wait_stopped()`."""

    def __init__(self, *, config: Config, notifier: SystemdNotifier | None = None) -> None:
        self._config = config
        self._notifier = notifier or SystemdNotifier()
        self.topics = Topics(
            prefix=config.mqtt.prefix, site=config.controller.site, controller=config.controller.id
        )
        self._exit = contextlib.AsyncExitStack()
        #: the poll loops, the watchdog and the heartbeat
        self._tasks = BackgroundTasks()
        self.pollers: list[DevicePoller] = []
        #: the room's tube stores by device id (their methods, for the pick jobs)
        self.stores: dict[str, TubeStore] = {}
        #: the room's LN2 tanks by device id (for `controllerd.ln2.apply_fill`)
        self.tanks: dict[str, Ln2Tank] = {}
        #: the room's tube pickers by device id (`.motion` is their API, for the pick jobs)
        self.pickers: dict[str, PickerDriver] = {}
        self.mqtt: MqttConnection | None = None
        self.db: StateDb | None = None
        self.commands: CommandRouter | None = None
        #: the durable movement outbox and the pick jobs (controllerd.outbox, controllerd.jobs)
        self.outbox: Outbox | None = None
        self.jobs: JobManager | None = None
        self.alarms: AlarmService
        self._status_line = ""

    async def __aenter__(self) -> Self:
        cfg = self._config
        cfg.controller.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            links = await self._exit.enter_async_context(ModbusLinks())
            serial_lines = await self._exit.enter_async_context(SerialLines())
            self.db = await self._exit.enter_async_context(
                StateDb(path=cfg.controller.state_dir / "controllerd.db")
            )
            mqtt = MqttConnection(config=cfg, topics=self.topics)
            self.commands = CommandRouter(operators=cfg.operators, db=self.db, reply=mqtt.reply)
            mqtt.subscribe(self.topics.commands, self.commands.handle)
            self.commands.register("fill", model=FillRequest, permission="fill", handler=self._fill)
            self.alarms = AlarmService(
                config=cfg, mqtt=mqtt, topics=self.topics, db=self.db, commands=self.commands
            )
            # Movements and the job journal share one SQLite file (one transaction per tube).
            jobs_db = open_state_db(cfg.controller.state_dir / OUTBOX_FILE)
            self._exit.callback(jobs_db.close)
            self.outbox = Outbox(
                db=jobs_db,
                mqtt=mqtt,
                topic=self.topics.movements,
                telemetry_topic=self.topics.controller_telemetry,
                window=cfg.jobs.window,
                republish_s=cfg.jobs.republish_s,
            )
            mqtt.subscribe(self.topics.inventory_ack, self.outbox.handle_ack)
            self.jobs = JobManager(
                config=cfg,
                db=jobs_db,
                outbox=self.outbox,
                mqtt=mqtt,
                topics=self.topics,
                stores=self.stores,
                pickers=self.pickers,
                alarms=self.alarms.engine,
            )
            self.jobs.register(self.commands)
            self.mqtt = await self._exit.enter_async_context(mqtt)
            await self._exit.enter_async_context(self.outbox)
            await self._exit.enter_async_context(self.alarms)
            await self._tasks.start()
            self._exit.push_async_callback(self._tasks.close)
            for device in cfg.devices:
                driver = build_driver(device, links, serial_lines=serial_lines)
                if isinstance(driver, Ln2Tank):
                    self.tanks[device.id] = driver
                if isinstance(driver, PickerDriver):
                    # The picker's link owns its heartbeat task; closing it stops any motion.
                    self.pickers[device.id] = await self._exit.enter_async_context(driver)
                if isinstance(driver, OpcUaStoreDriver) and isinstance(device, TubeStoreConfig):
                    # The store owns its session task and keeps the specimen map loaded.
                    self.stores[device.id] = await self._exit.enter_async_context(
                        TubeStore(device=device, driver=driver, state_dir=cfg.controller.state_dir)
                    )
                poller = DevicePoller(
                    device=device,
                    driver=driver,
                    mqtt=self.mqtt,
                    topics=self.topics,
                    alarms=self.alarms.engine,
                )
                self.pollers.append(poller)
                self._tasks.spawn(poller.run(), name=f"poll-{device.id}")
            # Jobs start once the devices exist (an interrupted job is reconciled first).
            await self._exit.enter_async_context(self.jobs)
            self._tasks.spawn(self._watch(), name="watchdog")
            self._tasks.spawn(self._heartbeat(), name="heartbeat")
            await self._startup()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._notifier.stopping()
        # The poll loops stop first (whatever else the exit stack closes after them).
        await self._tasks.close()
        await self._exit.aclose()
        _log.info("stopped")

    async def _startup(self) -> None:
        firsts: list[asyncio.Future[bool]] = [
            asyncio.ensure_future(p.first_cycle_done.wait()) for p in self.pollers
        ]
        planner = self.jobs.batcher if self.jobs is not None else None
        if planner is not None:
            # READY means full plans: the planner's worker warms up while devices connect.
            firsts.append(asyncio.ensure_future(planner.ready()))
        if firsts:
            _, pending = await asyncio.wait(firsts, timeout=STARTUP_WAIT_S)
            for fut in pending:
                fut.cancel()
        up = [p.device.id for p in self.pollers if p.connected]
        down = {p.device.id: p.error or "no answer yet" for p in self.pollers if not p.connected}
        if down:
            _log.warning("started with devices down", connected=up, down=down)
        else:
            _log.info("started", devices=len(up))
        if planner is not None and planner.state == "starting":
            _log.warning("planner worker not warm yet: quick numpy-only plans until it is")
        self._notifier.ready(self._status())

    def _status(self) -> str:
        up = sum(1 for p in self.pollers if p.connected)
        broker = "broker connected" if self.mqtt and self.mqtt.connected else "broker down"
        planner = self.jobs.batcher if self.jobs is not None else None
        plans = f"planner {planner.state}, " if planner is not None else ""
        return f"{plans}{up}/{len(self.pollers)} devices connected, {broker}"

    async def _fill(self, cmd: FillRequest, ctx: CommandContext) -> dict[str, Any]:
        return await apply_fill(FillCommand(tank=cmd.tank, action=cmd.action), self.tanks)

    async def _heartbeat(self) -> None:
        """`BASE/heartbeat`: the sentinel pages when these stop (a hung or dead daemon)."""
        assert self.mqtt is not None
        seq = 0
        while True:
            seq += 1
            stalled = self.stalled_pollers()
            if not stalled:  # a hung poll loop must look as dead to the sentinel as it is
                payload = HeartbeatPayload(
                    ts=utc_now(),
                    seq=seq,
                    devices_connected=sum(1 for p in self.pollers if p.connected),
                    devices=len(self.pollers),
                    alarms_active=self.alarms.engine.active_count(),
                )
                await self.mqtt.publish(self.topics.heartbeat, payload.to_json())
            await asyncio.sleep(self._config.controller.heartbeat_s)

    def stalled_pollers(self) -> list[str]:
        """Poll loops that have not completed a cycle for far longer than they should."""
        now = time.monotonic()
        stalled = []
        for poller in self.pollers:
            budget = poller.device.poll_interval_s * 3 + poller.device.read_budget_s() * 4 + 5.0
            if now - poller.last_cycle > budget:
                stalled.append(poller.device.id)
        return stalled

    async def _watch(self) -> None:
        period = (self._notifier.watchdog_s or 10.0) / 2
        was_stalled: list[str] = []
        while True:
            stalled = self.stalled_pollers()
            if stalled:
                if stalled != was_stalled:
                    _log.error("poll loops stalled; withholding the watchdog", devices=stalled)
            else:
                self._notifier.watchdog()
            was_stalled = stalled
            status = self._status()
            if status != self._status_line:
                self._status_line = status
                self._notifier.status(status)
            await asyncio.sleep(min(period, 5.0))
