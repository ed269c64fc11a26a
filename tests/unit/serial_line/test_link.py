"""The shared serial line (`drivers.serial_line`) over a real pty and a real TCP socket.

Every test runs against both transports, with the far end (`_peer`) served in this process. The
requests are LN2-style frames `AAA GET NONCE`, answered `AAA GET NONCE VALUE`: the address tells
two devices on one line apart, the nonce ties a reply to its exchange.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from drivers import ConnectFailed, DeviceTimeout, DriverError, NotConnected, ProtocolError
from drivers.ln2 import GarbledFrame, frame, next_line, unframe
from drivers.serial_line import LineSettings, SerialLine
from tests.unit.serial_line._peer import Peer, PtyPeer, Respond, TcpPeer

TRANSPORTS = ["pty", "tcp"]


@asynccontextmanager
async def open_peer(
    kind: str, tmp_path: Path, respond: Respond, **options: float
) -> AsyncIterator[Peer]:
    peer: PtyPeer | TcpPeer
    if kind == "pty":
        peer = PtyPeer(tmp_path / "ttyLINE", respond, **options)
    else:
        peer = TcpPeer(respond, **options)
    async with peer:
        yield peer


@asynccontextmanager
async def open_line(
    peer: Peer, *, gap_s: float = 0.0, reconnect_initial_s: float = 0.5, reconnect_max_s: float = 5
) -> AsyncIterator[SerialLine]:
    settings = LineSettings(
        port=peer.port,
        gap_s=gap_s,
        reconnect_initial_s=reconnect_initial_s,
        reconnect_max_s=reconnect_max_s,
    )
    line = SerialLine(settings=settings, framer=next_line)
    try:
        yield line
    finally:
        await line.close()


def request(address: int, nonce: str) -> bytes:
    return frame(f"{address:03d} GET {nonce}")


def reply(address: int, nonce: str, value: int) -> bytes:
    return frame(f"{address:03d} GET {nonce} {value}")


def parse(line: bytes) -> tuple[int, str, str]:
    """(address, nonce, payload) of a request or reply line; GarbledFrame when damaged."""
    parts = unframe(line).split(" ")
    if len(parts) not in (3, 4) or parts[1] != "GET" or not parts[0].isdigit():
        raise GarbledFrame(f"not a GET frame: {line!r}")
    return int(parts[0]), parts[2], parts[3] if len(parts) == 4 else ""


def accept_for(address: int, nonce: str) -> Callable[[bytes], int | None]:
    """The reply to `address`'s request `nonce`: None for another frame, ValueError if damaged."""

    def accept(line: bytes) -> int | None:
        got_address, got_nonce, payload = parse(line)
        if (got_address, got_nonce) != (address, nonce):
            return None
        return int(payload)

    return accept


async def ask(line: SerialLine, address: int, nonce: str, **options: float) -> int:
    return await line.exchange(
        request(address, nonce),
        accept=accept_for(address, nonce),
        timeout_s=options.get("timeout_s", 2.0),
        retries=int(options.get("retries", 0)),
        device=f"dev-{address}",
        operation="GET",
    )


def answer_with(value: Callable[[int, str], int]) -> Respond:
    def respond(line: bytes) -> Sequence[bytes]:
        address, nonce, _ = parse(line)
        return [reply(address, nonce, value(address, nonce))]

    return respond


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_two_addresses_take_turns_and_keep_the_gap(kind: str, tmp_path: Path) -> None:
    gap_s = 0.02

    def value(address: int, nonce: str) -> int:
        return address * 1000 + int(nonce)

    # The peer answers 5 ms late, so without the lock the other device's request would overlap.
    respond = answer_with(value)
    async with (
        open_peer(kind, tmp_path, respond, reply_after_s=0.005) as peer,
        open_line(peer, gap_s=gap_s) as line,
    ):

        async def device(address: int) -> list[int]:
            return [await ask(line, address, str(i)) for i in range(8)]

        first, second = await asyncio.gather(device(1), device(2))
    assert first == [1000 + i for i in range(8)] and second == [2000 + i for i in range(8)]
    log = peer.log
    assert [e.direction for e in log] == ["rx", "tx"] * 16  # one exchange on the line at a time
    for request_event, reply_event in zip(log[::2], log[1::2], strict=True):
        assert parse(request_event.line)[:2] == parse(reply_event.line)[:2]
    assert {parse(e.line)[0] for e in log[::2]} == {1, 2}
    for reply_event, next_request in zip(log[1::2], log[2::2], strict=False):
        # As the far end saw it: the line stayed silent at least the gap after each reply.
        assert next_request.t - reply_event.t >= gap_s


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_foreign_and_stale_replies_are_skipped(kind: str, tmp_path: Path) -> None:
    def respond(line: bytes) -> Sequence[bytes]:
        address, nonce, _ = parse(line)
        # Another device's intact reply, then a reply to an older request, then ours.
        return [
            reply(address + 1, nonce, 666),
            reply(address, "old", 777),
            reply(address, nonce, 5),
        ]

    async with open_peer(kind, tmp_path, respond) as peer, open_line(peer) as line:
        assert await ask(line, 1, "n1") == 5
    assert line.discarded_frames == 2
    assert len(peer.heard()) == 1  # skipped, not retried


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_garbled_line_fails_the_attempt_and_the_retry_resyncs(
    kind: str, tmp_path: Path
) -> None:
    answers = iter(["flipped", "good", "good+junk", "good", "flipped", "flipped"])

    def respond(line: bytes) -> Sequence[bytes]:
        address, nonce, _ = parse(line)
        good = reply(address, nonce, 42)
        match next(answers):
            case "flipped":  # one byte changed on the line: the checksum catches it
                return [good.replace(b"42", b"43")]
            case "good+junk":  # a half line of noise after the reply, in the same write
                return [good + b"\x00\xff001 GE"]
        return [good]

    async with open_peer(kind, tmp_path, respond) as peer, open_line(peer) as line:
        assert await ask(line, 1, "a", retries=1) == 42
        assert line.discarded_frames == 1 and len(peer.heard()) == 2
        assert await ask(line, 1, "b") == 42
        # The junk left after the last reply is drained, never glued to the next reply.
        assert await ask(line, 1, "c") == 42
        assert line.drained_bytes > 0
        with pytest.raises(ProtocolError) as damaged:
            await ask(line, 1, "d", retries=1)
        assert damaged.value.device == "dev-1" and damaged.value.operation == "GET"
        assert "damaged reply" in str(damaged.value)


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_silence_is_a_timeout_after_the_retries(kind: str, tmp_path: Path) -> None:
    async with open_peer(kind, tmp_path, lambda line: []) as peer, open_line(peer) as line:
        with pytest.raises(DeviceTimeout) as silent:
            await ask(line, 7, "x", timeout_s=0.05, retries=2)
    assert silent.value.device == "dev-7"
    assert len(peer.heard()) == 3


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_a_vanished_port_is_reopened_with_capped_backoff(kind: str, tmp_path: Path) -> None:
    initial_s, max_s = 0.05, 0.2
    respond = answer_with(lambda address, nonce: 1)
    async with (
        open_peer(kind, tmp_path, respond) as peer,
        open_line(peer, reconnect_initial_s=initial_s, reconnect_max_s=max_s) as line,
    ):
        assert isinstance(peer, PtyPeer | TcpPeer)
        assert await ask(line, 1, "up") == 1
        await _plug(peer, plugged=False)
        async with asyncio.timeout(30):
            while line.reconnect_failures < 5:
                try:
                    await ask(line, 1, "down", timeout_s=0.2)
                except NotConnected as exc:
                    failures = line.reconnect_failures
                    ceiling = min(max_s, initial_s * 2 ** (failures - 1))
                    assert 0 < exc.retry_in_s <= ceiling  # doubles per failure, up to the cap
                    # Asking again at once does not reopen: nothing happens before the delay
                    # (at most one attempt, should this loop itself outlast the delay).
                    outcomes = [await _connect_error(line) for _ in range(10)]
                    assert outcomes.count("NotConnected") >= 9
                    assert line.reconnect_failures <= failures + 1
                    await asyncio.sleep(exc.retry_in_s)
                except (ConnectFailed, DeviceTimeout):
                    pass  # a failed reopen, or the loss noticed mid-exchange: counted once
                else:
                    raise AssertionError("an answer from an unplugged port")
            await _plug(peer, plugged=True)
            while True:
                try:
                    assert await ask(line, 1, "back", timeout_s=0.5) == 1
                    break
                except NotConnected as exc:
                    await asyncio.sleep(exc.retry_in_s)
        assert line.reconnect_failures == 0  # forgotten once the line is up


async def _plug(peer: PtyPeer | TcpPeer, *, plugged: bool) -> None:
    if isinstance(peer, PtyPeer):
        peer.replug() if plugged else peer.unplug()
    else:
        await (peer.replug() if plugged else peer.unplug())


async def _connect_error(line: SerialLine) -> str:
    try:
        await line.connect(device="dev-1")
    except DriverError as exc:
        return type(exc).__name__
    return "connected"


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_noise_both_ways_never_returns_a_wrong_value(kind: str, tmp_path: Path) -> None:
    truth = {"value": 0}
    rng = random.Random(11)
    respond = answer_with(lambda address, nonce: truth["value"])
    returned: list[tuple[int, int]] = []
    failed = 0
    async with (
        open_peer(kind, tmp_path, respond, noise=0.02, seed=5) as peer,
        open_line(peer, gap_s=0.001) as line,
    ):
        for i in range(60):
            truth["value"] = rng.randrange(1_000_000)  # the far end's state changes every time
            try:
                value = await ask(line, 3, str(i), timeout_s=0.04, retries=2)
            except (DeviceTimeout, ProtocolError):
                failed += 1
                continue
            returned.append((value, truth["value"]))
    assert all(value == true for value, true in returned)  # never a wrong value
    assert len(returned) > 20  # the retries get most exchanges through
    assert line.discarded_frames > 0 or failed > 0  # and the noise did reach the link
