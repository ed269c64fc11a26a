"""Polling benchmark: the daemon's Modbus poll path against a bare pymodbus loop, side by side.

For each room size N (default 50 and 200) the bench writes a room of N simulated ULT freezers on
Modbus TCP (the demo's freezer-1 register map: one holding and one input read per poll), serves
it from `python -m simulators run` in a separate process (its CPU counts against no client),
starts a private Mosquitto, and measures in this process, on the same devices for the same time:

- bare: one `AsyncModbusTcpClient` per device looping the daemon's read blocks
  (`plan_reads`) as fast as it can, no decoding, nothing published;
- path: the daemon's own code (`build_driver` → `ModbusDriver`, `DevicePoller.poll_once`
  publishing telemetry to the broker through `MqttConnection`), same loop, as fast as it can;

alternating bare, path, bare, path (`--rounds`), each after a 1 s warm-up that is not counted.
CPU per read is this process's `time.process_time()` over completed device reads; the overhead
is path / bare - 1 on the medians. Throughput is bounded by the simulator sharing the cores, so
the CPU per read is the figure that compares. Then the real daemon (`python -m controllerd run`)
polls the room every 0.5 s; its CPU comes from /proc/PID/stat and its reads are the telemetry
messages counted on the broker. Results go to `bench/RESULTS.md` under `## Polling`.

Run: `.venv/bin/python bench/polling.py` (`--profile` prints a cProfile of the path instead).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
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

from controllerd.broker import PrivateBroker, free_port
from controllerd.config import Config, load_config
from controllerd.logs import configure_logging
from controllerd.mqtt import MqttConnection
from controllerd.poller import DevicePoller
from controllerd.supervisor import build_driver
from controllerd.topics import Topics
from drivers.modbus import plan_reads
from drivers.modbus_client import ModbusLinks

REPO = Path(__file__).resolve().parents[1]
AIM_OVERHEAD = 0.25
DAEMON_INTERVAL_S = 0.5
TIMEOUT_S = 2.0  # the demo's 0.5 s is tight for N clients hammering one simulator process
WARMUP_S = 1.0
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
        if profiler is not None:
            profiler.enable()
        r0, c0, s0, t0 = reads(), time.process_time(), proc_cpu_s(server_pid), time.perf_counter()
        await asyncio.sleep(seconds)
        r1, c1, s1, t1 = reads(), time.process_time(), proc_cpu_s(server_pid), time.perf_counter()
        if profiler is not None:
            profiler.disable()
        stop.set()
    return Round(reads=r1 - r0, wall_s=t1 - t0, cpu_s=c1 - c0, server_cpu_s=s1 - s0)


async def bare_round(config: Config, seconds: float, server_pid: int) -> Round:
    """(a) One pymodbus client per device, looping the daemon's read blocks."""
    clients = [
        AsyncModbusTcpClient(
            d.driver.host,
            port=d.driver.port,
            timeout=d.driver.timeout_s,
            retries=d.driver.retries,
            reconnect_delay=0,
        )
        for d in config.devices
    ]
    done = [0]

    def looper(
        client: AsyncModbusTcpClient, registers: Any, unit: int
    ) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
        blocks = plan_reads(registers)

        async def loop(stop: asyncio.Event) -> None:
            while not stop.is_set():
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

        return loop

    try:
        if not all(await asyncio.gather(*(c.connect() for c in clients))):
            raise RuntimeError("a bare client could not connect")
        loops = [
            looper(c, d.registers, d.driver.unit_id)
            for c, d in zip(clients, config.devices, strict=True)
        ]
        return await measure(loops, lambda: done[0], seconds, server_pid)
    finally:
        for client in clients:
            client.close()


async def path_round(
    config: Config, seconds: float, server_pid: int, profiler: cProfile.Profile | None = None
) -> Round:
    """(b) The daemon's driver and poller, publishing to the broker, as fast as they go."""
    # Own client id, so this session never kicks out a daemon of the room (same id otherwise).
    controller = config.controller.model_copy(update={"id": "bench-path"})
    cfg = config.model_copy(update={"controller": controller})
    topics = Topics(prefix=cfg.mqtt.prefix, site=controller.site, controller=controller.id)
    async with MqttConnection(config=cfg, topics=topics) as mqtt, ModbusLinks() as links:
        async with asyncio.timeout(10):
            await mqtt.wait_connected()
        drivers = [build_driver(d, links) for d in cfg.devices]
        await asyncio.gather(*(driver.connect() for driver in drivers))
        pollers = [
            DevicePoller(device=d, driver=driver, mqtt=mqtt, topics=topics)
            for d, driver in zip(cfg.devices, drivers, strict=True)
        ]
        failed = [0]

        def looper(poller: DevicePoller) -> Callable[[asyncio.Event], Coroutine[Any, Any, None]]:
            async def loop(stop: asyncio.Event) -> None:
                while not stop.is_set():
                    await poller.poll_once()
                    if poller.failures:
                        failed[0] += 1

            return loop

        def reads() -> int:
            return sum(p.polls for p in pollers) - failed[0]

        dropped = mqtt.dropped
        result = await measure([looper(p) for p in pollers], reads, seconds, server_pid, profiler)
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
    proc = start_process(["controllerd", "run", "-c", str(config_path)], log)
    try:
        async with aiomqtt.Client("127.0.0.1", port=config.mqtt.port) as client:
            await client.subscribe(f"{topics.base}/devices/+/telemetry")

            async def count() -> None:
                async for message in client.messages:
                    seen.add(str(message.topic))
                    assert isinstance(message.payload, bytes)
                    failed = "error" in json.loads(message.payload)  # the read itself failed
                    counts["failed" if failed else "read"] += 1

            async with asyncio.TaskGroup() as group:
                counter = group.create_task(count())
                async with asyncio.timeout(60):
                    while len(seen) < len(config.devices):
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


async def bench_room(
    n: int, seconds: float, rounds: int, workdir: Path, broker_port: int, profile: bool
) -> dict[str, Any]:
    """All measurements on one room of n freezers."""
    room_dir = workdir / f"room-{n}"
    room_dir.mkdir()
    config_path = room_dir / "room.toml"
    config_path.write_text(tomli_w.dumps(room_data(n, room_dir, broker_port)), encoding="utf-8")
    config = load_config(config_path)
    with (room_dir / "processes.log").open("w") as log:
        sim = start_process(["simulators", "run", "-c", str(config_path)], log, ready="simulators")
        try:
            if profile:
                profiler = cProfile.Profile()
                await path_round(config, seconds, sim.pid, profiler)
                stats = pstats.Stats(profiler, stream=sys.stdout)
                stats.sort_stats("tottime").print_stats(30)
                stats.sort_stats("cumulative").print_stats(40)
                return {}
            warnings_before = MQTT_WARNINGS.count
            bare: list[Round] = []
            path: list[Round] = []
            for i in range(rounds):
                bare.append(await bare_round(config, seconds, sim.pid))
                path.append(await path_round(config, seconds, sim.pid))
                print(
                    f"  n={n} round {i + 1}: bare {bare[-1].rate:.0f}/s "
                    f"{bare[-1].us_per_read:.0f} us/read, path {path[-1].rate:.0f}/s "
                    f"{path[-1].us_per_read:.0f} us/read",
                    flush=True,
                )
            path_warnings = MQTT_WARNINGS.count - warnings_before
            daemon = await daemon_round(config_path, config, seconds, sim.pid, log)
        finally:
            stop_process(sim)
    daemon_log = (room_dir / "processes.log").read_text(errors="replace")
    return {
        "bare": median_round(bare),
        "path": median_round(path),
        "daemon": daemon,
        "warnings": (path_warnings, daemon_log.count("pending publish calls")),
    }


def table(results: dict[int, dict[str, Any]]) -> list[str]:
    lines = [
        "| devices | loop | device reads/s | client CPU per read | client CPU | simulator CPU "
        "| failed reads |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    labels = {
        "bare": "bare pymodbus, flat out",
        "path": "daemon path (driver + poller + MQTT), flat out",
        "daemon": f"daemon process, poll every {DAEMON_INTERVAL_S} s",
    }
    for n, res in results.items():
        for key, label in labels.items():
            r: Round = res[key]
            lines.append(
                f"| {n} | {label} | {r.rate:.0f} | {r.us_per_read:.0f} µs "
                f"| {100 * r.cpu_s / r.wall_s:.0f} % | {100 * r.server_cpu_s / r.wall_s:.0f} % "
                f"| {r.failed} |"
            )
    return lines


def summary(results: dict[int, dict[str, Any]]) -> tuple[list[str], bool]:
    lines = [
        "| devices | overhead (CPU per read, path / bare - 1) | throughput path / bare "
        f"| daemon CPU per device at {DAEMON_INTERVAL_S} s | devices per core at that rate "
        "| aiomqtt pending-publish warnings (path / daemon) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    met = True
    for n, res in results.items():
        bare, path, daemon = res["bare"], res["path"], res["daemon"]
        overhead = path.us_per_read / bare.us_per_read - 1
        met = met and overhead < AIM_OVERHEAD
        per_device = 100 * daemon.cpu_s / daemon.wall_s / n
        lines.append(
            f"| {n} | {100 * overhead:+.0f} % | {path.rate / bare.rate:.2f} "
            f"| {per_device:.3f} % | {100 / per_device:.0f} "
            f"| {res['warnings'][0]} / {res['warnings'][1]} |"
        )
    return lines, met


async def main_async(args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-polling-") as tmp:
        workdir = Path(tmp)
        with PrivateBroker(workdir=workdir / "broker") as broker:
            for n in args.devices:
                results[n] = await bench_room(
                    n, args.seconds, args.rounds, workdir, broker.port, args.profile
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, nargs="*", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per round")
    parser.add_argument("--rounds", type=int, default=2, help="bare/path pairs per room size")
    parser.add_argument("--profile", action="store_true", help="cProfile the path; no results")
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json")
    logging.getLogger("mqtt").addHandler(MQTT_WARNINGS)
    started = time.strftime("%Y-%m-%d")
    results = asyncio.run(main_async(args))
    if args.profile:
        return
    rows = table(results)
    verdict_rows, met = summary(results)
    verdict = (
        f"Aim met: the daemon path costs under {AIM_OVERHEAD:.0%} more CPU per read than bare "
        "pymodbus at every size."
        if met
        else f"Aim missed: the daemon path costs {AIM_OVERHEAD:.0%} or more CPU per read over "
        "bare pymodbus (see the overhead column)."
    )
    body = [
        f"`bench/polling.py`, {started}, {os.cpu_count()} shared cores, Python "
        f"{platform.python_version()}, pymodbus {pymodbus.__version__}. N simulated ULT",
        "freezers on Modbus TCP (demo freezer-1 map: one holding and one input read per device",
        "read), served by `simulators run` in its own process; private Mosquitto. Bare and path",
        f"loop every device flat out in this process, alternating, {args.rounds} x "
        f"{args.seconds:g} s each,",
        "after a 1 s warm-up; medians shown. Client CPU is this process's (the daemon",
        "process's for the last row, from /proc); the simulator shares the cores, so throughput",
        "is bounded by it and CPU per read is the figure to compare. The daemon row counts",
        "telemetry on the broker.",
        "",
        *rows,
        "",
        *verdict_rows,
        "",
        verdict,
        "",
        "Rerun: `.venv/bin/python bench/polling.py` (`--devices 50 200 --seconds 10 --rounds 2`;",
        "`--profile` prints a cProfile of the daemon path instead of writing results).",
    ]
    print("\n".join(body))
    write_section("Polling", body)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
