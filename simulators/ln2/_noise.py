"""Line noise: random bytes and dropped characters, as a long unterminated RS-485 run picks up."""

from __future__ import annotations

import random


def garble(data: bytes, *, rate: float, rng: random.Random) -> bytes:
    """`data` as received through noise: each byte, with probability `rate`, is dropped,
    replaced by a random byte, or preceded by a random byte (a third of the cases each)."""
    if rate <= 0:
        return data
    out = bytearray()
    for byte in data:
        roll = rng.random()
        if roll >= rate:
            out.append(byte)
        elif roll < rate / 3:
            continue
        elif roll < 2 * rate / 3:
            out.append(rng.randrange(256))
        else:
            out += bytes([rng.randrange(256), byte])
    return bytes(out)
