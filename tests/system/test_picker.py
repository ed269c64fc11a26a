"""The firmware bridge against the picker MCU simulator on a real pseudo-terminal.

Every motion call completes through dropped and bit-flipped frames (both ways) and through line
noise without running anything twice; a silent controller is a communication loss, found by the
heartbeat supervision before the retry budget would run out (tests/unit/firmware_bridge/
test_heartbeat.py pins the deadline itself); `stop` interrupts a running move; an incompatible
firmware is refused at `hello`; the simulator answers a retransmission from its reply cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import serial_asyncio_fast

from controllerd.config import TubePickerConfig, load_config
from controllerd.sim_config import PickerSimulation
from drivers import DriverError, NotConnected, Reading
from firmware_bridge import (
    CommandRejected,
    CommunicationLost,
    FirmwareSerialConfig,
    IncompatibleFirmware,
    MotionConfig,
    MotionFault,
    PickerDriver,
)
from firmware_bridge.protocol import (
    Frame,
    FrameReader,
    HelloArgs,
    Message,
    decode_message,
    encode_frame,
    encode_message,
)
from simulators import SimulatedRoom
from simulators._clock import SimClock
from simulators._station import PickStation, SimRack, default_station
from simulators.picker import PickerSimulator
from tests.system._simroom import write_demo_config

pytestmark = pytest.mark.system

BARCODES = {f"A{column}": f"TUBE-{column:03d}" for column in range(1, 13)}


@pytest.fixture
def station() -> PickStation:
    station = default_station()
    station.put("P1", SimRack.filled("R1", BARCODES))
    station.put("P2", SimRack.empty("R2"))
    return station


def _simulator(
    tmp_path: Path, station: PickStation, *, speed: float = 100.0, **params: object
) -> PickerSimulator:
    return PickerSimulator(
        device_id="picker-t",
        path=tmp_path / "picker",
        station=station,
        clock=SimClock(speed=speed),
        params=PickerSimulation.model_validate({"heartbeat_ms": 50, **params}),
        motion=MotionConfig(),
    )


def _driver(tmp_path: Path, **link: object) -> PickerDriver:
    settings = {
        "type": "firmware_serial",
        "port": str(tmp_path / "picker"),
        "timeout_s": 0.1,
        "retries": 8,
        "heartbeat_timeout_s": 1.0,
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.1,
        **link,
    }
    return PickerDriver(
        device_id="picker-t",
        config=FirmwareSerialConfig.model_validate(settings),
        motion=MotionConfig(),
    )


@pytest.fixture
async def sim(tmp_path: Path, station: PickStation) -> AsyncIterator[PickerSimulator]:
    async with _simulator(tmp_path, station) as simulator:
        yield simulator


@pytest.fixture
async def picker(tmp_path: Path, sim: PickerSimulator) -> AsyncIterator[PickerDriver]:
    async with _driver(tmp_path) as driver:
        await driver.connect()
        yield driver


async def _eventually(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polls a simulator's state, which has no event
            await asyncio.sleep(0.01)


async def test_motions_complete_through_drops_and_bit_flips_without_running_twice(
    picker: PickerDriver, sim: PickerSimulator, station: PickStation
) -> None:
    assert sim.params.fault_rate == 0.05
    sim.inject("drop")
    sim.inject("corrupt")
    motion = picker.motion
    await motion.home()
    moved = 0
    for column in range(1, 7):
        src = station.position_xy_mm("P1", f"A{column}")
        dst = station.position_xy_mm("P2", f"B{column}")
        reached = await motion.move_to(x_mm=src[0], y_mm=src[1])
        assert (reached.x_mm, reached.y_mm) == pytest.approx(src)
        assert await motion.scan() == BARCODES[f"A{column}"]
        await motion.pick()
        await motion.move_to(x_mm=dst[0], y_mm=dst[1])
        await motion.place()
        moved += 1
    status = await motion.status()
    assert status.homed and not status.holding and not status.moving

    assert sim.model.duplicate_executions() == []
    executions = sim.model.executions
    assert executions["home"] == 1
    assert executions["move"] == 2 * moved
    assert executions["scan"] == executions["pick"] == executions["place"] == moved
    rack = station.racks["P2"]
    assert rack is not None
    assert [rack.tubes[f"B{c}"] for c in range(1, 7)] == [BARCODES[f"A{c}"] for c in range(1, 7)]

    # The faults really were on the line: frames lost, and bit-flipped frames reaching both
    # readers (the host's and the firmware's), each dropped for its CRC. Corruption is random,
    # so a few more cheap requests make sure both directions saw some.
    link = await picker.link()
    for _ in range(400):
        if link.frame_errors > 0 and sim.bad_frames > 0:
            break
        await motion.status()
    assert sim.frames_dropped > 0
    assert link.frame_errors > 0, "no corrupted frame reached the host"
    assert sim.bad_frames > 0, "no corrupted frame reached the firmware"
    assert sim.model.duplicate_executions() == []
    assert link.lost is None  # one session throughout: the faults never cost the link


async def test_line_noise_both_ways_costs_only_the_frames_it_touches(
    tmp_path: Path, picker: PickerDriver, sim: PickerSimulator, station: PickStation
) -> None:
    motion = picker.motion
    await motion.home()
    link = await picker.link()
    host_errors, firmware_errors = link.frame_errors, sim.bad_frames
    # Towards the host: a run with no delimiter longer than any frame, a bad block, and the
    # start of a frame that swallows the beginning of whatever the firmware sends next.
    sim.write_line_noise(bytes(range(1, 256)) * 2 + b"\x01\x02\x00" + b"\x07\x13\x37")
    # Towards the firmware: the same, written into the port by a second opener, so the next
    # request arrives glued to junk and only its retransmission gets through.
    fd = os.open(tmp_path / "picker", os.O_WRONLY | os.O_NOCTTY)
    try:
        os.write(fd, b"\xff" * 300 + b"\x01\x02\x00" + b"\x05\x05")
    finally:
        os.close(fd)

    a1 = station.position_xy_mm("P1", "A1")
    reached = await motion.move_to(x_mm=a1[0], y_mm=a1[1])
    assert (reached.x_mm, reached.y_mm) == pytest.approx(a1)
    assert await motion.scan() == BARCODES["A1"]

    assert link.frame_errors >= host_errors + 2
    assert sim.bad_frames >= firmware_errors + 2
    assert sim.model.duplicate_executions() == []
    assert sim.model.executions["move"] == 1
    assert link.lost is None and await picker.link() is link  # resynced, not reopened


async def test_a_retransmitted_request_is_answered_from_the_reply_cache(
    tmp_path: Path, sim: PickerSimulator
) -> None:
    reader, writer = await serial_asyncio_fast.open_serial_connection(
        url=str(tmp_path / "picker"), baudrate=115200
    )
    frames = FrameReader()

    def send(seq: int, message: Message) -> None:
        writer.write(encode_frame(Frame(version=1, seq=seq, payload=encode_message(message))))

    async def replies(seq: int, count: int) -> list[str]:
        got: list[str] = []
        async with asyncio.timeout(10):
            while len(got) < count:
                for frame in frames.feed(await reader.read(1024)):
                    if frame.seq == seq:
                        got.append(decode_message(frame.payload).op)
        return got

    try:
        send(1, Message.of("hello", HelloArgs(versions=[1])))
        assert await replies(1, 1) == ["ack"]
        send(2, Message.of("home"))
        send(2, Message.of("home"))  # the same request again: a retransmission
        assert await replies(2, 3) == ["ack", "ack", "done"]
        send(2, Message.of("home"))
        assert await replies(2, 1) == ["done"]  # the last reply, not a second home
        assert sim.model.executions["home"] == 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_silence_is_a_communication_loss_before_the_retries_run_out(
    tmp_path: Path, sim: PickerSimulator
) -> None:
    # 0.5 s x 11 attempts would be 5.5 s; the heartbeat timeout is 1 s.
    async with _driver(tmp_path, timeout_s=0.5, retries=10) as driver:
        await driver.motion.home()
        assert (await driver.read()).values["homed"] == 1
        move = asyncio.create_task(driver.motion.move_to(x_mm=600.0, y_mm=150.0))
        await asyncio.sleep(0)
        sim.inject("silent")
        with pytest.raises(CommunicationLost, match="heartbeat timeout"):
            await move
        with pytest.raises(NotConnected):
            await driver.read()  # the poller reports the device down
        sim.inject("silent", clear=True)
        reading = await _read_when_back(driver)
        assert reading.values["homed"] == 1
        assert sim.model.session == 2  # a new hello: a new session


async def _reading_where(driver: PickerDriver, predicate: Callable[[Reading], bool]) -> None:
    """Read (the latest heartbeat) until one satisfies `predicate`."""
    async with asyncio.timeout(10):
        while not predicate(await driver.read()):  # noqa: ASYNC110 - heartbeats, no event
            await asyncio.sleep(0.02)


async def _read_when_back(driver: PickerDriver) -> Reading:
    async with asyncio.timeout(10):
        while True:
            try:
                return await driver.read()
            except DriverError:
                await asyncio.sleep(0.05)


async def test_stop_interrupts_a_running_move(tmp_path: Path, station: PickStation) -> None:
    async with _simulator(tmp_path, station, speed=2.0) as sim, _driver(tmp_path) as driver:
        await driver.motion.home()
        move = asyncio.create_task(driver.motion.move_to(x_mm=650.0, y_mm=0.0))
        await _eventually(lambda: sim.model.current is not None)
        stopped_at = await driver.motion.stop()
        with pytest.raises(MotionFault) as info:
            await move
        assert info.value.code_name == "stopped"
        assert 0 < stopped_at.x_mm < 650
        status = await driver.motion.status()
        assert not status.moving and status.position.x_mm == pytest.approx(stopped_at.x_mm)
        assert sim.model.executions["move"] == 1


async def test_a_cancelled_move_is_stopped_and_the_link_resyncs(
    tmp_path: Path, station: PickStation
) -> None:
    async with _simulator(tmp_path, station, speed=2.0) as sim, _driver(tmp_path) as driver:
        await driver.motion.home()
        move = asyncio.create_task(driver.motion.move_to(x_mm=650.0, y_mm=0.0))
        await _eventually(lambda: sim.model.current is not None)
        move.cancel()
        with pytest.raises(asyncio.CancelledError):
            await move
        await _eventually(lambda: sim.model.current is None)
        status = await driver.motion.status()
        assert not status.moving and status.position.x_mm < 650
        reached = await driver.motion.move_to(x_mm=20.0, y_mm=20.0)
        assert (reached.x_mm, reached.y_mm) == (20.0, 20.0)


async def test_incompatible_firmware_is_refused_at_hello(
    tmp_path: Path, station: PickStation
) -> None:
    async with _simulator(tmp_path, station, protocol_version=2), _driver(tmp_path) as driver:
        with pytest.raises(IncompatibleFirmware) as info:
            await driver.connect()
    message = str(info.value)
    assert "protocol version 2" in message and "this host speaks version 1" in message
    assert info.value.firmware_versions == (2,) and info.value.host_versions == (1,)


async def test_injected_faults(
    picker: PickerDriver, sim: PickerSimulator, station: PickStation
) -> None:
    motion = picker.motion
    await motion.home()
    sim.inject("jam")
    with pytest.raises(MotionFault) as jam:
        await motion.move_to(x_mm=600.0, y_mm=100.0)
    assert jam.value.code_name == "jam"
    await _reading_where(picker, lambda r: r.faults == {"motion": "jam"})
    sim.inject("jam", clear=True)

    a1 = station.position_xy_mm("P1", "A1")
    await motion.move_to(x_mm=a1[0], y_mm=a1[1])
    sim.inject("misread")
    reads = {await motion.scan() for _ in range(8)}
    assert BARCODES["A1"] not in reads
    sim.inject("misread", clear=True)

    sim.inject("nak")
    with pytest.raises(CommandRejected) as nak:
        await motion.scan()
    assert nak.value.code_name == "refused"
    sim.inject("nak", clear=True)

    sim.inject("estop")
    with pytest.raises(CommandRejected) as estop:
        await motion.move_to(x_mm=30.0, y_mm=30.0)
    assert estop.value.code_name == "estop_active"
    await _reading_where(picker, lambda r: r.values["estop"] == 1)
    sim.inject("estop", clear=True)
    with pytest.raises(CommandRejected, match="not_homed"):
        await motion.move_to(x_mm=30.0, y_mm=30.0)
    await motion.home()


async def test_the_room_serves_the_demo_picker(tmp_path: Path) -> None:
    config = load_config(write_demo_config(tmp_path, speed=50.0))
    device = next(d for d in config.devices if isinstance(d, TubePickerConfig))
    async with SimulatedRoom(config=config) as room:
        assert f"{device.id} firmware_serial {device.driver.port}" in room.ready_line()
        async with PickerDriver(device_id=device.id, config=device.driver) as driver:
            assert (await driver.read()).values["homed"] == 0
            await room.inject(device.id, "estop")
            await _eventually(lambda: room.status()["devices"][device.id]["faults"] == ["estop"])
            assert room.status()["devices"][device.id]["answering"] is True
