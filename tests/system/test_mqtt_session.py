"""`mqtt_session` leaves no socket and no task behind: after a CONNACK that never comes, after
the broker dies under a session, and after a normal session (real sockets, a real Mosquitto)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiomqtt
import pytest

from controllerd.broker import PrivateBroker
from drivers.mqtt_session import mqtt_session

pytestmark = pytest.mark.system


def _assert_released(client: aiomqtt.Client, before: set[asyncio.Task[object]]) -> None:
    """No socket kept by paho, no task left running that was not there `before`."""
    assert client._client.socket() is None
    left = sorted(
        task.get_coro().__qualname__  # type: ignore[union-attr]
        for task in asyncio.all_tasks() - before
        if task is not asyncio.current_task() and not task.done()
    )
    assert left == []


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    with PrivateBroker(workdir=tmp_path) as running:
        yield running


@pytest.fixture
async def silent_broker() -> AsyncIterator[int]:
    """A TCP listener that accepts connections and never answers: a hung broker."""
    peers: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for writer in peers:
            writer.close()
        await server.wait_closed()


async def test_a_connack_that_never_comes_leaves_no_socket_or_task(silent_broker: int) -> None:
    before = asyncio.all_tasks()
    for _attempt in range(3):  # a reconnect loop's attempts must not pile up
        client = aiomqtt.Client("127.0.0.1", port=silent_broker, timeout=0.3)
        with pytest.raises(aiomqtt.MqttError):
            async with mqtt_session(client):
                pytest.fail("connected to a broker that never answers")
        _assert_released(client, before)


async def test_a_broker_dying_under_a_session_leaves_no_socket_or_task(
    broker: PrivateBroker,
) -> None:
    before = asyncio.all_tasks()
    client = aiomqtt.Client("127.0.0.1", port=broker.port, timeout=2)
    with pytest.raises(aiomqtt.MqttError):
        async with mqtt_session(client):
            await client.subscribe("t/#")
            broker.kill()
            async with asyncio.timeout(10):
                async for _message in client.messages:
                    pass
    _assert_released(client, before)


async def test_a_normal_session_delivers_and_leaves_nothing(broker: PrivateBroker) -> None:
    before = asyncio.all_tasks()
    client = aiomqtt.Client("127.0.0.1", port=broker.port, timeout=2)
    async with mqtt_session(client):
        await client.subscribe("t/#", qos=1)
        await client.publish("t/x", b"hello", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
        assert message.payload == b"hello"
    _assert_released(client, before)
