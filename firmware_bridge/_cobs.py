"""Consistent Overhead Byte Stuffing (Cheshire & Baker, 1999): removes every 0x00 from a block.

`cobs_encode` output never contains 0x00, so 0x00 can delimit frames on the wire; it is at most
`len(data) // 254 + 1` bytes longer than its input. `cobs_decode` raises ValueError for input
that no `cobs_encode` call produces.
"""

from __future__ import annotations


def cobs_encode(data: bytes) -> bytes:
    """Encode `data` (any bytes) into a block without 0x00 (the delimiter is not added)."""
    out = bytearray(b"\x00")
    code_index = 0
    code = 1
    for byte in data:
        if byte == 0:
            out[code_index] = code
            code_index = len(out)
            out.append(0)
            code = 1
            continue
        out.append(byte)
        code += 1
        if code == 0xFF:
            out[code_index] = code
            code_index = len(out)
            out.append(0)
            code = 1
    out[code_index] = code
    return bytes(out)


def cobs_decode(block: bytes) -> bytes:
    """Decode one COBS block (without its delimiter); ValueError when it is not valid COBS."""
    out = bytearray()
    index = 0
    length = len(block)
    while index < length:
        code = block[index]
        if code == 0:
            raise ValueError(f"0x00 inside a COBS block at offset {index}")
        end = index + code
        if end > length:
            raise ValueError(f"COBS block ends inside a run (code {code} at offset {index})")
        run = block[index + 1 : end]
        if 0 in run:
            raise ValueError(f"0x00 inside a COBS block after offset {index}")
        out += run
        index = end
        if code != 0xFF and index < length:
            out.append(0)
    return bytes(out)
