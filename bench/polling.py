"""Polling benchmark: the daemon's Modbus poll path against a bare pymodbus loop, side by side.

For each room size N (default 50 and 200) the bench writes a room of N simulated ULT freezers on
Modbus TCP (the demo's freezer-1 register map: one holding and one input read per poll), serves
it from `python -m simulators run` in a separate process (its CPU counts against no client),
starts a private Mosquitto, and measures in this process, on the same devices for the same time:

- bare: one `AsyncModbusTcpClient` per device reading the daemon's read blocks (`plan_reads`),
  same timeout and retries as the daemon's links, no decoding, nothing published;
- path: the daemon's own code (`build_driver` → `ModbusDriver` → `ModbusLink`, which times
  and retries each attempt itself on pymodbus's transport and framing, `DevicePoller.poll_once`
  publishing telemetry to the broker through `MqttConnection`, and the `AlarmEngine` fed every
  poll, as the supervisor wires them).

Each is run flat out (every device read back to back) and paced (every device on
`DevicePoller.run`'s fixed-rate schedule, `--paced-rate` reads/s per room, the same for both).
Flat out, the loop that reads faster batches more work per event-loop turn and per syscall, so
its CPU per read drops for reasons that have nothing to do with its code (bare runs 2-3 times
the path's rate there); paced, both do the same reads at the same rate, as the daemon does, so
the paced overhead is the like-for-like one. The paced rounds also build the path up one layer
at a time (driver, poller, MQTT, alarm engine) to show what each layer costs.

Rounds alternate bare and path, each after a 1 s warm-up that is not counted and a full garbage
collection (a round's own start-up objects are not collected inside its window). CPU per read is
this process's `time.process_time()` over completed device reads; the overhead is
path / bare - 1 on the medians. Then the real daemon (`python -m controllerd run`) polls the
room every 0.5 s; its CPU comes from /proc/PID/stat and its reads are the telemetry messages
counted on the broker. Results go to `bench/RESULTS.md` under `## Polling`.

Run: `.venv/bin/python bench/polling.py` (`--profile [paced|flat]` prints a cProfile of one
path round instead; `--no-write` leaves RESULTS.md alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import os
import platform
import pstats
import select
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiomqtt
import pymodbus
import tomli_w
from _results import write_section  # bench/ is sys.path[0] when run as a script
from pymodbus.client import AsyncModbusTcpClient

from controllerd.alarms.engine import AlarmEngine
from controllerd.broker import PrivateBroker, free_port
from controllerd.config import Config, UltFreezerConfig, load_config
from controllerd.logs import configure_logging
from controllerd.mqtt import MqttConnection
from controllerd.poller import DevicePoller
from controllerd.statedb import StateDb
from controllerd.supervisor import build_driver
from controllerd.topics import Topics
from drivers import Driver
from drivers.modbus import ModbusTcpConfig, plan_reads
from drivers.modbus_client import ModbusLinks

REPO = Path(__file__).resolve().parents[1]
AIM_OVERHEAD = 0.25
DAEMON_INTERVAL_S = 0.5
TIMEOUT_S = 2.0  # the demo's 0.5 s is tight for N clients hammering one simulator process
WARMUP_S = 1.0
#: Room-wide read rate of the paced rounds: well under what either loop manages flat out here.
PACED_RATE = 1000.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


class _WarningCount(logging.Handler):
    """Counts aiomqtt's warnings ("There are N pending publish calls"); the daemon logs them too."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


MQTT_WARNINGS = _WarningCount()


@dataclass(frozen=True)
class Round:
    """One measured window."""

    reads: int
    wall_s: float
    cpu_s: float
    server_cpu_s: float
    failed: int = 0

    @property
    def rate(self) -> float:
        return self.reads / self.wall_s

    @property
    def us_per_read(self) -> float:
        return self.cpu_s / max(self.reads, 1) * 1e6


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def room_data(n: int, workdir: Path, broker_port: int) -> dict[str, Any]:
    demo = tomllib.loads((REPO / "config" / "demo.toml").read_text(encoding="utf-8"))
    freezer = demo["devices"][0]
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    devices = [
        {
            "id": f"freezer-{i:03d}",
            "kind": "ult_freezer",
            "poll_interval_s": DAEMON_INTERVAL_S,
            "driver": {"type": "modbus_tcp", "host": "127.0.0.1", "port": port},
            "simulation": freezer["simulation"],
            "registers": freezer["registers"],
        }
        for i, port in enumerate(sorted(ports), start=1)
    ]
    for device in devices:
        device["driver"]["timeout_s"] = TIMEOUT_S
    return {
        "controller": {"site": "bench", "id": "room-1", "state_dir": str(workdir / "state")},
        "mqtt": {"host": "127.0.0.1", "port": broker_port},
        "logging": {"level": "warning", "format": "json"},
        "simulator": {"control_socket": str(workdir / "sim.sock"), "speed": 1.0, "seed": 7},
        "devices": devices,
    }


def start_process(
    args: list[str], log: TextIO, *, ready: str | None = None
) -> subprocess.Popen[str]:
    """Start `python -m ...`; with `ready`, wait for a stdout line starting with it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        stdout=subprocess.PIPE if ready else log,
        stderr=log,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    if ready is None:
        return proc
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            line = proc.stdout.readline()
            if line.startswith(ready):
                # Keep draining stdout so the child never blocks on a full pipe.
                threading.Thread(target=proc.stdout.read, daemon=True).start()
                return proc
            if not line:
                break
    stop_process(proc)
    raise RuntimeError(f"{args[0]} did not print '{ready}' (see {log.name})")


def stop_process(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def measure(
    loops: list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]],
    reads: Callable[[], int],
    seconds: float,
    server_pid: int,
    profiler: cProfile.Profile | None = None,
) -> Round:
    """Run the loops; count reads and CPU over `seconds` after the warm-up, then stop them.

    The loops stop at `stop` rather than by cancellation: Python 3.11's `asyncio.wait_for`
    (inside pymodbus) drops a cancel that lands as the response arrives, so a flat-out loop
    can survive `Task.cancel()`.
    """
    stop = asyncio.Event()
    async with asyncio.TaskGroup() as group:
        for loop in loops:
            group.create_task(loop(stop))
        await asyncio.sleep(WARMUP_S)
        # Each round builds its loops' objects first (the path: an alarm engine, MQTT session,
        # pollers); as they aged through the GC generations they set off a full collection of
        # the whole heap inside 4 of 6 path windows of 4 s (19-34 µs per read there) and in no
        # bare window at 50 devices: a start-up cost, which a daemon pays once. With a
        # collection before every window, bare or path, none landed in a window; what a window
        # sees are the steady state's own (young) collections.
        gc.collect()
        if profiler is not None:
            profiler.enable()
        r0, c0, s0, t0 = reads(), time.process_time(), proc_cpu_s(server_pid), time.perf_counter()
        await asyncio.sleep(seconds)
        r1, c1, s1, t1 = reads(), time.process_time(), proc_cpu_s(server_pid), time.perf_counter()
        if profiler is not None:
            profiler.disable()
        stop.set()
    return Round(reads=r1 - r0, wall_s=t1 - t0, cpu_s=c1 - c0, server_cpu_s=s1 - s0)


Loop = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


def looper(read_once: Callable[[], Coroutine[Any, Any, None]], interval_s: float | None) -> Loop:
    """Repeat one device read until `stop`: flat out, or on DevicePoller.run's fixed-rate tick."""

    async def loop(stop: asyncio.Event) -> None:
        next_tick = time.monotonic()
        while not stop.is_set():
            await read_once()
            if interval_s is None:
                continue
            next_tick += interval_s
            now = time.monotonic()
            if next_tick < now:
                next_tick = now + interval_s - (now - next_tick) % interval_s
            await asyncio.sleep(next_tick - now)

    return loop


async def bare_round(
    config: Config, seconds: float, server_pid: int, interval_s: float | None = None
) -> Round:
    """(a) One pymodbus client per device, looping the daemon's read blocks."""
    devices = [d for d in config.devices if isinstance(d, UltFreezerConfig)]
    links = [d.driver for d in devices if isinstance(d.driver, ModbusTcpConfig)]
    assert len(links) == len(config.devices), "the bench room is Modbus TCP freezers only"
    clients = [
        AsyncModbusTcpClient(
            link.host,
            port=link.port,
            timeout=link.timeout_s,
            retries=link.retries,
            reconnect_delay=0,
        )
        for link in links
    ]
    done = [0]

    def reader(
        client: AsyncModbusTcpClient, registers: Any, unit: int
    ) -> Callable[[], Coroutine[Any, Any, None]]:
        blocks = plan_reads(registers)

        async def read_once() -> None:
            for block in blocks:
                method = (
                    client.read_holding_registers
                    if block.table == "holding"
                    else client.read_input_registers
                )
                response = await method(block.start, count=block.count, device_id=unit)
                if response.isError():
                    raise RuntimeError(f"bare read failed: {response}")
            done[0] += 1

        return read_once

    try:
        if not all(await asyncio.gather(*(c.connect() for c in clients))):
            raise RuntimeError("a bare client could not connect")
        loops = [
            looper(reader(c, d.registers, link.unit_id), interval_s)
            for c, d, link in zip(clients, devices, links, strict=True)
        ]
        return await measure(loops, lambda: done[0], seconds, server_pid)
    finally:
        for client in clients:
            client.close()


#: The daemon path built up one layer at a time (paced rounds): what each layer costs.
STAGES = {
    "driver": "ModbusDriver → ModbusLink → pymodbus, decoded",
    "poller": "+ DevicePoller: stale check, telemetry JSON (publisher discards it)",
    "mqtt": "+ telemetry published to the broker",
    "alarms": "+ alarm engine fed every poll: the whole daemon path",
}


class _Discard:
    """A publisher that sends nothing (the `poller` stage), called as the daemon's is."""

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        return True

    def publish_nowait(self, topic: str, payload: bytes) -> bool:
        return True


async def path_round(
    config: Config,
    seconds: float,
    server_pid: int,
    interval_s: float | None = None,
    profiler: cProfile.Profile | None = None,
    stage: str = "alarms",
) -> Round:
    """(b) The daemon's driver, poller and alarm engine, publishing to the broker.

    Every stage opens the same resources (MQTT session, alarm engine), so a stage's cost is
    what it does per read, not what it keeps running.
    """
    # Own client id, so this session never kicks out a daemon of the room (same id otherwise).
    controller = config.controller.model_copy(update={"id": "bench-path"})
    cfg = config.model_copy(update={"controller": controller})
    topics = Topics(prefix=cfg.mqtt.prefix, site=controller.site, controller=controller.id)
    state_dir = cfg.controller.state_dir / "bench-path"
    state_dir.mkdir(parents=True, exist_ok=True)
    async with (
        StateDb(path=state_dir / "controllerd.db") as db,
        MqttConnection(config=cfg, topics=topics) as mqtt,
        ModbusLinks() as links,
        AlarmEngine(config=cfg, mqtt=mqtt, topics=topics, db=db) as alarms,
    ):
        async with asyncio.timeout(10):
            await mqtt.wait_connected()
        # The engine publishes and stores every alarm once at start (1600 at 200 devices,
        # seconds of QoS 1 round trips and SQLite writes): a start-up cost, not a per-read one,
        # so it ends before the measured window rather than landing in it.
        await alarms.settled()
        drivers = [build_driver(d, links) for d in cfg.devices]
        await asyncio.gather(*(driver.connect() for driver in drivers))
        publisher = _Discard() if stage in ("driver", "poller") else mqtt
        pollers = [
            DevicePoller(
                device=d,
                driver=driver,
                mqtt=publisher,
                topics=topics,
                alarms=alarms if stage == "alarms" else None,
            )
            for d, driver in zip(cfg.devices, drivers, strict=True)
        ]
        failed = [0]
        driver_reads = [0]

        def reader(poller: DevicePoller) -> Callable[[], Coroutine[Any, Any, None]]:
            async def read_once() -> None:
                await poller.poll_once()
                if poller.failures:
                    failed[0] += 1

            return read_once

        def driver_reader(driver: Driver) -> Callable[[], Coroutine[Any, Any, None]]:
            async def read_once() -> None:
                await driver.read()
                driver_reads[0] += 1

            return read_once

        def reads() -> int:
            return sum(p.polls for p in pollers) - failed[0] + driver_reads[0]

        dropped = mqtt.dropped
        if stage == "driver":
            loops = [looper(driver_reader(d), interval_s) for d in drivers]
        else:
            loops = [looper(reader(p), interval_s) for p in pollers]
        result = await measure(loops, reads, seconds, server_pid, profiler)
        # Let the alarm engine's publisher finish its QoS 1 publishes before it is cancelled:
        # on Python 3.11 a cancel that lands as aiomqtt's PUBACK wait completes is dropped, and
        # the engine's close then waits forever (seen once at 200 devices flat out).
        await asyncio.sleep(0.5)
        if mqtt.dropped != dropped:
            raise RuntimeError(f"{mqtt.dropped - dropped} telemetry messages dropped")
    return Round(result.reads, result.wall_s, result.cpu_s, result.server_cpu_s, failed[0])


async def daemon_round(
    config_path: Path, config: Config, seconds: float, server_pid: int, log: TextIO
) -> Round:
    """(c) The real daemon polling every DAEMON_INTERVAL_S; reads are telemetry on the broker."""
    topics = Topics(
        prefix=config.mqtt.prefix, site=config.controller.site, controller=config.controller.id
    )
    seen: set[str] = set()
    counts = {"read": 0, "failed": 0}
    loop = asyncio.get_running_loop()
    last_alarm = [loop.time()]
    proc = start_process(["controllerd", "run", "-c", str(config_path)], log)
    try:
        async with aiomqtt.Client("127.0.0.1", port=config.mqtt.port) as client:
            await client.subscribe(f"{topics.base}/devices/+/telemetry")
            await client.subscribe(f"{topics.base}/alarms/#")

            async def count() -> None:
                async for message in client.messages:
                    if message.topic.matches(f"{topics.base}/alarms/#"):
                        last_alarm[0] = loop.time()
                        continue
                    seen.add(str(message.topic))
                    assert isinstance(message.payload, bytes)
                    failed = "error" in json.loads(message.payload)  # the read itself failed
                    counts["failed" if failed else "read"] += 1

            async with asyncio.TaskGroup() as group:
                counter = group.create_task(count())
                # Past the start-up: every device polled, and the alarm engine's publication
                # of every alarm at start (1600 at 200 devices, seconds of QoS 1 publishes and
                # SQLite writes) over, as in the path rounds (`settled`): a healthy room then
                # publishes no alarm.
                async with asyncio.timeout(120):
                    while len(seen) < len(config.devices) or loop.time() - last_alarm[0] < 2.0:
                        if proc.poll() is not None:
                            raise RuntimeError(f"daemon exited (see {log.name})")
                        await asyncio.sleep(0.1)
                await asyncio.sleep(2 * DAEMON_INTERVAL_S)  # past the start-up transients
                g0, o0, c0 = counts["read"], counts["failed"], proc_cpu_s(proc.pid)
                s0, t0 = proc_cpu_s(server_pid), time.perf_counter()
                await asyncio.sleep(seconds)
                g1, o1, c1 = counts["read"], counts["failed"], proc_cpu_s(proc.pid)
                s1, t1 = proc_cpu_s(server_pid), time.perf_counter()
                counter.cancel()
    finally:
        stop_process(proc)
    return Round(g1 - g0, t1 - t0, c1 - c0, s1 - s0, o1 - o0)


def median_round(rounds: list[Round]) -> Round:
    return Round(
        reads=int(statistics.median(r.reads for r in rounds)),
        wall_s=statistics.median(r.wall_s for r in rounds),
        cpu_s=statistics.median(r.cpu_s for r in rounds),
        server_cpu_s=statistics.median(r.server_cpu_s for r in rounds),
        failed=sum(r.failed for r in rounds),
    )


async def bench_room(args: argparse.Namespace, n: int, workdir: Path, broker_port: int) -> Any:
    """All measurements on one room of n freezers."""
    room_dir = workdir / f"room-{n}"
    room_dir.mkdir()
    config_path = room_dir / "room.toml"
    config_path.write_text(tomli_w.dumps(room_data(n, room_dir, broker_port)), encoding="utf-8")
    config = load_config(config_path)
    paced_s = n / args.paced_rate
    with (room_dir / "processes.log").open("w") as log:
        sim = start_process(["simulators", "run", "-c", str(config_path)], log, ready="simulators")
        try:
            if args.profile:
                profiler = cProfile.Profile()
                interval = paced_s if args.profile == "paced" else None
                await path_round(config, args.seconds, sim.pid, interval, profiler)
                stats = pstats.Stats(profiler, stream=sys.stdout)
                stats.sort_stats("tottime").print_stats(30)
                stats.sort_stats("cumulative").print_stats(40)
                return {}
            warnings_before = MQTT_WARNINGS.count
            rounds: dict[str, list[Round]] = {
                key: [] for key in (*LABELS, *(f"stage {s}" for s in STAGES)) if key != "daemon"
            }
            for i in range(args.rounds):
                for pacing, interval in (("flat", None), ("paced", paced_s)):
                    bare = await bare_round(config, args.seconds, sim.pid, interval)
                    rounds[f"bare {pacing}"].append(bare)
                    line = f"  n={n} round {i + 1} {pacing}: bare {bare.us_per_read:.0f} us/read"
                    stages = STAGES if pacing == "paced" else ["alarms"]
                    for stage in stages:
                        r = await path_round(config, args.seconds, sim.pid, interval, stage=stage)
                        if stage == "alarms":
                            rounds[f"path {pacing}"].append(r)
                        if pacing == "paced":
                            rounds[f"stage {stage}"].append(r)
                        line += f", {stage} {r.us_per_read:.0f}"
                    print(line, flush=True)
            path_warnings = MQTT_WARNINGS.count - warnings_before
            daemon = await daemon_round(config_path, config, args.seconds, sim.pid, log)
        finally:
            stop_process(sim)
    daemon_log = (room_dir / "processes.log").read_text(errors="replace")
    return {
        **{key: median_round(value) for key, value in rounds.items()},
        "daemon": daemon,
        "paced_s": paced_s,
        "warnings": (path_warnings, daemon_log.count("pending publish calls")),
    }


LABELS = {
    "bare flat": "bare pymodbus, flat out",
    "path flat": "daemon path, flat out",
    "bare paced": "bare pymodbus, paced",
    "path paced": "daemon path, paced",
    "daemon": f"daemon process, poll every {DAEMON_INTERVAL_S} s",
}


def table(results: dict[int, dict[str, Any]]) -> list[str]:
    lines = [
        "| devices | loop | device reads/s | client CPU per read | client CPU | simulator CPU "
        "| failed reads |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, res in results.items():
        for key, label in LABELS.items():
            r: Round = res[key]
            if key.endswith("paced"):
                label += f" (each device every {1000 * res['paced_s']:.0f} ms)"
            lines.append(
                f"| {n} | {label} | {r.rate:.0f} | {r.us_per_read:.0f} µs "
                f"| {100 * r.cpu_s / r.wall_s:.0f} % | {100 * r.server_cpu_s / r.wall_s:.0f} % "
                f"| {r.failed} |"
            )
    return lines


def summary(results: dict[int, dict[str, Any]]) -> tuple[list[str], dict[str, bool]]:
    lines = [
        "| devices | overhead flat out (CPU per read, path / bare - 1) | overhead paced "
        "| throughput path / bare (flat out) "
        f"| daemon CPU per device at {DAEMON_INTERVAL_S} s | devices per core at that rate "
        "| aiomqtt pending-publish warnings (path / daemon) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    met = {"flat": True, "paced": True}
    for n, res in results.items():
        overhead = {
            pacing: res[f"path {pacing}"].us_per_read / res[f"bare {pacing}"].us_per_read - 1
            for pacing in met
        }
        for pacing in met:
            met[pacing] = met[pacing] and overhead[pacing] < AIM_OVERHEAD
        daemon = res["daemon"]
        per_device = 100 * daemon.cpu_s / daemon.wall_s / n
        lines.append(
            f"| {n} | {100 * overhead['flat']:+.0f} % | {100 * overhead['paced']:+.0f} % "
            f"| {res['path flat'].rate / res['bare flat'].rate:.2f} "
            f"| {per_device:.3f} % | {100 / per_device:.0f} "
            f"| {res['warnings'][0]} / {res['warnings'][1]} |"
        )
    return lines, met


#: Where the path's CPU goes (2026-12-01, third session): py-spy samples of a paced path, and
#: the stages against bare in short windows interleaved on one setup.
REMAINS = [
    "Where the path's CPU goes (2026-12-01, third session: py-spy samples of a paced path at",
    "200 devices, and the stages against bare in 2 s windows interleaved on one setup, six",
    "pairs a run). pymodbus's `TransactionManager.execute` wraps every attempt in a",
    "`wait_for` (two futures, a timer handle and a done callback per request; a device read",
    "is two requests): about 20 µs of every read, in both loops. The link now sends the",
    "prepared request PDUs through pymodbus's framing itself and bounds each attempt with its",
    "one lazily re-armed timer (`ModbusLink._transact`; a retry resends the request with the",
    "same transaction id, as `execute` does), so the driver stage takes 13-24 % less CPU per",
    "read than bare. The layers above the driver, from the same windows at 200 devices",
    "paced: the poller +6 to +16 µs, telemetry to the broker +3 to +5 µs, the alarm engine's",
    "quiet path +9 to +12 µs (7 % of the main thread's py-spy samples: comm and freshness",
    "timers, the door's grace period, the rate window). Timed alone in a hot loop the same",
    "pieces take 2-4 µs each; among 200 devices their objects are spread over the heap.",
    "Tried again and dropped: flushing telemetry 5 ms later to write fewer chunks (no",
    "measurable gain). The stage rows swing by 5-15 µs between runs.",
]


def breakdown(results: dict[int, dict[str, Any]]) -> list[str]:
    lines = [
        "| devices | bare | " + " | ".join(STAGES.values()) + " |",
        "| ---: " * (len(STAGES) + 2) + "|",
    ]
    for n, res in results.items():
        previous = res["bare paced"].us_per_read
        cells = [f"{previous:.0f} µs"]
        for stage in STAGES:
            us = res[f"stage {stage}"].us_per_read
            cells.append(f"{us:.0f} µs ({us - previous:+.0f})")
            previous = us
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines


async def main_async(args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp:
        workdir = Path(tmp)
        with PrivateBroker(workdir=workdir / "broker") as broker:
            for n in args.devices:
                results[n] = await bench_room(args, n, workdir, broker.port)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per round")
    parser.add_argument("--rounds", type=int, default=3, help="bare/path pairs per pacing")
    parser.add_argument(
        "--paced-rate",
        type=float,
        default=PACED_RATE,
        help="device reads per second of the whole room in the paced rounds",
    )
    parser.add_argument(
        "--profile",
        nargs="?",
        const="paced",
        choices=["paced", "flat"],
        help="print a cProfile of one path round instead of measuring",
    )
    parser.add_argument("--no-write", action="store_true", help="leave bench/RESULTS.md alone")
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json")
    logging.getLogger("mqtt").addHandler(MQTT_WARNINGS)
    started = time.strftime("%Y-%m-%d")
    results = asyncio.run(main_async(args))
    if args.profile:
        return
    rows = table(results)
    verdict_rows, met = summary(results)
    verdicts = {
        pacing: (
            f"under {AIM_OVERHEAD:.0%} at every size: aim met"
            if ok
            else f"{AIM_OVERHEAD:.0%} or more: aim missed"
        )
        for pacing, ok in met.items()
    }
    body = [
        f"`bench/polling.py`, {started}, {os.cpu_count()} shared cores, Python "
        f"{platform.python_version()}, pymodbus {pymodbus.__version__}. N simulated ULT",
        "freezers on Modbus TCP (demo freezer-1 map: one holding and one input read per device",
        "read), served by `simulators run` in its own process; private Mosquitto. In this",
        "process, alternating on the same devices: bare (one `AsyncModbusTcpClient` per device",
        "reading the daemon's blocks, same timeout and retries, nothing decoded or published)",
        "and the daemon path (`ModbusDriver` → `ModbusLink` → pymodbus, `DevicePoller`,",
        "telemetry to the broker, the alarm engine fed every poll). Flat out: every device",
        "read back to back. Paced: every device on `DevicePoller.run`'s fixed-rate schedule,",
        f"{args.paced_rate:g} reads/s per room, as the daemon polls (same rate for bare and",
        "path, so neither gets cheaper by batching more per loop turn). "
        f"{args.rounds} x {args.seconds:g} s per loop",
        "after a 1 s warm-up and a full garbage collection; medians shown. Client CPU is this",
        "process's (the daemon process's for the last row, from /proc). The daemon row counts",
        "telemetry on the broker.",
        "Both use pymodbus's transport, framing and PDU decoding. Bare uses the client's public",
        "read methods (`TransactionManager.execute`: a PDU built per request, a `wait_for` per",
        "attempt); the path sends request PDUs built once and times and retries every attempt",
        "itself, with one lazily re-armed timer per link (`ModbusLink._transact`), so its driver",
        "alone costs less per read than bare (first stage below) and that saving pays for part",
        "of the layers above it.",
        "",
        *rows,
        "",
        *verdict_rows,
        "",
        f"Overhead flat out: {verdicts['flat']}. Overhead paced: {verdicts['paced']}.",
        "",
        "Where the paced path's CPU per read goes (each stage adds one layer to the one",
        "before; the differences are the layers' costs, noisy to a few µs):",
        "",
        *breakdown(results),
        "",
        *REMAINS,
        "",
        "Rerun: `.venv/bin/python bench/polling.py` (`--devices 50 200 --seconds 10 --rounds 3`;",
        "`--profile [paced|flat]` prints a cProfile of one path round instead).",
    ]
    print("\n".join(body))
    if not args.no_write:
        write_section("Polling", body)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
