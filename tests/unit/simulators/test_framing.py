"""Property tests of the simulators' pure Modbus framing and PDU codec."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.modbus._framing import (
    ExceptionResponse,
    ReadRequest,
    ReadResponse,
    RtuFrame,
    TcpFrame,
    WriteMultipleRequest,
    WriteResponse,
    WriteSingleRequest,
    crc16,
    decode_rtu,
    decode_tcp,
    drain_rtu,
    encode_request,
    encode_response,
    encode_rtu,
    encode_tcp,
    parse_request,
    parse_response,
)

words = st.integers(0, 0xFFFF)
units = st.integers(1, 247)
requests = st.one_of(
    st.builds(
        ReadRequest, st.sampled_from([3, 4]), st.integers(0, 0xFFFF - 125), st.integers(1, 125)
    ),
    st.builds(WriteSingleRequest, words, words),
    st.builds(
        WriteMultipleRequest,
        st.integers(0, 0xFFFF - 123),
        st.lists(words, min_size=1, max_size=123).map(tuple),
    ),
)
responses = st.one_of(
    st.builds(
        ReadResponse, st.sampled_from([3, 4]), st.lists(words, min_size=1, max_size=125).map(tuple)
    ),
    st.builds(WriteResponse, st.sampled_from([6, 16]), words, words),
    st.builds(ExceptionResponse, st.sampled_from([3, 4, 6, 16]), st.integers(1, 4)),
)


def test_crc16_known_vector() -> None:
    # Read holding registers 0..1 of unit 1: the CRC every Modbus reference quotes.
    assert encode_rtu(RtuFrame(1, bytes.fromhex("0300000001"))).hex() == "010300000001840a"
    assert crc16(b"123456789") == 0x4B37


@given(requests)
def test_request_pdu_round_trip(request: ReadRequest) -> None:
    assert parse_request(encode_request(request)) == request


@given(responses)
def test_response_pdu_round_trip(response: ReadResponse) -> None:
    assert parse_response(encode_response(response)) == response


@given(st.integers(0, 0xFFFF), st.integers(0, 255), st.binary(min_size=1, max_size=253))
def test_tcp_round_trip(tid: int, unit: int, pdu: bytes) -> None:
    frame = TcpFrame(tid, unit, pdu)
    data = encode_tcp(frame)
    assert decode_tcp(data) == (len(data), frame)
    assert decode_tcp(data[:-1]) == (0, None)


@given(units, requests, st.booleans())
def test_rtu_request_round_trip(unit: int, request: ReadRequest, split: bool) -> None:
    data = encode_rtu(RtuFrame(unit, encode_request(request)))
    assert decode_rtu(data) == (len(data), RtuFrame(unit, encode_request(request)))
    if split:
        consumed, frame = decode_rtu(data[: len(data) // 2])
        assert frame is None and consumed == 0


@given(units, responses)
def test_rtu_response_round_trip(unit: int, response: ReadResponse) -> None:
    frame = RtuFrame(unit, encode_response(response))
    data = encode_rtu(frame)
    assert decode_rtu(data, requests=False) == (len(data), frame)


@given(st.binary(max_size=300), st.booleans())
def test_decoders_take_any_bytes(data: bytes, requests_: bool) -> None:
    for decoder in (decode_tcp, lambda b: decode_rtu(b, requests=requests_)):
        consumed, frame = decoder(data)
        assert 0 <= consumed <= len(data)
        if frame is not None:
            assert consumed > 0
    frames, rest = drain_rtu(data, silence=True, requests=requests_)
    assert rest == b""
    assert all(isinstance(frame, RtuFrame) for frame in frames)
    parse_response(data)


@given(st.binary(max_size=300))
def test_parse_request_raises_only_modbus_errors(data: bytes) -> None:
    from simulators.modbus._framing import ModbusError

    try:
        parse_request(data)
    except ModbusError as exc:
        assert 1 <= exc.code <= 3


@settings(derandomize=True)
@given(st.binary(max_size=64), units, requests)
def test_rtu_resyncs_after_garbage(garbage: bytes, unit: int, request: ReadRequest) -> None:
    frame = RtuFrame(unit, encode_request(request))
    frames, rest = drain_rtu(garbage + encode_rtu(frame), silence=True)
    assert frame in frames
    assert rest == b""


def test_rtu_unknown_function_is_framed_at_silence() -> None:
    data = encode_rtu(RtuFrame(5, bytes([0x41, 1, 2, 3])))
    assert drain_rtu(data, silence=False) == ([], data)
    assert drain_rtu(data, silence=True) == ([RtuFrame(5, bytes([0x41, 1, 2, 3]))], b"")
