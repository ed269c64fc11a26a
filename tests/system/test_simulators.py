"""The simulators as the daemon sees them: real pymodbus clients over TCP and a pty."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from controllerd.config import Config, load_config
from drivers.modbus import (
    ModbusRtuConfig,
    ModbusTcpConfig,
    decode_value,
    encode_value,
    values_by_name,
)
from simulators import ControlError, SimulatedRoom, inject, status
from tests.system._simroom import REPO, write_demo_config

pytestmark = pytest.mark.system
SPEED = 200.0


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return load_config(write_demo_config(tmp_path, speed=SPEED))


@pytest.fixture
async def room(config: Config) -> AsyncIterator[SimulatedRoom]:
    async with SimulatedRoom(config=config) as simulated:
        yield simulated


def _socket(config: Config) -> Path:
    assert config.simulator is not None
    return config.simulator.control_socket


def _tcp(config: Config, device: str) -> AsyncModbusTcpClient:
    link = config.device(device).driver
    assert isinstance(link, ModbusTcpConfig)
    return AsyncModbusTcpClient("127.0.0.1", port=link.port, timeout=0.3, retries=0)


def _rtu(config: Config) -> AsyncModbusSerialClient:
    link = config.device("probe-1").driver
    assert isinstance(link, ModbusRtuConfig)
    return AsyncModbusSerialClient(
        port=link.port,
        framer=FramerType.RTU,
        baudrate=link.baudrate,
        parity=link.parity,
        stopbits=link.stopbits,
        timeout=0.3,
        retries=0,
    )


async def _temperature(
    config: Config, client: AsyncModbusTcpClient | AsyncModbusSerialClient, device: str
) -> float:
    spec = values_by_name(config.device(device).registers)["temperature_c"]
    reply = await client.read_input_registers(
        spec.address, count=spec.width, device_id=config.device(device).driver.unit_id
    )
    assert not reply.isError(), reply
    return decode_value(spec, reply.registers)


async def test_plausible_values_over_tcp_and_rtu(config: Config, room: SimulatedRoom) -> None:
    for device in ("freezer-1", "freezer-2"):
        client = _tcp(config, device)
        assert await client.connect()
        assert -90 < await _temperature(config, client, device) < -70
        client.close()
    client = _rtu(config)
    assert await client.connect()
    for device, low, high in (
        ("probe-1", -90, -70),
        ("probe-2", -90, -70),
        ("probe-3", 15, 30),
        ("probe-4", 15, 30),
    ):
        assert low < await _temperature(config, client, device) < high
    client.close()
    assert room.ready_line().startswith("simulators ready: freezer-1 tcp 127.0.0.1:")


async def test_setpoint_write_reaches_the_model(config: Config, room: SimulatedRoom) -> None:
    spec = values_by_name(config.device("freezer-2").registers)["setpoint_c"]
    client = _tcp(config, "freezer-2")
    assert await client.connect()
    reply = await client.write_registers(spec.address, encode_value(spec, -70.0), device_id=1)
    assert not reply.isError()
    assert room.status()["devices"]["freezer-2"]["setpoint_c"] == -70.0
    refused = await client.write_registers(spec.address, encode_value(spec, 30.0), device_id=1)
    assert refused.isError() and refused.exception_code == 3
    unmapped = await client.read_holding_registers(100, count=1, device_id=1)
    assert unmapped.isError() and unmapped.exception_code == 2
    client.close()


async def test_tcp_disconnect_refuses_until_cleared(config: Config, room: SimulatedRoom) -> None:
    client = _tcp(config, "freezer-1")
    assert await client.connect()
    await inject("freezer-1", "disconnect", socket_path=_socket(config))
    with pytest.raises(ModbusException):
        await client.read_input_registers(0, count=1, device_id=1)
    client.close()
    fresh = _tcp(config, "freezer-1")
    assert not await fresh.connect()
    fresh.close()
    await inject("freezer-1", "disconnect", clear=True, socket_path=_socket(config))
    again = _tcp(config, "freezer-1")
    assert await again.connect()
    assert -90 < await _temperature(config, again, "freezer-1") < -70
    again.close()


async def test_rtu_faults(config: Config, room: SimulatedRoom) -> None:
    sock = _socket(config)
    client = _rtu(config)
    assert await client.connect()
    await inject("probe-2", "power_fail", socket_path=sock)
    with pytest.raises(ModbusException):
        await client.read_input_registers(0, count=1, device_id=2)
    assert 15 < await _temperature(config, client, "probe-3") < 30, "other units still answer"

    await inject("probe-1", "sensor_open", socket_path=sock)
    reply = await client.read_input_registers(0, count=1, device_id=1)
    assert reply.registers == [0x8000]
    await inject("probe-1", "sensor_open", clear=True, socket_path=sock)

    await inject("probe-3", "stuck", socket_path=sock)
    words = set()
    for _ in range(4):
        words.add(tuple((await client.read_input_registers(0, count=1, device_id=3)).registers))
        await asyncio.sleep(0.1)  # 20 simulated seconds: noise would change the words
    assert len(words) == 1
    await inject("probe-3", "stuck", clear=True, socket_path=sock)

    await inject("probe-4", "garbage", socket_path=sock)
    failures = 0
    for _ in range(8):
        try:
            reply = await client.read_input_registers(0, count=1, device_id=4)
        except ModbusException:
            failures += 1
        else:
            failures += reply.isError()
    assert failures >= 4
    await inject("probe-4", "garbage", clear=True, socket_path=sock)
    await inject("probe-2", "power_fail", clear=True, socket_path=sock)
    await asyncio.sleep(0.05)  # let late garbage drain before the client's next request
    for device in ("probe-1", "probe-2", "probe-4"):
        await _temperature(config, client, device)
    client.close()


async def test_freezer_faults_show_in_registers(config: Config, room: SimulatedRoom) -> None:
    sock = _socket(config)
    client = _tcp(config, "freezer-1")
    assert await client.connect()
    await inject("freezer-1", "door_open", socket_path=sock)
    await inject("freezer-1", "compressor_fail", socket_path=sock)
    await asyncio.sleep(0.2)
    regs = (await client.read_input_registers(0, count=4, device_id=1)).registers
    assert regs[1] == 1 and regs[2] == 0 and regs[3] & 0b110 == 0b110
    await inject("freezer-1", "garbage", socket_path=sock)
    for _ in range(5):
        try:
            await client.read_input_registers(0, count=4, device_id=1)
        except ModbusException:
            client.close()
            assert await client.connect()
    await inject("freezer-1", "garbage", clear=True, socket_path=sock)
    with pytest.raises(ControlError, match="needs fault_codes"):
        await inject("freezer-2", "sensor_open", socket_path=sock)
    state = await status(socket_path=sock)
    assert state["devices"]["freezer-1"]["faults"] == ["compressor_fail", "door_open"]
    client.close()


async def _line(stream: asyncio.StreamReader, prefix: str) -> str:
    while True:
        line = (await stream.readline()).decode()
        assert line, f"stream ended before {prefix!r}"
        if line.startswith(prefix):
            return line


async def test_cli_run_and_inject(tmp_path: Path) -> None:
    config_path = write_demo_config(tmp_path)
    config = load_config(config_path)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "simulators",
        "run",
        "-c",
        str(config_path),
        "--speed",
        "50",
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready = await asyncio.wait_for(_line(proc.stdout, "simulators ready:"), 20)
        assert "probe-4 rtu " in ready and " unit 4" in ready

        async def cli(*args: str) -> tuple[int, str, str]:
            sub = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "simulators",
                *args,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=REPO,
                env=env,
            )
            out, err = await sub.communicate()
            assert sub.returncode is not None
            return sub.returncode, out.decode(), err.decode()

        code, _, _ = await cli("inject", "freezer-2", "door_open", "-c", str(config_path))
        assert code == 0
        code, out, _ = await cli("status", "--socket", str(_socket(config)))
        assert code == 0 and '"door_open": true' in out
        code, _, err = await cli("inject", "probe-1", "door_open", "-c", str(config_path))
        assert code == 1 and "a probe has no 'door_open'" in err
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert not _socket(config).exists()
    assert not (tmp_path / "rs485-a").is_symlink()
