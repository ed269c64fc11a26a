"""The LN2 frame codec: round trips, and a damaged line never decodes to a value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.ln2 import (
    COMMANDS,
    MAX_LINE,
    ForeignFrame,
    GarbledFrame,
    decode_reply,
    decode_request,
    encode_error,
    encode_reply,
    encode_request,
    next_line,
    parse_flag,
    parse_flags,
    parse_levels,
    parse_number,
)

TEMPA = COMMANDS["temperature_a"]


def test_request_round_trip_and_format() -> None:
    data = encode_request(1, TEMPA)
    assert data.startswith(b"001 TEMPA?*") and data.endswith(b"\r\n")
    request = decode_request(data[:-2])
    assert (request.address, request.wire, request.args) == (1, "TEMPA?", ())
    levels = decode_request(encode_request(12, COMMANDS["set_fill_levels"], (30, 80.5))[:-2])
    assert levels.args == ("30.0", "80.5")


def test_request_refuses_bad_address_and_arguments() -> None:
    with pytest.raises(ValueError, match="address"):
        encode_request(0, TEMPA)
    with pytest.raises(ValueError, match="arguments"):
        encode_request(1, COMMANDS["set_fill_levels"], (30,))


def test_reply_round_trip_and_error_reply() -> None:
    reply = decode_reply(encode_reply(7, "TEMPA?", "-197.10")[:-2], address=7, command=TEMPA)
    assert parse_number(reply.payload) == -197.10
    assert reply.error_code is None
    err = decode_reply(encode_error(7, "TEMPA?", 5)[:-2], address=7, command=TEMPA)
    assert err.error_code == 5
    assert "sensor fault" in err.error_text


def test_reply_for_another_address_or_command_is_foreign() -> None:
    with pytest.raises(ForeignFrame):
        decode_reply(encode_reply(2, "TEMPA?", "-197.10")[:-2], address=1, command=TEMPA)
    with pytest.raises(ForeignFrame):
        decode_reply(encode_reply(1, "TEMPB?", "-197.10")[:-2], address=1, command=TEMPA)


@given(
    value=st.floats(min_value=-250, max_value=250, allow_nan=False).map(lambda v: f"{v:.2f}"),
    index=st.integers(min_value=0),
    byte=st.integers(min_value=0, max_value=255),
    action=st.sampled_from(["drop", "replace", "insert"]),
)
def test_one_damaged_byte_never_decodes(value: str, index: int, byte: int, action: str) -> None:
    line = encode_reply(3, "TEMPA?", value)[:-2]
    i = index % len(line)
    if action == "drop":
        damaged = line[:i] + line[i + 1 :]
    elif action == "replace":
        if line[i] == byte:
            return
        damaged = line[:i] + bytes([byte]) + line[i + 1 :]
    else:
        damaged = line[:i] + bytes([byte]) + line[i:]
    # A CR or LF splits the line: every piece other than the intact line must be refused.
    for piece in damaged.replace(b"\r", b"\n").split(b"\n"):
        if piece and piece != line:
            with pytest.raises((GarbledFrame, ForeignFrame)):
                parse_number(decode_reply(piece, address=3, command=TEMPA).payload)


def test_framer_splits_lines_and_drops_noise() -> None:
    assert next_line(b"001 A*0000") == (0, None)
    assert next_line(b"abc\r\nrest") == (5, b"abc")
    assert next_line(b"abc\nrest") == (4, b"abc")
    assert next_line(b"\r\n") == (2, None)
    consumed, line = next_line(b"x" * (MAX_LINE + 1))
    assert consumed == MAX_LINE + 1 and line is None


@given(st.binary(max_size=400))
def test_framer_always_makes_progress_or_waits(data: bytes) -> None:
    buffer = data
    while True:
        consumed, _ = next_line(buffer)
        assert 0 <= consumed <= len(buffer)
        if consumed == 0:
            assert b"\r" not in buffer and b"\n" not in buffer and len(buffer) <= MAX_LINE
            return
        buffer = buffer[consumed:]


@pytest.mark.parametrize("payload", ["", "1.2.3", "nan", "1e5", " 1", "--1", "OPEN "])
def test_numbers_are_strict(payload: str) -> None:
    with pytest.raises(GarbledFrame):
        parse_number(payload)


def test_open_flags_levels() -> None:
    assert parse_number("OPEN") is None
    assert parse_flag("1") is True
    with pytest.raises(GarbledFrame):
        parse_flag("2")
    assert parse_flags("00A1") == 0xA1
    with pytest.raises(GarbledFrame):
        parse_flags("a1")
    assert parse_levels("30.0 80.0") == (30.0, 80.0)
    with pytest.raises(GarbledFrame):
        parse_levels("80.0 30.0")


def test_the_documented_example_frames() -> None:
    # docs/ln2-protocol.md shows these exact bytes.
    assert encode_request(1, TEMPA) == b"001 TEMPA?*63C6\r\n"
    assert encode_reply(1, "TEMPA?", "-197.10") == b"001 TEMPA? -197.10*4323\r\n"
