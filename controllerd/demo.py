"""`controllerd demo`: the whole stack on simulators, with a private broker and a live view.

It writes a runtime copy of the room config with free ports (and, for tests, private paths),
starts a private Mosquitto, `simulators run`, `inventoryd run` and `controllerd run` as child
processes, prints where to look and what the room is doing, and on Ctrl-C stops everything,
leaving no process. The live view asks the inventory (its MQTT 5 query topic) where the last
moved tubes are, so what it shows is the ledger's answer, not the daemon's own report.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiomqtt
import tomli_w
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from controllerd.broker import CONFIG_DIR, PrivateBroker, free_port
from controllerd.config import Config, load_config

DEFAULT_CONFIG = CONFIG_DIR / "demo.toml"
READY_TIMEOUT_S = 30.0


def prepare_room(
    config_path: Path,
    *,
    out_path: Path,
    broker_port: int,
    private_dir: Path | None = None,
    speed: float | None = None,
) -> Path:
    """Write a runtime copy of a room config: free TCP ports, the given broker port.

    With `private_dir`, every path the room uses (state, control socket, serial ports) moves
    under it too, so several rooms can run side by side (the tests do).
    """
    data: dict[str, Any] = tomllib.loads(config_path.read_text(encoding="utf-8"))
    data.setdefault("mqtt", {})["port"] = broker_port
    data["mqtt"]["host"] = "127.0.0.1"
    sim = data.get("simulator")
    if isinstance(sim, dict):
        if sim.get("scenario"):
            sim["scenario"] = str((config_path.parent / sim["scenario"]).resolve())
        if speed is not None:
            sim["speed"] = speed
    renamed: dict[str, str] = {}
    for device in data.get("devices", []):
        driver = device.get("driver", {})
        if driver.get("type") == "modbus_tcp":
            driver["port"] = free_port()
        elif driver.get("type") == "opcua":
            driver["url"] = f"opc.tcp://127.0.0.1:{free_port()}/"
        elif str(driver.get("port", "")).startswith("socket://"):
            # A serial-over-TCP line: every device on it moves to the same free port.
            new = renamed.setdefault(driver["port"], f"socket://127.0.0.1:{free_port()}")
            driver["port"] = new
        elif private_dir is not None and "port" in driver:
            renamed.setdefault(driver["port"], str(private_dir / f"line-{len(renamed)}"))
            driver["port"] = renamed[driver["port"]]
    if private_dir is not None:
        data["controller"]["state_dir"] = str(private_dir / "state")
        if isinstance(sim, dict):
            sim["control_socket"] = str(private_dir / "simulators.sock")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(tomli_w.dumps(data), encoding="utf-8")
    load_config(out_path)  # the copy must be as valid as the original
    return out_path


def prepare_inventory(
    *, config: Config, out_path: Path, broker_port: int, store_path: Path
) -> Path:
    """The demo inventory's config: config/inventory.toml on the private broker and workdir."""
    data: dict[str, Any] = tomllib.loads((CONFIG_DIR / "inventory.toml").read_text("utf-8"))
    data["inventory"]["site"] = config.controller.site
    data["mqtt"].update(host="127.0.0.1", port=broker_port, prefix=config.mqtt.prefix)
    data["store"]["url"] = f"sqlite://{store_path}"
    out_path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return out_path


@dataclass
class _DeviceView:
    connected: bool | None = None
    error: str | None = None
    values: dict[str, float] = field(default_factory=dict)
    quality: str = "-"


class _LiveView:
    """What an operator's dashboard would show, printed to a terminal."""

    def __init__(
        self, *, base: str, device_ids: Sequence[str], out: TextIO, reply_topic: str = ""
    ) -> None:
        self._base = base
        self._reply_topic = reply_topic
        self._devices = {dev: _DeviceView() for dev in device_ids}
        self._status = "unknown"
        self._out = out
        self._alarms: dict[str, str] = {}
        self._moves: list[str] = []
        self._acked = 0
        #: The last moved tubes (newest last) and where the inventory's ledger has them.
        self.moved: list[str] = []
        self._ledger: dict[str, str] = {}
        #: Set when the ledger should be asked again (a tube moved, the inventory stored more).
        self.ask = asyncio.Event()

    def handle(self, topic: str, payload: bytes) -> None:
        rest = topic.removeprefix(self._base + "/")
        try:
            body = json.loads(payload) if payload else {}
        except ValueError:
            return
        if topic == self._reply_topic:
            self._ledger_answer(body)
            return
        if rest == "status":
            if body.get("state") != self._status:
                self._status = body.get("state", "?")
                self._line(f"controller is {self._status}")
            return
        if topic.endswith("/events/movements"):
            self._movement(body)
            return
        if "/inventory/acks/" in topic:
            self._acked = int(body.get("seq", 0)) if body else 0
            self.ask.set()
            return
        parts = rest.split("/")
        if len(parts) == 2 and parts[0] == "alarms":
            self._alarm(parts[1], body)
            return
        if len(parts) != 3 or parts[0] != "devices" or parts[1] not in self._devices:
            return
        view = self._devices[parts[1]]
        if parts[2] == "state":
            if body.get("connected") != view.connected:
                what = (
                    "connected" if body.get("connected") else f"DISCONNECTED: {body.get('error')}"
                )
                self._line(f"{parts[1]} {what}")
            view.connected, view.error = body.get("connected"), body.get("error")
        elif parts[2] == "telemetry":
            view.values = body.get("values", {})
            view.quality = body.get("quality", "?")
            if body.get("faults"):
                view.quality += f" {body['faults']}"

    def _movement(self, body: dict[str, Any]) -> None:
        def where(loc: Any) -> str:
            if not isinstance(loc, dict):
                return "intake"
            return f"{loc.get('rack')}:{loc.get('position')}"

        line = (
            f"{body.get('barcode')} {where(body.get('from'))} -> {where(body.get('to'))} "
            f"(seq {body.get('seq')}, job {body.get('job')})"
        )
        if line not in self._moves:
            self._moves.append(line)
            del self._moves[:-5]
            self._line(f"MOVED {line}")
        barcode = str(body.get("barcode"))
        self.moved = [*(b for b in self.moved if b != barcode), barcode][-5:]
        self.ask.set()

    def _ledger_answer(self, body: dict[str, Any]) -> None:
        """An answer to a `barcode` query: where the ledger has the tube now."""
        barcode, location = body.get("barcode"), body.get("location")
        if not body.get("ok") or not isinstance(barcode, str):
            return
        where = (
            f"at {location.get('store')}/{location.get('rack')}/{location.get('position')} "
            f"(ledger, {location.get('controller')} seq {location.get('seq')})"
            if isinstance(location, dict)
            else "not in the ledger yet"
        )
        if self._ledger.get(barcode) != where:
            self._ledger[barcode] = where
            self._line(f"LEDGER {barcode} {where}")

    def _alarm(self, alarm: str, body: dict[str, Any]) -> None:
        state = str(body.get("state", "normal")) if body else "normal"
        if self._alarms.get(alarm, "normal") != state:
            value = body.get("value") if body else None
            shown = f" ({body.get('message')}, value {value:g})" if isinstance(value, float) else ""
            self._line(f"ALARM {alarm} {state.upper()}{shown}")
        self._alarms[alarm] = state

    def _line(self, text: str) -> None:
        print(f"  * {text}", file=self._out, flush=True)

    def render(self) -> None:
        lines = [f"-- room view (controller {self._status}) --"]
        for dev_id, view in self._devices.items():
            mark = {True: "up  ", False: "DOWN", None: "?   "}[view.connected]
            values = "  ".join(f"{k}={v:g}" for k, v in view.values.items())
            lines.append(f"  {dev_id:<10} {mark} {view.quality:<9} {values}")
        active = sorted(a for a, st in self._alarms.items() if st in ("unacked", "acked"))
        lines.append(f"  alarms active: {', '.join(active) if active else 'none'}")
        if self.moved:
            lines.append(f"  last moved tubes (inventory has stored up to seq {self._acked}):")
            lines += [
                f"    {code:<16} {self._ledger.get(code, 'asking the inventory...')}"
                for code in self.moved
            ]
        print("\n".join(lines), file=self._out, flush=True)


async def _ask_ledger(
    client: aiomqtt.Client, view: _LiveView, *, query_topic: str, reply_topic: str
) -> None:
    """Ask the inventory where each of the last moved tubes is, whenever something moved."""
    while True:
        await view.ask.wait()
        view.ask.clear()
        for barcode in view.moved:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ResponseTopic = reply_topic
            request = json.dumps({"query": "barcode", "barcode": barcode}).encode()
            await client.publish(query_topic, request, qos=1, properties=props)


async def _start(
    args: list[str], *, log_path: Path, env: dict[str, str]
) -> asyncio.subprocess.Process:
    log = log_path.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            start_new_session=True,
            env=env,
        )
    finally:
        log.close()


async def _stop(proc: asyncio.subprocess.Process | None) -> None:
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout=6)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()


async def _wait_ready(proc: asyncio.subprocess.Process, marker: bytes) -> None:
    assert proc.stdout is not None
    async with asyncio.timeout(READY_TIMEOUT_S):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError(f"exited with code {await proc.wait()} before it was ready")
            if line.startswith(marker):
                return


async def _demo(config_path: Path, port: int, speed: float | None, out: TextIO) -> int:
    room = load_config(config_path)
    workdir = Path(room.controller.state_dir).parent
    workdir.mkdir(parents=True, exist_ok=True)
    broker = PrivateBroker(workdir=workdir, port=port)
    broker.start()
    runtime = prepare_room(
        config_path, out_path=workdir / "room.toml", broker_port=broker.port, speed=speed
    )
    config = load_config(runtime)
    base = f"{config.mqtt.prefix}/{config.controller.site}/{config.controller.id}"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    sims: asyncio.subprocess.Process | None = None
    daemon: asyncio.subprocess.Process | None = None
    ledger: asyncio.subprocess.Process | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        print(f"controllerd demo: private broker on 127.0.0.1:{broker.port}", file=out, flush=True)
        sims = await _start(
            [sys.executable, "-m", "simulators", "run", "-c", str(runtime)],
            log_path=workdir / "simulators.log",
            env=env,
        )
        await _wait_ready(sims, b"simulators ready")
        print(
            "  simulators serving the room (log: " + str(workdir / "simulators.log") + ")",
            file=out,
            flush=True,
        )
        inventory_config = prepare_inventory(
            config=config,
            out_path=workdir / "inventory.toml",
            broker_port=broker.port,
            store_path=workdir / "inventory.sqlite3",
        )
        ledger = await _start(
            [sys.executable, "-m", "inventory", "run", "-c", str(inventory_config)],
            log_path=workdir / "inventoryd.log",
            env=env,
        )
        print(
            f"  inventoryd keeping the site ledger (log: {workdir / 'inventoryd.log'}; "
            f"inventoryd where BARCODE -c {inventory_config})",
            file=out,
            flush=True,
        )
        daemon = await _start(
            [sys.executable, "-m", "controllerd", "run", "-c", str(runtime)],
            log_path=workdir / "controllerd.log",
            env=env,
        )
        print(
            f"""  daemon started (log: {workdir / "controllerd.log"})

Watch it with any MQTT client, e.g.
  mosquitto_sub -h 127.0.0.1 -p {broker.port} -V mqttv5 -v -t '{base}/#'
Topics: {base}/status, {base}/devices/<id>/state, {base}/devices/<id>/telemetry
Inject a fault:  simulators inject freezer-1 disconnect   (… --clear to end it)
Faults: disconnect garbage stuck compressor_fail door_open power_fail sensor_open
LN2 tank faults (ln2-1, ln2-2): supply_empty valve_stuck lid_open thermocouple_open noise
Alarms: {base}/alarms/#  pages: {base}/pages  jobs: {base}/jobs/#
Commands (MQTT 5 request/response; operator "demo" may do everything), e.g. acknowledge:
  mosquitto_rr -V mqttv5 -h 127.0.0.1 -p {broker.port} -t '{base}/cmd/ack' -e 'replies/demo' \\
    -m '{{"command_id": "c-1", "operator": "demo", "alarm": "freezer-1.temperature_c.high"}}'
Pick tubes by barcode (barcodes: inventoryd or the store's map), see docs/jobs.md:
  ... -t '{base}/cmd/pick' -m '{{"command_id": "c-2", "operator": "demo", "barcodes": [...]}}'
Ctrl-C stops everything.
""",
            file=out,
            flush=True,
        )
        reply_topic = f"replies/controllerd-demo-{os.getpid()}"
        view = _LiveView(
            base=base,
            device_ids=[d.id for d in config.devices],
            out=out,
            reply_topic=reply_topic,
        )
        async with aiomqtt.Client(
            "127.0.0.1",
            port=broker.port,
            identifier=f"controllerd-demo-view-{os.getpid()}",
            protocol=aiomqtt.ProtocolVersion.V5,
        ) as client:
            await client.subscribe(f"{base}/#")
            site = f"{config.mqtt.prefix}/{config.controller.site}"
            await client.subscribe(f"{site}/inventory/acks/{config.controller.id}")
            await client.subscribe(reply_topic, qos=1)
            reader = asyncio.create_task(_pump(client, view), name="demo-view")
            asker = asyncio.create_task(
                _ask_ledger(
                    client, view, query_topic=f"{site}/inventory/query", reply_topic=reply_topic
                ),
                name="demo-ledger-queries",
            )
            try:
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=5)
                    if any(p.returncode is not None for p in (daemon, sims, ledger)):
                        print(
                            "a child process exited unexpectedly; see the logs above",
                            file=out,
                            flush=True,
                        )
                        return 1
                    view.render()
            finally:
                for task in (reader, asker):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        return 0
    finally:
        print("stopping demo…", file=out, flush=True)
        await _stop(daemon)
        await _stop(ledger)
        await _stop(sims)
        broker.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        print("demo stopped; no process left behind", file=out, flush=True)


async def _pump(client: aiomqtt.Client, view: _LiveView) -> None:
    async for message in client.messages:
        payload = message.payload if isinstance(message.payload, bytes) else b""
        view.handle(str(message.topic), payload)


def run_demo(*, config_path: Path | None, port: int, speed: float | None) -> int:
    """Entry point of `controllerd demo`."""
    return asyncio.run(_demo(config_path or DEFAULT_CONFIG, port, speed, sys.stdout))
