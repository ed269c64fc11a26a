"""The drivers' exception tree: every library error is translated into one of these.

    DriverError                  anything that went wrong talking to a device
    ├── NotConnected             the link is down and waiting for its next reconnect attempt
    ├── ConnectFailed            opening the link (TCP connect, serial port open) failed
    ├── DeviceTimeout            the device did not answer in time
    ├── ProtocolError            the answer was malformed or did not match the request
    │   └── DeviceRejected       the device answered with an error (e.g. a Modbus exception)
    └── InvalidRequest           the request itself cannot be sent (unknown or read-only value,
                                 a value that does not fit its register); nothing was sent

Each error names the device and the operation, so a log line or an MQTT state says what to fix.
"""

from __future__ import annotations


class DriverError(Exception):
    """Base of every driver error."""

    def __init__(self, message: str, *, device: str | None = None, operation: str | None = None):
        super().__init__(message)
        self.message = message
        self.device = device
        self.operation = operation

    def __str__(self) -> str:
        where = " ".join(part for part in (self.device, self.operation) if part)
        return f"{where}: {self.message}" if where else self.message


class NotConnected(DriverError):
    """The link is down; `retry_in_s` says when the next reconnect attempt is due."""

    def __init__(
        self,
        message: str,
        *,
        retry_in_s: float,
        device: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message, device=device, operation=operation)
        self.retry_in_s = retry_in_s


class ConnectFailed(DriverError):
    """Opening the link failed (refused, unreachable, no such serial port)."""


class DeviceTimeout(DriverError):
    """The device did not answer within the request's timeout."""


class ProtocolError(DriverError):
    """The device's answer was malformed or did not match the request."""


class DeviceRejected(ProtocolError):
    """The device answered with an error code (for Modbus: the exception code)."""

    def __init__(
        self, message: str, *, code: int, device: str | None = None, operation: str | None = None
    ) -> None:
        super().__init__(message, device=device, operation=operation)
        self.code = code


class InvalidRequest(DriverError):
    """The request cannot be sent as asked; nothing reached the device."""
