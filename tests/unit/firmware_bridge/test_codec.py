"""The pure codecs: COBS, CRC, frames and every message round-trip; any bytes fed to the
decoders yield frames, messages or the codec's own error, never another exception or a hang."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.protocol import (
    ACKS,
    MAX_ENCODED,
    MAX_PAYLOAD,
    REPLIES,
    REQUESTS,
    CodecError,
    ErrorCode,
    Frame,
    FrameError,
    FrameReader,
    Message,
    MessageError,
    MotionConfig,
    cobs_decode,
    cobs_encode,
    code_name,
    crc16_ccitt_false,
    decode_frame,
    decode_message,
    encode_frame,
    encode_message,
    parse_ack,
)

frames = st.builds(
    Frame,
    version=st.integers(0, 255),
    seq=st.integers(0, 0xFFFF),
    payload=st.binary(max_size=MAX_PAYLOAD),
)


def test_crc_check_value() -> None:
    assert crc16_ccitt_false(b"123456789") == 0x29B1


@given(st.binary(max_size=1200))
def test_cobs_round_trip_and_no_zero(data: bytes) -> None:
    block = cobs_encode(data)
    assert 0 not in block
    assert len(block) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(block) == data


@given(frames)
def test_frame_round_trip(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    assert len(wire) <= MAX_ENCODED
    assert decode_frame(wire + b"\x01\x02") == (len(wire), frame)


@given(st.lists(frames, max_size=6), st.integers(1, 7))
def test_reader_finds_frames_however_the_bytes_arrive(frame_list: list[Frame], step: int) -> None:
    wire = b"".join(encode_frame(f) for f in frame_list)
    reader = FrameReader()
    got: list[Frame] = []
    for index in range(0, len(wire), step):
        got += reader.feed(wire[index : index + step])
    assert got == frame_list
    assert reader.errors == 0


@given(st.binary(max_size=600), frames)
def test_reader_resyncs_after_garbage(garbage: bytes, frame: Frame) -> None:
    reader = FrameReader()
    # The garbage ends with a delimiter, as a real line's noise eventually does.
    got = reader.feed(garbage + b"\x00" + encode_frame(frame))
    assert got[-1] == frame


@given(st.binary(max_size=2 * MAX_ENCODED))
@settings(max_examples=400)
def test_any_bytes_decode_to_a_frame_or_a_frame_error(data: bytes) -> None:
    buffer = data
    for _ in range(len(data) + 1):  # each step consumes at least one byte, or stops
        try:
            consumed, _frame = decode_frame(buffer)
        except FrameError as exc:
            consumed = exc.consumed
            assert consumed > 0
        if consumed == 0:
            break
        buffer = buffer[consumed:]
    else:
        pytest.fail("the decoder did not make progress")


def test_bad_crc_is_named() -> None:
    body = b"\x01\x00\x07\x80"
    bad_crc = (crc16_ccitt_false(body) ^ 0x0100).to_bytes(2, "big")
    wire = cobs_encode(body + bad_crc) + b"\x00"
    with pytest.raises(FrameError, match="CRC mismatch") as info:
        decode_frame(wire)
    assert info.value.consumed == len(wire)


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        encode_frame(Frame(version=1, seq=1, payload=bytes(MAX_PAYLOAD + 1)))
    with pytest.raises(FrameError, match="no delimiter"):
        decode_frame(b"\x01" * MAX_ENCODED)


# ---------------------------------------------------------------- messages

_int32 = st.integers(-(2**31), 2**31 - 1)
_pos32 = st.integers(1, 2**31 - 1)
_text = st.text(max_size=20)
_axis = st.fixed_dictionaries({"v_um_s": _pos32, "a_um_s2": _pos32})
_position = {"x_um": _int32, "y_um": _int32, "z_um": _int32}
_status = st.fixed_dictionaries(
    {
        **_position,
        "homed": st.booleans(),
        "holding": st.booleans(),
        "moving": st.booleans(),
        "estop": st.booleans(),
        "faults": st.lists(st.integers(0, 255), max_size=8),
    }
)
_code = st.fixed_dictionaries({"code": st.integers(0, 255), "message": st.text(max_size=30)})
ARGS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "hello": st.fixed_dictionaries(
        {"versions": st.lists(st.integers(1, 255), min_size=1, max_size=8), "host": _text}
    ),
    "move": st.fixed_dictionaries({"x_um": _int32, "y_um": _int32}),
    "set_motion": st.fixed_dictionaries(
        {
            "x": _axis,
            "y": _axis,
            "pick_ms": st.integers(0, 2**31 - 1),
            "place_ms": st.integers(0, 2**31 - 1),
            "scan_ms": st.integers(0, 2**31 - 1),
        }
    ),
    "done": st.fixed_dictionaries(
        {**_position, "holding": st.booleans(), "barcode": st.none() | st.text(max_size=30)}
    ),
    "nak": _code,
    "fault": _code,
    "heartbeat": _status,
}
ACK_ARGS: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "hello": st.fixed_dictionaries(
        {
            "version": st.integers(0, 255),
            "versions": st.lists(st.integers(1, 255), min_size=1, max_size=8),
            "firmware": _text,
            "capabilities": st.lists(st.text(max_size=12), max_size=9),
            "heartbeat_ms": _pos32,
        }
    ),
    "status": _status,
    "stop": st.fixed_dictionaries(_position),
}
messages = st.one_of(
    *(
        st.builds(Message, op=st.just(op), args=ARGS.get(op, st.just({})))
        for op in [*REQUESTS, *REPLIES]
    )
)
acks = st.sampled_from(sorted(ACKS)).flatmap(
    lambda op: st.tuples(st.just(op), ACK_ARGS.get(op, st.just({})))
)


def test_every_op_has_a_strategy() -> None:
    ops_with_args = {op for op, model in {**REQUESTS, **REPLIES}.items() if model.model_fields}
    assert ops_with_args <= set(ARGS)
    assert {op for op, model in ACKS.items() if model.model_fields} <= set(ACK_ARGS)


@given(messages, st.integers(1, 0xFFFF))
def test_every_message_round_trips_through_a_frame(message: Message, seq: int) -> None:
    wire = encode_frame(Frame(version=1, seq=seq, payload=encode_message(message)))
    consumed, frame = decode_frame(wire)
    assert consumed == len(wire) and frame is not None
    assert decode_message(frame.payload) == message


@given(acks)
def test_every_ack_round_trips(op_args: tuple[str, dict[str, Any]]) -> None:
    op, args = op_args
    decoded = decode_message(encode_message(Message(op="ack", args=args)))
    assert parse_ack(op, decoded).model_dump() == args


@given(st.binary(max_size=300))
@settings(max_examples=400)
def test_any_payload_decodes_or_raises_message_error(payload: bytes) -> None:
    try:
        message = decode_message(payload)
    except MessageError:
        return
    assert message.op in {*REQUESTS, *REPLIES, "ack"}


_msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    st.sampled_from(sorted({*REQUESTS, *REPLIES, "ack", "bogus"})),
    st.dictionaries(st.text(max_size=10), _msgpack_values, max_size=6),
)
def test_well_formed_maps_with_wrong_args_raise_message_error(
    op: str, args: dict[str, Any]
) -> None:
    payload = msgpack.packb({"op": op, "args": args}, use_bin_type=True)
    try:
        message = decode_message(payload)
    except MessageError:
        return
    assert message.op == op and op != "bogus"


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (msgpack.packb({"op": "move", "args": {"x_um": 1}}), "move: y_um"),
        (msgpack.packb({"op": "move", "args": {"x_um": 1, "y_um": True}}), "y_um"),
        (msgpack.packb({"op": "fly", "args": {}}), "unknown op 'fly'"),
        (msgpack.packb({"op": "home"}), "exactly 'op' and 'args'"),
        (msgpack.packb({"op": "home", "args": {}, "x": 1}), "exactly 'op' and 'args'"),
        (msgpack.packb({"op": "home", "args": {"speed": 1}}), "home: speed"),
        (b"\xc1", "not msgpack"),
        (msgpack.packb({"op": "home", "args": {}}) + b"\x00", "not msgpack"),
    ],
)
def test_bad_messages_are_named(payload: bytes, match: str) -> None:
    with pytest.raises(MessageError, match=match) as info:
        decode_message(payload)
    assert isinstance(info.value, CodecError)


def test_encoding_refuses_an_invalid_message() -> None:
    with pytest.raises(MessageError, match="x_um"):
        encode_message(Message(op="move", args={"x_um": "left", "y_um": 0}))


def test_error_code_names() -> None:
    assert code_name(ErrorCode.JAM) == "jam"
    assert code_name(ErrorCode.NOT_HOMED) == "not_homed"
    assert code_name(99) == "code 99"


def test_motion_config_to_wire_units() -> None:
    args = MotionConfig().to_args()
    assert args.x.v_um_s == 400_000 and args.y.a_um_s2 == 1_500_000
    assert (args.pick_ms, args.place_ms, args.scan_ms) == (1200, 1000, 300)


def test_the_documented_example_frame() -> None:
    payload = encode_message(Message.of("home"))
    wire = encode_frame(Frame(version=1, seq=0x0102, payload=payload))
    documented = "15 01 01 02 82 A2 6F 70 A4 68 6F 6D 65 A4 61 72 67 73 80 D9 48 00"
    assert wire == bytes.fromhex(documented)
