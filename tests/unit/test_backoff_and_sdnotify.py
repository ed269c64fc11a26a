"""Reconnect backoff and the sd_notify protocol (over a real Unix datagram socket)."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import pytest

from controllerd.sdnotify import SystemdNotifier
from drivers import Backoff


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, rng=random.Random(3))
    delays = [backoff.next_delay() for _ in range(8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert ceiling / 2 <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered, not lockstep
    backoff.reset()
    assert backoff.next_delay() <= 1.0


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        Backoff(initial_s=2.0, max_s=1.0)


def test_sd_notify_datagrams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        monkeypatch.setenv("WATCHDOG_USEC", "20000000")
        monkeypatch.delenv("WATCHDOG_PID", raising=False)
        notifier = SystemdNotifier(socket_path=str(path))
        assert notifier.enabled and notifier.watchdog_s == 20.0
        notifier.ready("6/6 devices connected")
        notifier.watchdog()
        notifier.stopping()
        got = [server.recv(4096).decode() for _ in range(3)]
    assert got == [
        "READY=1\nSTATUS=6/6 devices connected",
        "WATCHDOG=1",
        "STOPPING=1\nSTATUS=stopping",
    ]


def test_sd_notify_is_silent_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    notifier.ready("x")  # must not raise


def test_sd_notify_survives_a_vanished_socket(tmp_path: Path) -> None:
    SystemdNotifier(socket_path=str(tmp_path / "gone.sock")).watchdog()
