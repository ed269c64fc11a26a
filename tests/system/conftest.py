"""System-test fixtures: a private broker, the demo room's simulators and the daemon, as the
processes they are in production (so kill -9 and SIGTERM mean what they mean there)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w

import simulators
from controllerd.broker import CONFIG_DIR, PrivateBroker
from controllerd.config import Config, load_config
from controllerd.demo import prepare_room

pytestmark = pytest.mark.system


def _spawn(
    args: list[str],
    log: Path,
    *,
    read_stdout: bool = False,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, *args],
            stdout=subprocess.PIPE if read_stdout else out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **env} if env else None,
        )


def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@dataclass
class Stack:
    """A running room: broker, simulators and daemon; `workdir` holds their logs."""

    workdir: Path
    broker: PrivateBroker
    room_path: Path
    config: Config
    simulators: subprocess.Popen[bytes] | None = None
    daemon: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        c = self.config
        return f"{c.mqtt.prefix}/{c.controller.site}/{c.controller.id}"

    @property
    def control_socket(self) -> str:
        assert self.config.simulator is not None
        return str(self.config.simulator.control_socket)

    def start_simulators(self) -> None:
        self.simulators = _spawn(
            ["-m", "simulators", "run", "-c", str(self.room_path)],
            self.workdir / "simulators.log",
            read_stdout=True,
        )
        assert self.simulators.stdout is not None
        line = self.simulators.stdout.readline()  # blocks until ready (or exit)
        assert line.startswith(b"simulators ready"), self.log("simulators.log")

    def start_daemon(self, *, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """The daemon as systemd starts it; `env` adds variables (e.g. NOTIFY_SOCKET)."""
        self.daemon = _spawn(
            ["-m", "controllerd", "run", "-c", str(self.room_path)],
            self.workdir / "controllerd.log",
            env=env,
        )
        return self.daemon

    async def inject(self, device: str, fault: str, *, clear: bool = False) -> None:
        """Inject or clear a fault through the running simulator's control socket.

        The same request `simulators inject` sends (the CLI itself is tested in
        test_simulators.py); talking to the socket directly keeps a Python start-up per fault
        out of the timing of tests that measure how long a fault lasted.
        """
        await simulators.inject(device, fault, clear=clear, socket_path=Path(self.control_socket))

    def log(self, name: str) -> str:
        path = self.workdir / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        _terminate(self.daemon)
        _terminate(self.simulators)
        self.broker.stop()

    @contextmanager
    def running(self) -> Iterator[Stack]:
        """The simulators and the daemon started; everything (broker too) stopped on leaving."""
        try:
            self.start_simulators()
            self.start_daemon()
            yield self
        finally:
            self.stop()


def make_stack(
    workdir: Path,
    *,
    speed: float | None = None,
    edit: Callable[[dict[str, Any]], None] | None = None,
) -> Stack:
    """A broker and the demo room's config for it; `edit` changes the room's TOML data."""
    broker = PrivateBroker(workdir=workdir)
    broker.start()
    room = prepare_room(
        CONFIG_DIR / "demo.toml",
        out_path=workdir / "room.toml",
        broker_port=broker.port,
        private_dir=workdir,
        speed=speed,
    )
    if edit is not None:
        data = tomllib.loads(room.read_text(encoding="utf-8"))
        edit(data)
        room.write_text(tomli_w.dumps(data), encoding="utf-8")
    return Stack(workdir=workdir, broker=broker, room_path=room, config=load_config(room))


@pytest.fixture(scope="module")
def room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The demo room on simulators with a running daemon, shared by a module's tests."""
    with make_stack(tmp_path_factory.mktemp("room")).running() as stack:
        yield stack


def wait_until(predicate: object, *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
