"""A real aiomqtt Message built in memory, for handlers under unit test."""

from __future__ import annotations

import aiomqtt


def fake_message(payload: bytes, topic: str = "biobank/s/inventory/acks/r") -> aiomqtt.Message:
    return aiomqtt.Message(topic=topic, payload=payload, qos=1, retain=True, mid=1, properties=None)
