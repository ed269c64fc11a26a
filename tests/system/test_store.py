"""The tube store end to end: the asyncua store simulator on a real socket, our driver, the
specimen map, security, and the daemon publishing the store over a private broker."""

from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from controllerd.broker import PrivateBroker
from controllerd.config import TubeStoreConfig, parse_config
from controllerd.specimen_map import FILE_NAME
from controllerd.store import TubeStore
from drivers import ConnectFailed, DeviceRejected
from drivers.opcua import OpcUaStoreDriver
from simulators._clock import SimClock
from simulators._station import default_station
from simulators.store import SimulatedStore
from tests.system._mqtt import Observer
from tests.system.conftest import _spawn, _terminate

pytestmark = pytest.mark.system

SPEED = 50.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _store_config(
    tmp_path: Path,
    *,
    driver: dict[str, Any] | None = None,
    simulation: dict[str, Any] | None = None,
) -> TubeStoreConfig:
    url = f"opc.tcp://127.0.0.1:{_free_port()}/"
    data = {
        "controller": {"site": "s", "id": "r", "state_dir": str(tmp_path / "state")},
        "devices": [
            {
                "id": "store-1",
                "kind": "tube_store",
                "driver": {
                    "type": "opcua",
                    "url": url,
                    "timeout_s": 3.0,
                    "reconnect_initial_s": 0.1,
                    "reconnect_max_s": 0.5,
                    "publishing_interval_ms": 50,
                    **(driver or {}),
                },
                "simulation": {"towers": 4, "shelves": 6, "racks": 12, **(simulation or {})},
            }
        ],
    }
    device = parse_config(data).device("store-1")
    assert isinstance(device, TubeStoreConfig)
    return device


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[SimulatedStore, TubeStore]]:
    config = _store_config(tmp_path)
    clock = SimClock(speed=SPEED)
    sim = SimulatedStore(
        config=config,
        station=default_station(),
        ambient_c=22.0,
        rng=random.Random(5),
        now=clock.now,
    )
    driver = OpcUaStoreDriver(device_id=config.id, config=config.driver)
    async with sim, TubeStore(device=config, driver=driver, state_dir=tmp_path / "state") as store:
        await driver.connect()
        yield sim, store


async def _reading(store: TubeStore, name: str, predicate: Any, timeout: float = 15) -> float:
    async with asyncio.timeout(timeout):
        while True:
            try:
                value = (await store.driver.read()).values[name]
                if predicate(value):
                    return value
            except Exception:
                pass
            await asyncio.sleep(0.05)


async def test_inventory_and_rack_moves_agree_with_the_simulator(
    served: tuple[SimulatedStore, TubeStore],
) -> None:
    sim, store = served
    model = sim.model
    # The map was loaded on connect and agrees with the simulated hotel.
    assert store.loads == 1
    assert store.specimens.racks("store-1") == sorted(model.racks)
    for rack_id, rack in model.racks.items():
        record = store.specimens.rack("store-1", rack_id)
        assert record is not None
        assert (record.tower, record.shelf) == model.home[rack_id]
        assert record.tubes == {p: code for p, code in rack.tubes.items() if code}
    reading = await store.driver.read()
    assert reading.values["state_code"] == 0
    assert -81 < reading.values["chamber_temperature_c"] < -79

    rack_id = next(r for r, (t, s) in model.home.items() if t == 3 and s > 1)
    expected = model.move_s(rack_id)
    seconds = await store.retrieve_rack(rack_id, "P2")
    assert seconds == pytest.approx(expected)
    assert model.station.racks["P2"] is model.racks[rack_id]
    located = store.specimens.rack("store-1", rack_id)
    assert located is not None and located.location == "port:P2"

    # The picker takes a tube; a scan brings the map up to date.
    rack = model.racks[rack_id]
    position, barcode = next((p, c) for p, c in rack.tubes.items() if c)
    rack.tubes[position] = None
    assert store.specimens.where(barcode) is not None
    await store.scan_rack(rack_id)
    assert store.specimens.where(barcode) is None

    back = await store.store_rack(rack_id)
    assert back == pytest.approx(model.move_s(rack_id))
    assert model.location[rack_id] == "store" and model.station.racks["P2"] is None


async def test_bad_calls_get_clear_errors_and_change_nothing(
    served: tuple[SimulatedStore, TubeStore],
) -> None:
    sim, store = served
    model = sim.model
    await store.retrieve_rack("R0001", "P1")
    before = model.snapshot()
    with pytest.raises(DeviceRejected, match="BadNotFound: no rack 'R9999'"):
        await store.retrieve_rack("R9999", "P3")
    with pytest.raises(DeviceRejected, match="BadResourceUnavailable: port P1 holds rack R0001"):
        await store.retrieve_rack("R0002", "P1")
    assert model.snapshot() == before

    await sim.inject("robot_jam")
    with pytest.raises(DeviceRejected, match="BadDeviceFailure: robot jam") as jam:
        await store.store_rack("R0001")
    assert jam.value.code == 0x808B0000
    await _reading(store, "state_code", lambda v: v == 2)
    assert (await store.driver.read()).values["fault_code"] == 1
    faulted = model.snapshot()
    with pytest.raises(DeviceRejected, match="BadInvalidState: store is Faulted"):
        await store.retrieve_rack("R0003", "P3")
    with pytest.raises(DeviceRejected, match="still jammed"):
        await store.reset()
    assert model.snapshot() == faulted
    await sim.inject("robot_jam", clear=True)
    await store.reset()
    await _reading(store, "state_code", lambda v: v == 0)


async def test_subscriptions_come_back_after_a_server_restart(
    served: tuple[SimulatedStore, TubeStore],
) -> None:
    sim, store = served
    sessions = store.driver.sessions
    await sim.inject("restart")
    await sim.inject("chamber_warm")
    # New values after the restart arrive only through a re-created subscription.
    await _reading(store, "chamber_temperature_c", lambda v: v > -75, timeout=30)
    assert store.driver.sessions > sessions
    assert store.loads >= 2  # the inventory was reloaded on the new session
    await sim.inject("disconnect")
    with pytest.raises(Exception, match="no session"):
        for _ in range(100):
            await store.driver.read()
            await asyncio.sleep(0.05)
    await sim.inject("disconnect", clear=True)
    await _reading(store, "state_code", lambda v: v == 0, timeout=30)


def _certificate(directory: Path, name: str, *, server: bool) -> tuple[Path, Path]:
    key = cert_gen.generate_private_key()
    uri = f"urn:controllerd:test:{name}"
    cert = cert_gen.generate_self_signed_app_certificate(
        key,
        name,
        {"organizationName": "controllerd tests"},
        [x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")],
        [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    cert_path, key_path = directory / f"{name}.der", directory / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(Encoding.DER))
    key_path.write_bytes(cert_gen.dump_private_key_as_pem(key))
    key_path.chmod(0o600)
    return cert_path, key_path


async def test_security_refuses_a_client_without_the_right_certificate(tmp_path: Path) -> None:
    server_cert, server_key = _certificate(tmp_path, "store", server=True)
    good_cert, good_key = _certificate(tmp_path, "daemon", server=False)
    bad_cert, bad_key = _certificate(tmp_path, "intruder", server=False)
    (tmp_path / "password").write_text("s3cret\n")
    sim_security = {
        "certificate": str(server_cert),
        "private_key": str(server_key),
        "trusted_certificates": [str(good_cert)],
        "username": "daemon",
        "password_file": str(tmp_path / "password"),
    }
    config = _store_config(tmp_path, simulation={"security": sim_security})
    url = config.driver.url

    def driver(**fields: Any) -> OpcUaStoreDriver:
        link = config.driver.model_copy(update={"url": url, **fields})
        return OpcUaStoreDriver(device_id="store-1", config=link)

    def security(cert: Path, key: Path, mode: str = "SignAndEncrypt") -> Any:
        from drivers.opcua_model import OpcUaSecurity

        return OpcUaSecurity(certificate=cert, private_key=key, mode=mode)  # type: ignore[arg-type]

    user = {"username": "daemon", "password_file": tmp_path / "password"}
    clock = SimClock(speed=SPEED)
    sim = SimulatedStore(
        config=config,
        station=default_station(),
        ambient_c=22.0,
        rng=random.Random(1),
        now=clock.now,
    )
    async with sim:
        for mode in ("Sign", "SignAndEncrypt"):
            async with driver(security=security(good_cert, good_key, mode), **user) as ok:
                await ok.connect()
                assert (await ok.read()).values["state_code"] == 0
        refused = [
            driver(security=security(bad_cert, bad_key), **user),  # untrusted certificate
            driver(**user),  # no security at all
            driver(security=security(good_cert, good_key)),  # no user
        ]
        for client in refused:
            async with client:
                with pytest.raises(ConnectFailed):
                    await client.connect()
                assert not client.connected


async def test_the_daemon_publishes_the_store_and_loads_its_map(tmp_path: Path) -> None:
    broker = PrivateBroker(workdir=tmp_path)
    broker.start()
    port = _free_port()
    room = {
        "controller": {"site": "lab", "id": "room-9", "state_dir": str(tmp_path / "state")},
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "simulator": {"control_socket": str(tmp_path / "sim.sock"), "speed": SPEED, "seed": 4},
        "devices": [
            {
                "id": "store-1",
                "kind": "tube_store",
                "poll_interval_s": 0.2,
                "driver": {
                    "type": "opcua",
                    "url": f"opc.tcp://127.0.0.1:{port}/",
                    "timeout_s": 3.0,
                    "reconnect_initial_s": 0.2,
                    "reconnect_max_s": 1.0,
                },
                "simulation": {"racks": 8, "warm_tau_min": 10.0},
            }
        ],
    }
    path = tmp_path / "room.toml"
    path.write_text(tomli_w.dumps(room))
    base = "biobank/lab/room-9"
    sims = _spawn(
        ["-m", "simulators", "run", "-c", str(path)], tmp_path / "sim.log", read_stdout=True
    )
    daemon = None
    try:
        assert sims.stdout is not None
        assert sims.stdout.readline().startswith(b"simulators ready")
        daemon = _spawn(["-m", "controllerd", "run", "-c", str(path)], tmp_path / "daemon.log")
        async with Observer(port=broker.port, topic=f"{base}/#") as obs:
            state = await obs.wait_for(
                f"{base}/devices/store-1/state", lambda b: b["connected"] is True, timeout=30
            )
            assert state["error"] is None
            telemetry = await obs.wait_for(
                f"{base}/devices/store-1/telemetry", lambda b: b["quality"] == "good"
            )
            assert set(telemetry["values"]) == {
                "chamber_temperature_c",
                "pick_chamber_temperature_c",
                "state_code",
                "door_open",
                "fault_code",
            }
            # The specimen map in state_dir agrees with the simulator's racks.
            status = await _sim_status(tmp_path / "sim.sock")
            racks = status["devices"]["store-1"]["racks"]
            with sqlite3.connect(tmp_path / "state" / FILE_NAME) as db:
                rows = db.execute("SELECT rack, tower, shelf FROM racks").fetchall()
            assert {r: (t, s) for r, t, s in rows} == {
                r: (v["tower"], v["shelf"]) for r, v in racks.items()
            }
            await _inject(tmp_path / "sim.sock", "chamber_warm")
            await obs.wait_for(
                f"{base}/devices/store-1/telemetry",
                lambda b: b["values"].get("chamber_temperature_c", -99) > -70,
                timeout=30,
            )
            await _inject(tmp_path / "sim.sock", "restart")
            mark = obs.mark()
            await _inject(tmp_path / "sim.sock", "door_open")
            await obs.wait_for(
                f"{base}/devices/store-1/telemetry",
                lambda b: b["values"].get("door_open") == 1 and b["values"]["state_code"] == 3,
                since=mark,
                timeout=30,
            )
        assert daemon.poll() is None  # recovered without restarting itself
    finally:
        _terminate(daemon)
        _terminate(sims)
        broker.stop()


async def _sim_status(sock: Path) -> dict[str, Any]:
    from simulators import status

    return await status(socket_path=sock)


async def _inject(sock: Path, fault: str) -> None:
    from simulators import inject

    await inject("store-1", fault, socket_path=sock)
