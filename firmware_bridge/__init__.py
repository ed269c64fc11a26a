"""The framed serial link to the tube picker's motion-controller firmware.

Pure codecs (no I/O; the simulator reuses them): COBS framing with CRC-16/CCITT-FALSE
(`encode_frame`, `decode_frame`, `FrameReader`) and msgpack messages (`Message`,
`encode_message`, `decode_message`, the args models and `ErrorCode`). I/O: `FirmwareLink`
(sequence numbers, one command in flight, retransmission, heartbeat supervision on an
injectable `LinkClock`), `PickerMotion` (home, move_to, pick, place, scan, stop, status,
set_motion) and `PickerDriver` (the daemon's `drivers.Driver` for a `tube_picker`).
The protocol: docs/firmware-protocol.md.
"""

from firmware_bridge._clock import LinkClock, MonotonicClock
from firmware_bridge._config import AxisMotion, FirmwareSerialConfig, MotionConfig
from firmware_bridge._driver import PickerDriver, reading_of
from firmware_bridge._errors import (
    CodecError,
    CommandRejected,
    CommunicationLost,
    FirmwareError,
    FirmwareTimeout,
    FrameError,
    IncompatibleFirmware,
    MessageError,
    MotionFault,
)
from firmware_bridge._framing import (
    MAX_BODY,
    MAX_ENCODED,
    MAX_PAYLOAD,
    Frame,
    FrameReader,
    decode_frame,
    encode_frame,
)
from firmware_bridge._link import FirmwareLink
from firmware_bridge._messages import (
    ACKS,
    EVENT_SEQ,
    MOTIONS,
    PROTOCOL_VERSION,
    REPLIES,
    REQUESTS,
    SUPPORTED_VERSIONS,
    ErrorCode,
    Message,
    code_name,
    decode_message,
    encode_message,
    parse_ack,
)
from firmware_bridge._motion import PickerMotion, PickerStatus, Position

__all__ = [
    "ACKS",
    "EVENT_SEQ",
    "MAX_BODY",
    "MAX_ENCODED",
    "MAX_PAYLOAD",
    "MOTIONS",
    "PROTOCOL_VERSION",
    "REPLIES",
    "REQUESTS",
    "SUPPORTED_VERSIONS",
    "AxisMotion",
    "CodecError",
    "CommandRejected",
    "CommunicationLost",
    "ErrorCode",
    "FirmwareError",
    "FirmwareLink",
    "FirmwareSerialConfig",
    "FirmwareTimeout",
    "Frame",
    "FrameError",
    "FrameReader",
    "IncompatibleFirmware",
    "LinkClock",
    "Message",
    "MessageError",
    "MonotonicClock",
    "MotionConfig",
    "MotionFault",
    "PickerDriver",
    "PickerMotion",
    "PickerStatus",
    "Position",
    "code_name",
    "decode_frame",
    "decode_message",
    "encode_frame",
    "encode_message",
    "parse_ack",
    "reading_of",
]
