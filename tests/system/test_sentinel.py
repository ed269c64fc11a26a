"""The sentinel as its own process: it pages when the daemon hangs, dies or the broker goes.

One room (broker, simulators, daemon) and a sentinel watching it and a second controller of
another site with the same room id, which is offline from the start: the two must page as two
controllers. The daemon is then stopped (SIGSTOP: alive but silent), continued, killed
(kill -9: the broker sends its last will) and restarted; the sentinel is restarted during the
other controller's outage, which must not page again but must page its end; and the broker is
stopped.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
import tomli_w

from tests.system.conftest import Stack, make_stack

pytestmark = pytest.mark.system

WRITE_STDIN = ["sh", "-c", 'cat >> "$0" && echo >> "$0"']
HEARTBEAT_TIMEOUT_S = 3.0


def pages(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def paged(path: Path, alarm: str, event: str = "raised") -> list[dict[str, Any]]:
    return [p for p in pages(path) if p["alarm"] == alarm and p["event"] == event]


async def wait_for_page(
    path: Path, alarm: str, event: str, timeout: float = 30.0
) -> dict[str, Any]:
    for _ in range(int(timeout * 20)):
        found = paged(path, alarm, event)
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} page for {alarm}: {pages(path)}")


def start_sentinel(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "controllerd", "sentinel", "-c", str(config)],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def sentinel_config(stack: Stack, out: Path, controllers: list[str]) -> Path:
    path = stack.workdir / "sentinel.toml"
    data = {
        "mqtt": {"host": "127.0.0.1", "port": stack.broker.port, "reconnect_max_s": 1.0},
        "sentinel": {
            "id": "test",
            "controllers": controllers,
            "heartbeat_timeout_s": HEARTBEAT_TIMEOUT_S,
            "broker_timeout_s": 3.0,
            "state_dir": str(stack.workdir / "sentinel-state"),
        },
        "notifiers": [
            {"id": "script", "type": "exec", "command": [*WRITE_STDIN, str(out)]},
        ],
        "escalation": {"levels": [{"notifiers": ["script"]}], "renotify_every_s": 600},
    }
    path.write_text(tomli_w.dumps(data))
    return path


async def test_sentinel_pages_on_hang_kill_and_broker_loss(tmp_path: Path) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["controller"]["heartbeat_s"] = 0.5
        data["simulator"].pop("scenario", None)

    stack = make_stack(tmp_path, edit=edit)
    out = tmp_path / "sentinel-pages.jsonl"
    log = tmp_path / "sentinel.log"
    sentinel: subprocess.Popen[bytes] | None = None
    config = stack.config
    ours = f"{config.controller.site}.{config.controller.id}"
    other_base = f"{config.mqtt.prefix}/other-site/{config.controller.id}"
    other = f"other-site.{config.controller.id}"
    try:
        stack.start_simulators()
        stack.start_daemon()
        # Another site's room of the same id, offline (its last will, retained).
        async with aiomqtt.Client(
            "127.0.0.1", port=stack.broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.publish(
                f"{other_base}/status", json.dumps({"state": "offline"}), qos=1, retain=True
            )
        sentinel_toml = sentinel_config(stack, out, [stack.base, other_base])
        sentinel = start_sentinel(sentinel_toml, log)
        offline = await wait_for_page(out, f"{other}.offline", "raised")
        assert offline["device"] == other_base
        # Heartbeats flow from ours: past the silence timeout, nothing pages for it.
        await asyncio.sleep(HEARTBEAT_TIMEOUT_S + 1.0)
        assert [p for p in pages(out) if p["alarm"].startswith(ours)] == [], log.read_text()

        # Hung (SIGSTOP): connected, so no last will, but no heartbeat: silent, paged by the
        # sentinel's own timeout.
        assert stack.daemon is not None
        os.killpg(stack.daemon.pid, signal.SIGSTOP)
        try:
            silent = await wait_for_page(out, f"{ours}.silent", "raised")
        finally:
            os.killpg(stack.daemon.pid, signal.SIGCONT)
        found = re.search(
            r"silent for (\d+) s \(no heartbeat; timeout (\S+) s\)", silent["message"]
        )
        assert found, silent
        assert int(found[1]) >= HEARTBEAT_TIMEOUT_S and float(found[2]) == HEARTBEAT_TIMEOUT_S
        assert silent["device"] == stack.base and silent["severity"] == "critical"
        assert paged(out, f"{ours}.offline") == []
        await wait_for_page(out, f"{ours}.silent", "cleared")

        # Killed: the broker sends the last will at once; the offline alarm pages (distinct
        # from the other site's, which is still open), and silence adds no second page.
        os.killpg(stack.daemon.pid, signal.SIGKILL)
        stack.daemon.wait()
        killed = await wait_for_page(out, f"{ours}.offline", "raised")
        assert killed["message"] == f"{stack.base} is offline"
        stack.start_daemon()
        await wait_for_page(out, f"{ours}.offline", "cleared", timeout=40)
        assert len(paged(out, f"{ours}.silent")) == 1  # the hang's, not the kill's
        assert paged(out, f"{other}.silent") == []  # offline: its silence is no news

        # The sentinel restarts during the other controller's outage: the outage was paged
        # and stays paged once (state_dir), and its end is paged to those paged before.
        os.killpg(sentinel.pid, signal.SIGTERM)
        assert sentinel.wait(timeout=10) == 0, log.read_text()
        sentinel = start_sentinel(sentinel_toml, log)
        for _ in range(200):
            if log.read_text().count("broker connected") >= 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"restarted sentinel did not connect:\n{log.read_text()}")
        await asyncio.sleep(1.0)  # the retained `offline` is read again
        async with aiomqtt.Client(
            "127.0.0.1", port=stack.broker.port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.publish(
                f"{other_base}/status", json.dumps({"state": "online"}), qos=1, retain=True
            )
        await wait_for_page(out, f"{other}.offline", "cleared")
        assert len(paged(out, f"{other}.offline")) == 1, pages(out)

        stack.broker.stop()
        await wait_for_page(out, "sentinel.broker", "raised")
        assert all(p["severity"] == "critical" for p in pages(out))
    finally:
        if sentinel is not None and sentinel.poll() is None:
            os.killpg(sentinel.pid, signal.SIGTERM)
            sentinel.wait(timeout=10)
        stack.stop()
