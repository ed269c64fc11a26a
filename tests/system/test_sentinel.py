"""The sentinel as its own process: it pages when the daemon is killed or the broker goes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.system.conftest import Stack, make_stack

pytestmark = pytest.mark.system

WRITE_STDIN = "import sys; open(sys.argv[1], 'ab').write(sys.stdin.buffer.read() + b'\\n')"


def pages(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def wait_for_page(path: Path, alarm: str, event: str, timeout: float = 30.0) -> None:
    for _ in range(int(timeout * 10)):
        if any(p["alarm"] == alarm and p["event"] == event for p in pages(path)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {event} page for {alarm}: {pages(path)}")


def start_sentinel(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "controllerd", "sentinel", "-c", str(config)],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def sentinel_config(stack: Stack, out: Path) -> Path:
    path = stack.workdir / "sentinel.toml"
    data = {
        "mqtt": {"host": "127.0.0.1", "port": stack.broker.port, "reconnect_max_s": 1.0},
        "sentinel": {
            "id": "test",
            "controllers": [stack.base],
            "heartbeat_timeout_s": 3.0,
            "broker_timeout_s": 3.0,
        },
        "notifiers": [
            {
                "id": "script",
                "type": "exec",
                "command": [sys.executable, "-c", WRITE_STDIN, str(out)],
            },
        ],
        "escalation": {"levels": [{"notifiers": ["script"]}], "renotify_every_s": 600},
    }
    path.write_text(tomli_w.dumps(data))
    return path


async def test_sentinel_pages_on_kill_and_on_broker_loss(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["controller"]["heartbeat_s"] = 0.5
        data["simulator"].pop("scenario", None)

    stack = make_stack(tmp_path, edit=edit)
    out = tmp_path / "sentinel-pages.jsonl"
    sentinel: subprocess.Popen[bytes] | None = None
    try:
        stack.start_simulators()
        stack.start_daemon()
        sentinel = start_sentinel(sentinel_config(stack, out), tmp_path / "sentinel.log")
        await asyncio.sleep(4.0)  # heartbeats flowing: nothing to page
        assert pages(out) == [], (tmp_path / "sentinel.log").read_text()[-2000:]

        controller = stack.config.controller.id
        assert stack.daemon is not None
        os.killpg(stack.daemon.pid, signal.SIGKILL)
        stack.daemon.wait()
        # The broker sends the daemon's last will (`offline`) once its keep-alive runs out;
        # the heartbeat stops at once: the silence pages first.
        await wait_for_page(out, f"{controller}.silent", "raised", timeout=20)

        stack.start_daemon()
        await wait_for_page(out, f"{controller}.silent", "cleared", timeout=40)

        stack.broker.stop()
        await wait_for_page(out, "sentinel.broker", "raised", timeout=20)
        assert all(p["severity"] == "critical" for p in pages(out))
    finally:
        if sentinel is not None and sentinel.poll() is None:
            os.killpg(sentinel.pid, signal.SIGTERM)
            sentinel.wait(timeout=10)
        stack.stop()
