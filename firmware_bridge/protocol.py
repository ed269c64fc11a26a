"""The pure half of the firmware bridge: frame and message codecs and the config models.

No I/O and no asyncio, so the room config (`controllerd.config`) and the picker simulator can
import it without pulling in the serial link. Everything here is also exported by the package.
"""

from firmware_bridge._cobs import cobs_decode, cobs_encode
from firmware_bridge._config import AxisMotion, FirmwareSerialConfig, MotionConfig
from firmware_bridge._crc import crc16_ccitt_false
from firmware_bridge._errors import CodecError, FrameError, MessageError
from firmware_bridge._framing import (
    DELIMITER,
    MAX_BODY,
    MAX_ENCODED,
    MAX_PAYLOAD,
    Frame,
    FrameReader,
    decode_frame,
    encode_frame,
)
from firmware_bridge._messages import (
    ACKS,
    EVENT_SEQ,
    MOTIONS,
    PROTOCOL_VERSION,
    REPLIES,
    REQUESTS,
    SUPPORTED_VERSIONS,
    AxisArgs,
    CodeArgs,
    DoneArgs,
    Empty,
    ErrorCode,
    HelloArgs,
    HelloReply,
    Message,
    MoveArgs,
    PositionArgs,
    SetMotionArgs,
    StatusArgs,
    code_name,
    decode_message,
    encode_message,
    parse_ack,
)

__all__ = [
    "ACKS",
    "DELIMITER",
    "EVENT_SEQ",
    "MAX_BODY",
    "MAX_ENCODED",
    "MAX_PAYLOAD",
    "MOTIONS",
    "PROTOCOL_VERSION",
    "REPLIES",
    "REQUESTS",
    "SUPPORTED_VERSIONS",
    "AxisArgs",
    "AxisMotion",
    "CodeArgs",
    "CodecError",
    "DoneArgs",
    "Empty",
    "ErrorCode",
    "FirmwareSerialConfig",
    "Frame",
    "FrameError",
    "FrameReader",
    "HelloArgs",
    "HelloReply",
    "Message",
    "MessageError",
    "MotionConfig",
    "MoveArgs",
    "PositionArgs",
    "SetMotionArgs",
    "StatusArgs",
    "cobs_decode",
    "cobs_encode",
    "code_name",
    "crc16_ccitt_false",
    "decode_frame",
    "decode_message",
    "encode_frame",
    "encode_message",
    "parse_ack",
]
