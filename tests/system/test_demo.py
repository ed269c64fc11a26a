"""`controllerd demo` as a user runs it: it prints where to look, the room shows up on MQTT,
faults can be injected, the live view shows where the ledger has a moved tube, and Ctrl-C
leaves no process behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import aiomqtt
import pytest

from controllerd.broker import CONFIG_DIR
from controllerd.config import load_config
from controllerd.demo import prepare_room
from tests.inventory._chain import make_chain
from tests.system._mqtt import Observer

pytestmark = pytest.mark.system


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


async def test_demo_runs_the_room_and_stops_cleanly(tmp_path: Path) -> None:
    # The demo's own config with private paths, so the test never meets a user's demo.
    config_path = prepare_room(
        CONFIG_DIR / "demo.toml",
        out_path=tmp_path / "demo.toml",
        broker_port=1883,
        private_dir=tmp_path,
    )
    config = load_config(config_path)
    base = f"{config.mqtt.prefix}/{config.controller.site}/{config.controller.id}"
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "controllerd",
        "demo",
        "-c",
        str(config_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert demo.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(60):
            while not any("Ctrl-C stops everything" in line for line in seen):
                line = (await demo.stdout.readline()).decode()
                assert line, "demo exited early:\n" + "".join(seen)
                seen.append(line)
        printed = "".join(seen)
        port = int(re.search(r"private broker on 127\.0\.0\.1:(\d+)", printed).group(1))  # type: ignore[union-attr]
        assert f"{base}/devices/<id>/telemetry" in printed
        assert "simulators inject" in printed
        assert "inventoryd keeping the site ledger" in printed

        site = f"{config.mqtt.prefix}/{config.controller.site}"
        async with Observer(port=port, topic=f"{site}/inventory/status") as ledger:
            await ledger.wait_for(
                f"{site}/inventory/status", lambda b: b.get("state") == "online", timeout=30
            )
        async with Observer(port=port, topic=f"{base}/#") as obs:
            await obs.wait_for(f"{base}/status", lambda b: b["state"] == "online", timeout=30)
            for device in config.devices:
                await obs.wait_for(
                    f"{base}/devices/{device.id}/state",
                    lambda b: b["connected"] is True,
                    timeout=30,
                )
                await obs.wait_for(
                    f"{base}/devices/{device.id}/telemetry",
                    lambda b: b["quality"] == "good",
                    timeout=30,
                )
            mark = obs.mark()
            inject = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "simulators",
                "inject",
                "freezer-1",
                "disconnect",
                "--socket",
                str(tmp_path / "simulators.sock"),
            )
            assert await inject.wait() == 0
            await obs.wait_for(
                f"{base}/devices/freezer-1/state",
                lambda b: b["connected"] is False,
                since=mark,
                timeout=30,
            )

        # The live view prints what is happening.
        async with asyncio.timeout(30):
            while True:
                line = (await demo.stdout.readline()).decode()
                seen.append(line)
                if "ALARM freezer-1.comm_loss UNACKED" in line:
                    break
        assert any("freezer-1 DISCONNECTED" in line for line in seen), "".join(seen)

        # A movement as the room publishes it: the view shows where the inventory's ledger
        # (asked over its MQTT 5 query topic) has the tube.
        moved = make_chain(config.controller.id, 1)[0]
        async with aiomqtt.Client(
            "127.0.0.1", port=port, protocol=aiomqtt.ProtocolVersion.V5
        ) as client:
            await client.publish(f"{base}/events/movements", moved.to_json(), qos=1)
        to = moved.to
        ledger_line = f"LEDGER {moved.barcode} at {to.store}/{to.rack}/{to.position} (ledger"
        async with asyncio.timeout(30):
            while ledger_line not in seen[-1]:
                seen.append((await demo.stdout.readline()).decode())
        demo.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(demo.communicate(), timeout=30)
        assert demo.returncode == 0, "".join(seen) + rest.decode()
        assert "demo stopped" in rest.decode()
    finally:
        if demo.returncode is None:
            # A failed test still lets the demo stop its children (each in its own session,
            # so killing the demo alone would leave them running).
            os.killpg(demo.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(demo.wait(), timeout=30)
            except TimeoutError:
                os.killpg(demo.pid, signal.SIGKILL)
                await demo.wait()
    assert _processes_mentioning(str(tmp_path)) == []
