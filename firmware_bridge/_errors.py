"""The firmware bridge's exception tree; every class is also a `drivers` error, so the poller
and the pick-job executor handle a picker like any other device.

    FirmwareError (drivers.DriverError)   anything that went wrong talking to the picker
    ├── CodecError (ProtocolError)        bytes that are not a valid frame or message
    │   ├── FrameError                    COBS, length, CRC or header; `consumed` says how many
    │   │                                 bytes the bad frame took, so a stream can skip them
    │   └── MessageError                  msgpack payload, op or args
    ├── IncompatibleFirmware              `hello` found no protocol version both sides speak
    │     (ConnectFailed)
    ├── CommunicationLost (NotConnected)  the controller fell silent (no frame within the
    │                                     heartbeat timeout) or the port closed
    ├── FirmwareTimeout (DeviceTimeout)   no reply after every retransmission, or a motion that
    │                                     did not finish within `motion_timeout_s`
    ├── CommandRejected (DeviceRejected)  `nak`: the firmware refused the request; `code` and
    │                                     `code_name` are from the documented table
    └── MotionFault (DeviceRejected)      the motion ended in `fault` (jam, stopped, e-stop)

Each error names the device and the operation where known (`str()` gives "picker-1 move: …").
"""

from __future__ import annotations

from drivers import (
    ConnectFailed,
    DeviceRejected,
    DeviceTimeout,
    DriverError,
    NotConnected,
    ProtocolError,
)


class FirmwareError(DriverError):
    """Base of every firmware-bridge error."""


class CodecError(FirmwareError, ProtocolError):
    """Bytes that do not decode into a valid frame or message."""


class FrameError(CodecError):
    """A frame that is not valid; the first `consumed` bytes of the input belong to it."""

    def __init__(self, message: str, *, consumed: int) -> None:
        super().__init__(message, operation="decode frame")
        self.consumed = consumed


class MessageError(CodecError):
    """A frame whose payload is not a valid message (msgpack, op, args)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, operation="decode message")


class IncompatibleFirmware(FirmwareError, ConnectFailed):
    """The firmware speaks no protocol version this host speaks."""

    def __init__(
        self, message: str, *, firmware_versions: tuple[int, ...], host_versions: tuple[int, ...]
    ) -> None:
        super().__init__(message, operation="hello")
        self.firmware_versions = firmware_versions
        self.host_versions = host_versions


class CommunicationLost(FirmwareError, NotConnected):
    """The controller fell silent or the port closed; the link must be reopened.

    `silent_s` is how long the controller had been silent when the heartbeat supervision
    declared the loss (measured on the link's clock), None for a loss of another cause.
    """

    def __init__(
        self,
        message: str,
        *,
        retry_in_s: float,
        device: str | None = None,
        operation: str | None = None,
        silent_s: float | None = None,
    ) -> None:
        super().__init__(message, retry_in_s=retry_in_s, device=device, operation=operation)
        self.silent_s = silent_s


class FirmwareTimeout(FirmwareError, DeviceTimeout):
    """No reply after every retransmission, or a motion that overran its time limit."""


class CommandRejected(FirmwareError, DeviceRejected):
    """The firmware answered `nak`; `code` / `code_name` come from the error-code table."""

    def __init__(self, message: str, *, code: int, code_name: str, operation: str) -> None:
        super().__init__(message, code=code, operation=operation)
        self.code_name = code_name


class MotionFault(FirmwareError, DeviceRejected):
    """An accepted motion ended in `fault` instead of `done` (jam, stopped, e-stop)."""

    def __init__(self, message: str, *, code: int, code_name: str, operation: str) -> None:
        super().__init__(message, code=code, operation=operation)
        self.code_name = code_name
