"""The Modbus link times and retries every attempt itself: a scripted Modbus TCP server on
loopback drops, delays or answers each request, and the test reads what the wire carried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from drivers import DeviceTimeout
from drivers.modbus import ModbusTcpConfig
from drivers.modbus_client import ModbusLink
from simulators.modbus._framing import (
    ReadRequest,
    TcpFrame,
    decode_tcp,
    encode_read_response,
    encode_tcp,
    parse_request,
)

pytestmark = pytest.mark.system

TIMEOUT_S = 0.2
RETRIES = 2


@dataclass
class ScriptedServer:
    """Answers read requests with one word, the request's number (1, 2, ...), after the
    scripted delay for that request (None: never); unscripted requests are answered at once."""

    delays: list[float | None] = field(default_factory=list)
    #: (transaction id, request PDU) of every request received, in order
    requests: list[tuple[int, bytes]] = field(default_factory=list)
    #: set when a request arrives
    asked: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def serve(self) -> AsyncIterator[None]:
        server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        buffer = b""
        pending: set[asyncio.Task[None]] = set()
        try:
            while chunk := await reader.read(1024):
                buffer += chunk
                while True:
                    used, frame = decode_tcp(buffer)
                    buffer = buffer[used:]
                    if frame is None:
                        break
                    self.requests.append((frame.transaction_id, frame.pdu))
                    self.asked.set()
                    number = len(self.requests)
                    delay = self.delays[number - 1] if number <= len(self.delays) else 0.0
                    if delay is not None:
                        task = asyncio.create_task(self._answer(writer, frame, number, delay))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
        except ConnectionError:
            pass
        finally:
            for task in pending:
                task.cancel()
            writer.close()

    @staticmethod
    async def _answer(
        writer: asyncio.StreamWriter, frame: TcpFrame, number: int, delay: float
    ) -> None:
        await asyncio.sleep(delay)
        request = parse_request(frame.pdu)
        assert isinstance(request, ReadRequest)
        pdu = encode_read_response(request.function_code, [number] * request.count)
        if not writer.is_closing():
            writer.write(encode_tcp(TcpFrame(frame.transaction_id, frame.unit_id, pdu)))


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    async for _ in server.serve():
        yield server


def _link(server: ScriptedServer) -> ModbusLink:
    return ModbusLink(
        config=ModbusTcpConfig(
            type="modbus_tcp",
            host="127.0.0.1",
            port=server.port,
            timeout_s=TIMEOUT_S,
            retries=RETRIES,
            reconnect_initial_s=0.05,
            reconnect_max_s=0.1,
        )
    )


async def _read(link: ModbusLink) -> list[int]:
    return await link.read_registers(table="holding", start=10, count=2, unit_id=1, device="d")


async def test_a_lost_answer_is_asked_for_again_with_the_same_transaction_id(
    scripted: ScriptedServer,
) -> None:
    scripted.delays = [None, 0.0, 0.0]
    link = _link(scripted)
    try:
        assert await _read(link) == [2, 2]  # the second request's answer
        assert await _read(link) == [3, 3]  # the next read: its own request, its own answer
    finally:
        await link.close()
    (tid_1, pdu_1), (tid_2, pdu_2), (tid_3, _) = scripted.requests
    assert (tid_1, pdu_1) == (tid_2, pdu_2)  # the same request, sent again
    assert tid_3 != tid_1


async def test_a_silent_device_gets_every_attempt_then_a_timeout(
    scripted: ScriptedServer,
) -> None:
    scripted.delays = [None] * (RETRIES + 1)
    link = _link(scripted)
    try:
        with pytest.raises(DeviceTimeout, match=f"no answer within {TIMEOUT_S} s"):
            await _read(link)
        assert len(scripted.requests) == RETRIES + 1
        assert len({tid for tid, _ in scripted.requests}) == 1
        # A silent TCP peer is taken for a dead connection: the next read reconnects.
        await asyncio.sleep(0.15)  # past the reconnect backoff
        assert await _read(link) == [RETRIES + 2] * 2
    finally:
        await link.close()


async def test_an_answer_after_its_attempt_ended_is_not_taken_for_a_later_read(
    scripted: ScriptedServer,
) -> None:
    # Request 1 is answered late, after its retry (request 2) got the read its answer; the late
    # answer arrives while the next read waits for request 3's, and must not be taken for it.
    scripted.delays = [1.2 * TIMEOUT_S, 0.0, 0.5 * TIMEOUT_S]
    link = _link(scripted)
    try:
        assert await _read(link) == [2, 2]
        assert await _read(link) == [3, 3]
    finally:
        await link.close()
    assert len(scripted.requests) == 3


async def test_a_cancelled_read_stays_cancelled_and_the_link_stays_usable(
    scripted: ScriptedServer,
) -> None:
    scripted.delays = [5.0]
    link = _link(scripted)
    try:
        read = asyncio.create_task(_read(link))
        await scripted.asked.wait()
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        # Well past the attempt's own timeout: the link's timer must not cancel anything now.
        await asyncio.sleep(2 * TIMEOUT_S)
        assert await _read(link) == [2, 2]
        current = asyncio.current_task()
        assert current is not None and current.cancelling() == 0
    finally:
        await link.close()
