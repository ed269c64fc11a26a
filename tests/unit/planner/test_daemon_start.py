"""The daemon warms the planner's worker before READY: start-up waits for it, bounded.

The supervisor's start-up step runs for real (its sd_notify datagram goes to a socket bound
here) with a real `PlannerBatcher` and worker process; only the room is empty (no devices), so
the planner is all READY waits for.
"""

from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from controllerd import supervisor as supervisor_module
from controllerd.config import JobsSection, parse_config
from controllerd.jobs import PlannerBatcher
from controllerd.planner import PlannerWorker, _worker
from controllerd.sdnotify import SystemdNotifier
from controllerd.supervisor import Supervisor


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify.sock"))
        sock.settimeout(5.0)  # READY was sent before we read: never waited on in a good run
        yield sock


def _supervisor(tmp_path: Path, batcher: PlannerBatcher) -> Supervisor:
    config = parse_config({"controller": {"site": "s", "id": "c", "state_dir": str(tmp_path)}})
    notifier = SystemdNotifier(socket_path=str(tmp_path / "notify.sock"))
    supervisor = Supervisor(config=config, notifier=notifier)
    supervisor.jobs = SimpleNamespace(batcher=batcher)  # type: ignore[assignment]
    return supervisor


def _batcher() -> PlannerBatcher:
    return PlannerBatcher(config=JobsSection(), motion=None, rack_place=lambda rack: (1, 1))


def _ready_status(sock: socket.socket) -> str:
    lines = sock.recv(4096).decode().splitlines()
    assert lines[0] == "READY=1", lines
    return lines[1]


async def test_ready_waits_for_a_warm_planner_but_not_forever(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with _batcher() as batcher:
        supervisor = _supervisor(tmp_path, batcher)
        assert batcher.state == "starting"  # entering starts the worker, it warms meanwhile
        # Start-up's wait is bounded: past it, READY goes out with the planner still starting.
        monkeypatch.setattr(supervisor_module, "STARTUP_WAIT_S", 0.0)
        await supervisor._startup()
        assert _ready_status(notify_socket).startswith("STATUS=planner starting, ")
        # Within the bound, READY waits until the worker is warm (a bound no warm-up reaches,
        # however busy the machine or cold numba's cache: the test must not race it).
        monkeypatch.setattr(supervisor_module, "STARTUP_WAIT_S", 3600.0)
        await supervisor._startup()
        assert batcher.state == "warm"
        status = _ready_status(notify_socket)
        assert status == "STATUS=planner warm, 0/0 devices connected, broker down"


async def test_a_planner_that_cannot_start_is_reported_not_waited_for(
    tmp_path: Path, notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker process dies during its warm-up (as a crash in numba's import would).
    monkeypatch.setattr(_worker, "_warm_up", functools.partial(os._exit, 3))
    async with _batcher() as batcher:
        await _supervisor(tmp_path, batcher)._startup()
        assert batcher.state == "failed"
        assert _ready_status(notify_socket).startswith("STATUS=planner failed, ")


async def test_leaving_mid_warm_up_ends_the_worker_process() -> None:
    """A daemon stopping during start-up must not wait for the worker's warm-up (a cold numba
    cache compiles for many seconds)."""
    async with PlannerWorker() as worker:
        while not multiprocessing.active_children():  # noqa: ASYNC110 - spawned on first use
            await asyncio.sleep(0.01)
        assert worker.state == "starting"
    assert multiprocessing.active_children() == []
