"""The tube store end to end: the asyncua store simulator on a real socket, our driver, the
specimen map, security, and the daemon publishing the store over a private broker.

The in-process simulators run on a stepped clock: simulated time moves only when a test moves
it, so "the rack arrived after 15 simulated seconds, not before" holds on any machine load.
"""

from __future__ import annotations

import asyncio
import random
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import tomli_w
from asyncua import Client, ua
from asyncua.crypto import cert_gen
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from controllerd.alarms import KIND_DEFAULTS
from controllerd.broker import PrivateBroker
from controllerd.config import TubeStoreConfig, load_config, parse_config
from controllerd.specimen_map import FILE_NAME
from controllerd.store import TubeStore
from drivers import ConnectFailed, DeviceRejected, DeviceTimeout, NotConnected, ProtocolError
from drivers._cancel import cancel_and_wait
from drivers.opcua import OpcUaStoreDriver, SecurityRefused
from drivers.opcua._session import open_session
from drivers.opcua_model import NAMESPACE_URI, OpcUaSecurity, names
from simulators._station import default_station
from simulators.store import SimulatedStore, seed_racks, store_rng
from simulators.store._server import STEP_S
from tests.system._mqtt import Observer
from tests.system.conftest import Stack

pytestmark = pytest.mark.system

T = TypeVar("T")

#: Simulated seconds per real second in the daemon's room.
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


async def _until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until `condition()` holds (state of an in-process simulator or driver)."""
    async with asyncio.timeout(timeout):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


class SteppedClock:
    """Simulated time that moves only when the test moves it (`now` is the simulator's clock)."""

    def __init__(self) -> None:
        self.time_s = 0.0

    def now(self) -> float:
        return self.time_s


class Served:
    """A simulated store on a stepped clock and the daemon's `TubeStore` connected to it."""

    def __init__(self, sim: SimulatedStore, store: TubeStore, clock: SteppedClock) -> None:
        self.sim = sim
        self.store = store
        self.clock = clock

    async def advance(self, seconds: float) -> None:
        """Move simulated time on and wait until the simulator has stepped its model there."""
        self.clock.time_s += seconds
        await _until(lambda: self.sim.stepped_s + STEP_S > self.clock.time_s)

    async def finish(self, call: Awaitable[T], *, step_s: float = 5.0) -> T:
        """Run a store call, moving simulated time on until it returns."""
        task = asyncio.ensure_future(call)
        async with asyncio.timeout(30):
            while not task.done():
                await self.advance(step_s)
                await asyncio.wait([task], timeout=0.05)
        return task.result()

    async def started(self) -> None:
        """Wait until the store works on an operation (the method call reached it)."""
        await _until(lambda: self.sim.model.operation is not None)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    config = _store_config(tmp_path)
    clock = SteppedClock()
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
        yield Served(sim, store, clock)


def _driver(config: TubeStoreConfig, **fields: Any) -> OpcUaStoreDriver:
    """Another client of the same store, with some link settings changed."""
    return OpcUaStoreDriver(device_id="store-1", config=config.driver.model_copy(update=fields))


async def _reading(store: TubeStore, name: str, predicate: Any, timeout: float = 15) -> float:
    async with asyncio.timeout(timeout):
        while True:
            try:
                value = (await store.driver.read()).values[name]
                if predicate(value):
                    return value
            except (NotConnected, KeyError):
                pass
            await asyncio.sleep(0.05)


async def test_the_map_and_the_rack_moves_agree_with_the_simulator(served: Served) -> None:
    sim, store, model = served.sim, served.store, served.sim.model
    # The map was loaded on connect and agrees with the simulated hotel.
    assert store.loads == 1
    assert store.specimens.racks("store-1") == sorted(model.racks)
    for rack_id, rack in model.racks.items():
        record = store.specimens.rack("store-1", rack_id)
        assert record is not None
        assert (record.tower, record.shelf) == model.home[rack_id]
        assert record.tubes == {p: code for p, code in rack.tubes.items() if code}
    reading = await store.driver.read()
    assert reading.values["state_code"] == 0 and reading.texts == {}
    assert -81 < reading.values["chamber_temperature_c"] < -79

    # A move's time from the geometry alone: the carousel (4 towers, 90° apart at 30°/s) turns
    # the shortest way from the tower it faces (tower 1 at start, then the last rack's), the
    # lift travels 75 mm per shelf above the first at 150 mm/s up and down again, and the
    # robot handles the rack for 6 s.
    params = sim.config.simulation
    assert params is not None
    assert (params.towers, params.rotation_deg_per_s, params.handling_s) == (4, 30.0, 6.0)
    assert (params.shelf_pitch_mm, params.lift_mm_per_s) == (75.0, 150.0)
    facing = 1

    def move_s(rack_id: str) -> float:
        record = store.specimens.rack("store-1", rack_id)
        assert record is not None
        turn = {0: 0.0, 1: 3.0, 2: 6.0, 3: 3.0}[(record.tower - facing) % 4]
        return turn + 2 * (record.shelf - 1) * 0.5 + 6.0

    async def timed(call: Awaitable[float], rack_id: str, arrived: Any, expected: float) -> None:
        """Call at a known simulated time; the rack is not there just before `expected`
        simulated seconds, is there and the call has returned just after."""
        task = asyncio.ensure_future(call)
        await served.started()
        await served.advance(expected - 0.3)
        assert not arrived(), f"{rack_id} arrived before {expected} s"
        assert model.operation is not None and not task.done()
        await served.advance(0.6)
        async with asyncio.timeout(15):
            reported = await task
        assert arrived()
        assert reported == pytest.approx(expected)

    # Out of tower 4 from tower 1: one step back round the carousel, not three forward.
    first = next(r for r, (t, s) in model.home.items() if t == 4 and s > 1)
    expected = move_s(first)
    assert 3.0 + 6.0 < expected <= 3.0 + 5.0 + 6.0
    await timed(
        store.retrieve_rack(first, "P2"),
        first,
        lambda: model.station.racks["P2"] is model.racks[first],
        expected,
    )
    facing = 4
    located = store.specimens.rack("store-1", first)
    assert located is not None and located.location == "port:P2"

    # The picker takes a tube; a scan (of a rack in its port: no travel) updates the map.
    rack = model.racks[first]
    position, barcode = next((p, c) for p, c in rack.tubes.items() if c)
    rack.tubes[position] = None
    assert store.specimens.where(barcode) is not None
    await timed(store.scan_rack(first), first, lambda: model.scanned[first][position] is None, 8.0)
    assert store.specimens.where(barcode) is None

    # Back onto its shelf: the carousel already faces its tower.
    expected = move_s(first)
    assert expected == pytest.approx(2 * (model.home[first][1] - 1) * 0.5 + 6.0)
    await timed(store.store_rack(first), first, lambda: model.location[first] == "store", expected)
    assert model.station.racks["P2"] is None
    # Then a rack two towers away: 180° either way.
    second = next(r for r, (t, _) in model.home.items() if t == 2)
    expected = move_s(second)
    assert expected >= 6.0 + 6.0
    await timed(
        store.retrieve_rack(second, "P1"),
        second,
        lambda: model.station.racks["P1"] is model.racks[second],
        expected,
    )


async def test_bad_calls_get_clear_errors_and_change_nothing(served: Served) -> None:
    sim, store, model = served.sim, served.store, served.sim.model
    await served.finish(store.retrieve_rack("R0001", "P1"))
    before = model.snapshot()
    with pytest.raises(DeviceRejected, match="BadNotFound: no rack 'R9999'"):
        await store.retrieve_rack("R9999", "P3")
    with pytest.raises(DeviceRejected, match="BadResourceUnavailable: port P1 holds rack R0001"):
        await store.retrieve_rack("R0002", "P1")
    assert model.snapshot() == before

    await sim.inject("robot_jam")
    with pytest.raises(DeviceRejected, match="BadDeviceFailure: robot jam") as jam:
        await served.finish(store.store_rack("R0001"), step_s=1.0)
    assert jam.value.code == 0x808B0000
    await _reading(store, "state_code", lambda v: v == 2)
    reading = await store.driver.read()
    assert reading.values["fault_code"] == 1
    assert reading.texts == {"state_code": "robot jam during StoreRack R0001"}
    assert store.driver.state() == ("Faulted", "robot jam during StoreRack R0001")
    faulted = model.snapshot()
    with pytest.raises(DeviceRejected, match="BadInvalidState: store is Faulted"):
        await store.retrieve_rack("R0003", "P3")
    with pytest.raises(DeviceRejected, match="still jammed"):
        await store.reset()
    assert model.snapshot() == faulted
    await sim.inject("robot_jam", clear=True)
    await store.reset()
    await _reading(store, "state_code", lambda v: v == 0)
    assert (await store.driver.read()).texts == {}


async def test_a_store_that_does_not_answer_or_finish_is_a_device_timeout(
    served: Served,
) -> None:
    sim, model = served.sim, served.sim.model
    quick = {"timeout_s": 1.0, "operation_timeout_s": 1.0}
    before = model.snapshot()
    async with _driver(sim.config, **quick) as client:
        await client.connect()
        # A hung controller: the call is never answered within timeout_s.
        await sim.inject("hang")
        with pytest.raises(DeviceTimeout, match="no answer in time") as hung:
            await client.retrieve_rack("R0002", "P3")
        assert hung.value.operation == "RetrieveRack R0002 P3"
        # Released, the held call is refused, not run: once the store answers again (after
        # the held call, on the same connection or a new one), nothing has changed.
        await sim.inject("hang", clear=True)
        async with asyncio.timeout(30):
            while True:
                try:
                    await client.inventory()
                    break
                except NotConnected:
                    await asyncio.sleep(0.05)
    assert model.snapshot() == before

    # Simulated time stands still: the robot never finishes within operation_timeout_s.
    async with _driver(sim.config, **quick) as client:
        await client.connect()
        with pytest.raises(DeviceTimeout, match=r"operation \d+ not done within 1.0 s") as slow:
            await client.retrieve_rack("R0002", "P3")
        assert slow.value.operation == "RetrieveRack R0002 P3"
        assert model.operation is not None  # the store works on; the driver stopped waiting
        # The driver is not stuck: the next call gets the store's own answer.
        with pytest.raises(DeviceRejected, match="BadResourceUnavailable: store is Busy"):
            await client.scan_rack("R0003")


async def test_subscriptions_come_back_after_a_server_restart(served: Served) -> None:
    sim, store = served.sim, served.store
    sessions = store.driver.sessions
    await sim.inject("restart")
    await sim.inject("chamber_warm")
    await served.advance(900.0)
    # New values after the restart arrive only through a re-created subscription.
    await _reading(store, "chamber_temperature_c", lambda v: v > -75, timeout=30)
    await _until(lambda: store.driver.sessions > sessions, timeout=30)
    assert store.loads >= 2  # the inventory was reloaded on the new session, before it was up
    await sim.inject("disconnect")
    with pytest.raises(NotConnected, match="no session"):
        async with asyncio.timeout(30):
            while True:
                await store.driver.read()
                await asyncio.sleep(0.05)
    await sim.inject("disconnect", clear=True)
    await _reading(store, "state_code", lambda v: v == 0, timeout=30)


async def _browse(node: Any, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every node below `node` by its browse path: {path: (namespace index, node)}."""
    found: dict[tuple[str, ...], Any] = {}
    for child in await node.get_children():
        name = await child.read_browse_name()
        below = (*path, str(name.Name))
        found[below] = (name.NamespaceIndex, child)
        if not (len(below) >= 2 and below[0] == names.RACKS):  # one rack is enough
            found.update(await _browse(child, below))
    return found


async def test_the_model_is_browsed_by_name_and_missing_parts_are_protocol_errors(
    served: Served,
) -> None:
    sim, store = served.sim, served.store
    async with Client(sim.url) as client:
        ns = await client.get_namespace_index(NAMESPACE_URI)
        (root,) = [
            child
            for child in await client.nodes.objects.get_children()
            if (await child.read_browse_name()) == ua.QualifiedName(names.STORE, ns)
        ]
        tree = await _browse(root)
        # One namespace: every name is ours but OPC UA's own method argument properties.
        assert {p[-1] for p, (index, _) in tree.items() if index != ns} == {
            "InputArguments",
            "OutputArguments",
        }
        # LADS-like: folders of functional units and functions, state machines with a
        # CurrentState and its Number, the door a cover with its own state machine.
        for folder in (names.FUNCTIONAL_UNITS,), (*names.PICK_CHAMBER, names.FUNCTIONS):
            definition = await tree[folder][1].read_type_definition()
            assert definition == ua.NodeId(ua.ObjectIds.FolderType)
        state = await tree[names.STATE][1].read_value()
        assert state == ua.LocalizedText("Idle")
        assert await tree[names.STATE_CODE][1].read_value() == 0
        assert await tree[names.DOOR_STATE][1].read_value() == ua.LocalizedText("Closed")
        assert await tree[names.DOOR_STATE_CODE][1].read_value() == 0
        units = await tree[(*names.CHAMBER_TEMPERATURE, names.ENGINEERING_UNITS)][1].read_value()
        assert (units.UnitId, units.DisplayName.Text) == (4408652, "°C")
        methods = {p[-1] for p in tree if p[:-1] == names.RACK_ROBOT}
        assert set(names.METHODS) <= methods

    # A rack without its tubes: the inventory says which node is missing (and the daemon's
    # store, whose map cannot load, stays down rather than half-loaded).
    await sim.drop((names.RACKS, "R0001", names.RACK_TUBES))
    async with _driver(sim.config) as client:
        await client.connect()
        with pytest.raises(ProtocolError, match="inventory nodes missing: Racks/R0001/Tubes"):
            await client.inventory()
    assert not store.driver.connected

    async def refused(client: OpcUaStoreDriver) -> BaseException:
        """The connect failure's cause (the driver error of the last attempt)."""
        async with client:
            with pytest.raises(ConnectFailed) as failed:
                await client.connect()
        assert failed.value.__cause__ is not None
        return failed.value.__cause__

    # Another model's namespace, a model without a node the driver needs, no model at all.
    other = await refused(_driver(sim.config, namespace_uri="urn:example:other", timeout_s=1.5))
    assert isinstance(other, ConnectFailed)
    assert "has no namespace urn:example:other (not a tube store)" in str(other)
    await sim.drop(names.FAULT_TEXT)
    lacking = await refused(_driver(sim.config, timeout_s=1.5))
    assert isinstance(lacking, ProtocolError)
    assert "lacks StateMachine/FaultText (not our store model)" in str(lacking)
    await sim.drop(())
    gone = await refused(_driver(sim.config, timeout_s=1.5))
    assert "no TubeStore object under Objects" in str(gone)


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
    (tmp_path / "guess").write_text("letmein\n")
    sim_security = {
        "certificate": str(server_cert),
        "private_key": str(server_key),
        "trusted_certificates": [str(good_cert)],
        "username": "daemon",
        "password_file": str(tmp_path / "password"),
    }
    config = _store_config(tmp_path, simulation={"security": sim_security})

    def security(cert: Path, key: Path, mode: str) -> OpcUaSecurity:
        return OpcUaSecurity(certificate=cert, private_key=key, mode=mode)  # type: ignore[arg-type]

    user = {"username": "daemon", "password_file": tmp_path / "password"}
    sim = SimulatedStore(
        config=config,
        station=default_station(),
        ambient_c=22.0,
        rng=random.Random(1),
        now=SteppedClock().now,
    )
    async with sim:
        for mode in ("Sign", "SignAndEncrypt"):
            async with _driver(config, security=security(good_cert, good_key, mode), **user) as ok:
                await ok.connect()
                assert (await ok.read()).values["state_code"] == 0
            refused = {
                "refused: BadCertificateUntrusted (the server does not trust this client's "
                "certificate)": _driver(config, security=security(bad_cert, bad_key, mode), **user),
                "refused: BadUserAccessDenied (the server refused the user name or password)": (
                    _driver(
                        config,
                        security=security(good_cert, good_key, mode),
                        username="daemon",
                        password_file=tmp_path / "guess",
                    )
                ),
                "refused: BadIdentityTokenRejected (the server does not accept this kind of "
                "user identity": _driver(config, security=security(good_cert, good_key, mode)),
            }
            for reason, client in refused.items():
                async with client:
                    # Refused at once, naming the reason: retrying cannot help.
                    with pytest.raises(SecurityRefused) as failed:
                        await client.connect()
                    assert not client.connected
                assert failed.value.message.startswith(reason), failed.value.message
        async with _driver(config, **user) as plain:
            with pytest.raises(SecurityRefused, match="no endpoint with this client's security"):
                await plain.connect()


# ---------------------------------------------------------------------- the daemon


@pytest.fixture(scope="module")
def store_room(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Broker, simulators and the daemon of a room with one store; shared by the tests below
    (each clears the faults it injects)."""
    workdir = tmp_path_factory.mktemp("store-room")
    broker = PrivateBroker(workdir=workdir)
    broker.start()
    defaults = KIND_DEFAULTS["tube_store"]
    pick_warm, door_open = defaults["pick_chamber_temperature_c"].high, defaults["door_open"]
    assert pick_warm is not None and door_open.discrete is not None
    # The kind's own rules, with delays the daemon's real-time clock gets through in a test.
    quick = {"on_delay_s": 1.0}
    room = {
        "controller": {"site": "lab", "id": "room-9", "state_dir": str(workdir / "state")},
        "mqtt": {"host": "127.0.0.1", "port": broker.port},
        "simulator": {"control_socket": str(workdir / "sim.sock"), "speed": SPEED, "seed": 4},
        "devices": [
            {
                "id": "store-1",
                "kind": "tube_store",
                "poll_interval_s": 0.2,
                "driver": {
                    "type": "opcua",
                    "url": f"opc.tcp://127.0.0.1:{_free_port()}/",
                    "timeout_s": 3.0,
                    "reconnect_initial_s": 0.2,
                    "reconnect_max_s": 1.0,
                },
                "simulation": {"racks": 8, "warm_tau_min": 10.0},
                "alarms": {
                    "values": {
                        "pick_chamber_temperature_c": {
                            "high": pick_warm.model_copy(update=quick).model_dump()
                        },
                        "door_open": {
                            "discrete": door_open.discrete.model_copy(update=quick).model_dump()
                        },
                    }
                },
            }
        ],
    }
    path = workdir / "room.toml"
    path.write_text(tomli_w.dumps(room))
    stack = Stack(workdir=workdir, broker=broker, room_path=path, config=load_config(path))
    with stack.running():
        yield stack


@pytest.fixture
async def observer(store_room: Stack) -> AsyncIterator[Observer]:
    async with Observer(port=store_room.broker.port, topic=f"{store_room.base}/#") as obs:
        await obs.wait_for(
            f"{store_room.base}/devices/store-1/state", lambda b: b["connected"] is True
        )
        yield obs


def _state(state: str) -> Any:
    return lambda body: body.get("state") == state


async def test_the_daemon_publishes_the_store_and_loads_its_map(
    store_room: Stack, observer: Observer
) -> None:
    base = store_room.base
    state = observer.latest[f"{base}/devices/store-1/state"]
    assert state["error"] is None
    telemetry = await observer.wait_for(
        f"{base}/devices/store-1/telemetry", lambda b: b["quality"] == "good"
    )
    assert set(telemetry["values"]) == {
        "chamber_temperature_c",
        "pick_chamber_temperature_c",
        "state_code",
        "door_open",
        "fault_code",
    }
    # The specimen map in state_dir agrees with the simulator: racks in their slots as the
    # simulator reports them, and every tube of the hotel the simulator seeded.
    status = await _sim_status(store_room)
    racks = status["devices"]["store-1"]["racks"]
    device = store_room.config.device("store-1")
    assert isinstance(device, TubeStoreConfig) and device.simulation is not None
    assert store_room.config.simulator is not None
    hotel = seed_racks(device.simulation, store_rng(store_room.config.simulator.seed, device.id))
    with sqlite3.connect(store_room.workdir / "state" / FILE_NAME) as db:
        slots = db.execute("SELECT rack, tower, shelf FROM racks").fetchall()
        tubes = db.execute("SELECT rack, position, barcode FROM tubes").fetchall()
    assert {r: (t, s) for r, t, s in slots} == {
        r: (v["tower"], v["shelf"]) for r, v in racks.items()
    }
    assert {r: (t, s) for r, (t, s, _) in hotel.items()} == {
        r: (v["tower"], v["shelf"]) for r, v in racks.items()
    }
    expected = {
        (rack_id, position, code)
        for rack_id, (_, _, rack) in hotel.items()
        for position, code in rack.tubes.items()
        if code
    }
    assert len(expected) > 8 * 48
    assert set(tubes) == expected and len(tubes) == len(expected)


async def test_an_open_door_and_a_warm_pick_chamber_raise_their_alarms(
    store_room: Stack, observer: Observer
) -> None:
    base = store_room.base
    mark = observer.mark()
    await store_room.inject("store-1", "door_open")
    try:
        door = await observer.wait_for(f"{base}/alarms/store-1.door_open", _state("unacked"))
        assert (door["message"], door["severity"], door["value"]) == (
            "door open too long",
            "medium",
            1,
        )
        # The pick chamber warms toward the room through the open door (-15 °C, kind default).
        warm = await observer.wait_for(
            f"{base}/alarms/store-1.pick_chamber_temperature_c.high", _state("unacked")
        )
        assert warm["limit"] == -15.0 and warm["value"] > -15.0
        telemetry = await observer.wait_for(
            f"{base}/devices/store-1/telemetry",
            lambda b: b["values"].get("door_open") == 1,
            since=mark,
        )
        assert telemetry["values"]["state_code"] == 3  # Maintenance
    finally:
        await store_room.inject("store-1", "door_open", clear=True)
    await observer.wait_for(f"{base}/alarms/store-1.door_open", _state("rtn_unacked"), since=mark)


async def test_the_store_fault_text_reaches_operators(
    store_room: Stack, observer: Observer
) -> None:
    base = store_room.base
    device = store_room.config.device("store-1")
    assert isinstance(device, TubeStoreConfig)
    mark = observer.mark()
    await store_room.inject("store-1", "robot_jam")
    async with OpcUaStoreDriver(device_id="test-client", config=device.driver) as client:
        await client.connect()
        try:
            with pytest.raises(DeviceRejected, match="robot jam during RetrieveRack R0001"):
                await client.retrieve_rack("R0001", "P1")
            telemetry = await observer.wait_for(
                f"{base}/devices/store-1/telemetry",
                lambda b: b["values"].get("state_code") == 2,
                since=mark,
            )
            assert telemetry["texts"] == {"state_code": "robot jam during RetrieveRack R0001"}
            faulted = await observer.wait_for(
                f"{base}/alarms/store-1.state_code", _state("unacked"), since=mark
            )
            assert faulted["message"] == "store faulted: robot jam during RetrieveRack R0001"
        finally:
            await store_room.inject("store-1", "robot_jam", clear=True)
        cleared = observer.mark()
        await client.reset()
    normal = await observer.wait_for(
        f"{base}/devices/store-1/telemetry",
        lambda b: b["values"].get("state_code") == 0,
        since=cleared,
    )
    assert "texts" not in normal
    back = await observer.wait_for(
        f"{base}/alarms/store-1.state_code", _state("rtn_unacked"), since=mark
    )
    assert back["message"] == "store faulted: robot jam during RetrieveRack R0001"


async def test_the_daemon_follows_the_store_through_a_server_restart(
    store_room: Stack, observer: Observer
) -> None:
    base = store_room.base
    await store_room.inject("store-1", "restart")
    mark = observer.mark()
    await store_room.inject("store-1", "door_open")
    try:
        # Only a subscription re-created after the restart sees the door open.
        await observer.wait_for(
            f"{base}/devices/store-1/telemetry",
            lambda b: b["values"].get("door_open") == 1 and b["values"]["state_code"] == 3,
            since=mark,
        )
    finally:
        await store_room.inject("store-1", "door_open", clear=True)
    assert store_room.daemon is not None and store_room.daemon.poll() is None


async def _sim_status(stack: Stack) -> dict[str, Any]:
    from simulators import status

    return await status(socket_path=Path(stack.control_socket))


def _client_tasks(before: set[asyncio.Task[Any]]) -> list[str]:
    """asyncua client tasks (channel renewal, watchdog, supervisor, publish loop) started since
    `before` and still running."""
    running = []
    for task in asyncio.all_tasks() - before:
        code = getattr(task.get_coro(), "cr_code", None)
        if not task.done() and code is not None and "/asyncua/client/" in code.co_filename:
            running.append(code.co_qualname)
    return running


async def test_a_session_cancelled_while_it_opens_leaves_no_client_task_behind(
    served: Served,
) -> None:
    """The driver is closed (its session task cancelled) at any point of a connect: before the
    socket, during the handshake, while browsing or subscribing. Whatever asyncua started for
    the half-open client (channel renewal, its watchdog, the publish loop, which would retry a
    dead socket every second for ever) must end with it."""
    config = served.sim.config.driver

    async def open_and_hold() -> None:
        async with open_session(config=config, device="store-1"):
            await asyncio.sleep(60)

    # How long a whole open takes here, to spread the cancellations over it.
    began = asyncio.get_running_loop().time()
    async with open_session(config=config, device="store-1"):
        opened_s = asyncio.get_running_loop().time() - began
    before = asyncio.all_tasks()
    points = [opened_s * i / 24 for i in range(26)]
    for delay in points:
        task = asyncio.create_task(open_and_hold())
        await asyncio.sleep(delay)
        await cancel_and_wait(task)  # as the driver stops its session task
        await asyncio.sleep(0)  # let what was cancelled finish
        leftover = _client_tasks(before)
        assert leftover == [], f"cancelled after {delay * 1000:.0f} ms: {leftover}"
