"""The daemon end to end: the demo room's simulators, a private Mosquitto, the daemon process,
and an independent MQTT client watching what an operator's dashboard would see."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.system._mqtt import Observer
from tests.system.conftest import Stack, make_stack

pytestmark = pytest.mark.system

#: The issue's bar for SIGTERM / SIGINT, with a second of slack for a loaded machine.
STOP_BAR_S = 6.0


def _connected(body: dict[str, Any]) -> bool:
    return body.get("connected") is True


def _disconnected(body: dict[str, Any]) -> bool:
    return body.get("connected") is False


async def test_room_comes_online_with_every_device(room: Stack) -> None:
    async with Observer(port=room.broker.port, topic=f"{room.base}/#") as obs:
        status = await obs.wait_for(f"{room.base}/status", lambda b: b["state"] == "online")
        assert status["version"]
        assert status["ts"].endswith("Z")
        for device in room.config.devices:
            state = await obs.wait_for(f"{room.base}/devices/{device.id}/state", _connected)
            assert state["error"] is None
            telemetry = await obs.wait_for(
                f"{room.base}/devices/{device.id}/telemetry", lambda b: b["quality"] == "good"
            )
            if device.kind in ("ult_freezer", "probe"):
                assert -100 < telemetry["values"]["temperature_c"] < 40
            elif device.kind == "tube_picker":
                assert telemetry["values"]["homed"] in (0, 1)
    # A dashboard that connects later learns everything from retained messages alone.
    async with Observer(port=room.broker.port, topic=f"{room.base}/#") as late:
        for device in room.config.devices:
            await late.wait_for(f"{room.base}/devices/{device.id}/state", _connected)
        await late.wait_for(f"{room.base}/status", lambda b: b["state"] == "online")
        retained = {topic for topic, _, was_retained in late.messages if was_retained}
    assert f"{room.base}/status" in retained
    assert {f"{room.base}/devices/{d.id}/state" for d in room.config.devices} <= retained
    assert not any(topic.endswith("/telemetry") for topic in retained)


async def test_disconnect_turns_one_device_bad_while_others_flow(room: Stack) -> None:
    state_topic = f"{room.base}/devices/freezer-1/state"
    async with Observer(port=room.broker.port, topic=f"{room.base}/#") as obs:
        await obs.wait_for(state_topic, _connected)
        mark = obs.mark()
        await room.inject("freezer-1", "disconnect")
        try:
            down = await obs.wait_for(state_topic, _disconnected, since=mark)
            assert down["error"]
            bad = await obs.wait_for(
                f"{room.base}/devices/freezer-1/telemetry",
                lambda b: b["quality"] == "bad",
                new=True,
            )
            assert bad["values"] == {}
            # The others keep flowing while freezer-1 is down, the shared RS-485 line included.
            for other in ("freezer-2", "probe-1", "probe-4"):
                await obs.wait_for(
                    f"{room.base}/devices/{other}/telemetry",
                    lambda b: b["quality"] == "good",
                    new=True,
                )
            assert obs.latest[state_topic]["connected"] is False
        finally:
            # Marked before the clear: the daemon may reconnect (and publish the retained
            # state once) before `inject` returns.
            cleared = obs.mark()
            await room.inject("freezer-1", "disconnect", clear=True)
        await obs.wait_for(state_topic, _connected, since=cleared, timeout=40)
        await obs.wait_for(
            f"{room.base}/devices/freezer-1/telemetry", lambda b: b["quality"] == "good", new=True
        )
    assert room.daemon is not None and room.daemon.poll() is None
    # The log tells the outage once and the recovery once, with the device bound (not repeats).
    records = [
        json.loads(line)
        for line in (room.workdir / "controllerd.log").read_text().splitlines()
        if line.startswith("{")
    ]
    mine = [r for r in records if r.get("device") == "freezer-1"]
    events = [r["event"] for r in mine]
    assert events.count("device not answering") == 1, events
    assert events.count("device recovered") == 1, events
    down = next(r for r in mine if r["event"] == "device not answering")
    assert down["level"] == "warning" and down["error"]


async def test_garbage_never_crashes_the_daemon(room: Stack) -> None:
    async with Observer(port=room.broker.port, topic=f"{room.base}/#") as obs:
        await room.inject("probe-2", "garbage")
        await room.inject("freezer-2", "garbage")
        try:
            await obs.wait_for(
                f"{room.base}/devices/probe-2/telemetry", lambda b: b["quality"] == "bad", new=True
            )
            await obs.wait_for(
                f"{room.base}/devices/freezer-2/telemetry",
                lambda b: b["quality"] == "bad",
                new=True,
            )
            # probe-3 shares probe-2's line: garbage on one unit must not break the line.
            for _ in range(3):
                await obs.wait_for(
                    f"{room.base}/devices/probe-3/telemetry",
                    lambda b: b["quality"] == "good",
                    new=True,
                )
        finally:
            await room.inject("probe-2", "garbage", clear=True)
            await room.inject("freezer-2", "garbage", clear=True)
        await obs.wait_for(
            f"{room.base}/devices/probe-2/telemetry",
            lambda b: b["quality"] == "good",
            new=True,
            timeout=40,
        )
        await obs.wait_for(f"{room.base}/devices/freezer-2/state", _connected, timeout=40)
    assert room.daemon is not None and room.daemon.poll() is None


async def test_open_sensor_is_a_fault_never_a_temperature(room: Stack) -> None:
    topic = f"{room.base}/devices/probe-1/telemetry"
    async with Observer(port=room.broker.port, topic=topic) as obs:
        await room.inject("probe-1", "sensor_open")
        try:
            faulty = await obs.wait_for(topic, lambda b: b["quality"] == "bad", new=True)
            assert "temperature_c" not in faulty["values"]
            assert "temperature_c" in faulty["faults"]
        finally:
            await room.inject("probe-1", "sensor_open", clear=True)
        await obs.wait_for(topic, lambda b: b["quality"] == "good", new=True)


async def test_broker_restart_is_survived(room: Stack) -> None:
    room.broker.stop()
    await asyncio.sleep(1.0)
    room.broker.start()  # same port, as a restarted site broker would be
    async with Observer(port=room.broker.port, topic=f"{room.base}/#") as obs:
        await obs.wait_for(f"{room.base}/status", lambda b: b["state"] == "online", timeout=40)
        await obs.wait_for(
            f"{room.base}/devices/freezer-1/telemetry",
            lambda b: b["quality"] == "good",
            new=True,
            timeout=40,
        )


def _children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            if entry.name.isdigit() and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    return found


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def _until(condition: Callable[[], bool], timeout: float) -> bool:
    """Whether `condition` held within `timeout` (checked every 0.1 s: /proc has no events)."""
    for _ in range(int(timeout * 10)):
        if condition():
            return True
        await asyncio.sleep(0.1)
    return condition()


async def test_kill_9_makes_the_broker_say_offline(room: Stack) -> None:
    """The broker says `offline` for a killed daemon, and its planner worker dies with it."""
    assert room.daemon is not None
    daemon = room.daemon

    def worker_started() -> bool:
        return any("multiprocessing" in cmd for cmd in _children(daemon.pid).values())

    async with Observer(port=room.broker.port, topic=f"{room.base}/status") as obs:
        await obs.wait_for(f"{room.base}/status", lambda b: b["state"] == "online")
        assert await _until(worker_started, timeout=30), _children(daemon.pid)
        workers = [p for p, cmd in _children(daemon.pid).items() if "multiprocessing" in cmd]
        mark = obs.mark()
        os.kill(daemon.pid, signal.SIGKILL)
        await asyncio.to_thread(daemon.wait, 10)
        assert await _until(lambda: not any(map(_alive, workers)), timeout=10), workers
        offline = await obs.wait_for(
            f"{room.base}/status", lambda b: b["state"] == "offline", since=mark, timeout=30
        )
        assert offline["version"]
        mark = obs.mark()
        room.start_daemon()  # the module's later tests (if any) get a daemon again
        await obs.wait_for(
            f"{room.base}/status", lambda b: b["state"] == "online", since=mark, timeout=30
        )


async def _datagrams_until(sock: socket.socket, line: str, timeout: float = 30.0) -> list[str]:
    """sd_notify datagrams received until one holding `line` (that one last)."""
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            data = (await loop.sock_recv(sock, 4096)).decode()
            seen.append(data)
            if line in data.splitlines():
                return seen


async def test_sigterm_stops_cleanly_and_says_offline(tmp_path: Any) -> None:
    """SIGINT in the middle of start-up and SIGTERM once running: each stops the daemon
    within its 5 s bar (the daemon bounds its own stop at 4 s plus a last-resort exit) and
    the broker is told `offline`."""
    stack = make_stack(tmp_path)
    status = f"{stack.base}/status"
    try:
        stack.start_simulators()
        async with Observer(port=stack.broker.port, topic=f"{stack.base}/#") as obs:
            # `online` is published as soon as MQTT is up, before every device has answered.
            daemon = stack.start_daemon()
            await obs.wait_for(status, lambda b: b["state"] == "online")
            mark = obs.mark()
            daemon.send_signal(signal.SIGINT)
            code = await asyncio.to_thread(daemon.wait, STOP_BAR_S)
            assert code == 0, stack.log("controllerd.log")
            await obs.wait_for(status, lambda b: b["state"] == "offline", since=mark)

            # Started as systemd would: a notify socket and a 1 s watchdog.
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
                notify.bind(str(tmp_path / "notify.sock"))
                notify.setblocking(False)
                mark = obs.mark()
                daemon = stack.start_daemon(
                    env={"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "1000000"}
                )
                datagrams = await _datagrams_until(notify, "READY=1")
                ready = datagrams[-1].splitlines()
                # READY comes once every device has been tried, with the status line.
                n = len(stack.config.devices)
                status_line = next(x for x in ready if x.startswith("STATUS="))
                assert status_line.endswith(f"/{n} devices connected, broker connected"), ready
                await _datagrams_until(notify, "WATCHDOG=1")
                for device in stack.config.devices:
                    topic = f"{stack.base}/devices/{device.id}/telemetry"
                    await obs.wait_for(topic, lambda b: b["quality"] == "good", since=mark)
                await _datagrams_until(notify, "WATCHDOG=1")  # still fed while polls progress
                mark = obs.mark()
                daemon.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(daemon.wait, STOP_BAR_S)
                assert code == 0, stack.log("controllerd.log")
                await _datagrams_until(notify, "STOPPING=1")
            await obs.wait_for(status, lambda b: b["state"] == "offline", since=mark)
        log = (stack.workdir / "controllerd.log").read_text(errors="replace")
        assert log.count("stopping on signal") == 2
        assert "stop overran" not in log
        assert "Traceback" not in log
    finally:
        stack.stop()


def test_daemon_refuses_a_bad_config(tmp_path: Any) -> None:
    bad = tmp_path / "room.toml"
    bad.write_text("[controller]\nsite = 'Bad Site'\n")
    result = subprocess.run(
        [sys.executable, "-m", "controllerd", "run", "-c", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "controller.site:" in result.stderr
    assert "controller.id: required key is missing" in result.stderr
