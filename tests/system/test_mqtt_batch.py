"""Telemetry batched per loop turn (`Qos0Batch`) reaches a real broker intact and in order."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest

from controllerd.broker import PrivateBroker
from controllerd.config import load_config
from controllerd.mqtt import MqttConnection
from controllerd.topics import Topics
from tests.unit.test_config import CONFIG_DIR

pytestmark = pytest.mark.system

# Payload sizes on both sides of the one-, two- and three-byte remaining-length encodings.
SIZES = [0, 1, 90, 127, 128, 300, 16_300, 16_384, 70_000]


async def test_batched_telemetry_arrives_whole_and_in_order(tmp_path: Path) -> None:
    config = load_config(CONFIG_DIR / "demo.toml")
    config = config.model_copy(
        update={"mqtt": config.mqtt.model_copy(update={"host": "127.0.0.1", "port": 0})}
    )
    with PrivateBroker(workdir=tmp_path) as broker:
        config = config.model_copy(
            update={"mqtt": config.mqtt.model_copy(update={"port": broker.port})}
        )
        topics = Topics(prefix=config.mqtt.prefix, site="s", controller="c")
        received: list[tuple[str, bytes]] = []
        expected: list[tuple[str, bytes]] = []
        async with aiomqtt.Client("127.0.0.1", port=broker.port) as observer:
            await observer.subscribe(f"{topics.base}/devices/#", qos=1)
            async with MqttConnection(config=config, topics=topics) as mqtt:
                async with asyncio.timeout(10):
                    await mqtt.wait_connected()
                for round_ in range(3):  # three loop turns, each one batch
                    for i, size in enumerate(SIZES):
                        topic = topics.telemetry(f"dev-{i}")
                        payload = bytes([round_ + i]) * size
                        assert await mqtt.publish(topic, payload)
                        expected.append((topic, payload))
                    # A QoS 1 message after the batch must not overtake it.
                    state = topics.device_state("dev-0")
                    assert await mqtt.publish(state, b"%d" % round_, qos=1, retain=True)
                    expected.append((state, b"%d" % round_))
                    await asyncio.sleep(0)
                async with asyncio.timeout(10):
                    async for message in observer.messages:
                        assert isinstance(message.payload, bytes)
                        received.append((message.topic.value, message.payload))
                        if len(received) == len(expected):
                            break
                assert mqtt.dropped == 0
    # Each topic keeps its own order; the state topic gets every round after that round's data.
    assert sorted(received) == sorted(expected)
    state_rounds = [p for t, p in received if t.endswith("/state")]
    assert state_rounds == [b"0", b"1", b"2"]
    per_round = len(SIZES) + 1
    for round_ in range(3):
        state_at = received.index(expected[round_ * per_round + len(SIZES)])
        batch = expected[round_ * per_round : round_ * per_round + len(SIZES)]
        assert all(received.index(item) < state_at for item in batch if item[1])
    for i in range(len(SIZES)):
        topic = topics.telemetry(f"dev-{i}")
        assert [p for t, p in received if t == topic] == [p for t, p in expected if t == topic]
