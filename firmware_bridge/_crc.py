"""CRC-16/CCITT-FALSE: polynomial 0x1021, initial value 0xFFFF, no reflection, no final XOR.

The check value of the ASCII string "123456789" is 0x29B1. `binascii.crc_hqx` is exactly this
CRC when started from 0xFFFF (it is the non-reflected 0x1021 CRC with a given initial value).
"""

from __future__ import annotations

import binascii

INITIAL = 0xFFFF


def crc16_ccitt_false(data: bytes) -> int:
    """The CRC-16/CCITT-FALSE of `data`."""
    return binascii.crc_hqx(data, INITIAL)
