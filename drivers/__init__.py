"""Talking to devices: the async driver interface, its exception tree, and the drivers."""

from drivers._backoff import Backoff
from drivers._cancel import cancel_and_wait
from drivers._errors import (
    ConnectFailed,
    DeviceRejected,
    DeviceTimeout,
    DriverError,
    InvalidRequest,
    NotConnected,
    ProtocolError,
)
from drivers._interface import Driver, Reading

__all__ = [
    "Backoff",
    "ConnectFailed",
    "DeviceRejected",
    "DeviceTimeout",
    "Driver",
    "DriverError",
    "InvalidRequest",
    "NotConnected",
    "ProtocolError",
    "Reading",
    "cancel_and_wait",
]
