"""asyncua's errors translated into the drivers' tree, naming what to fix."""

from __future__ import annotations

import pytest
from asyncua import ua

from drivers import (
    ConnectFailed,
    DeviceRejected,
    DeviceTimeout,
    DriverError,
    NotConnected,
    ProtocolError,
)
from drivers.opcua import SecurityRefused, translate

NO_ENDPOINT = "No matching endpoints: 1, http://opcfoundation.org/UA/SecurityPolicy#None"


@pytest.mark.parametrize(
    ("exc", "operation", "kind", "message"),
    [
        (TimeoutError(), "RetrieveRack R1 P1", DeviceTimeout, "no answer in time"),
        (TimeoutError(), "connect", ConnectFailed, "no answer in time"),
        (
            ua.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted),
            "connect",
            SecurityRefused,
            "refused: BadCertificateUntrusted (the server does not trust this client's "
            "certificate)",
        ),
        (
            ua.UaStatusCodeError(ua.StatusCodes.BadSecurityChecksFailed),
            "connect",
            SecurityRefused,
            "refused: BadSecurityChecksFailed (the server's certificate or signature checks "
            "failed)",
        ),
        (
            ua.UaStatusCodeError(ua.StatusCodes.BadUserAccessDenied),
            "connect",
            SecurityRefused,
            "refused: BadUserAccessDenied (the server refused the user name or password)",
        ),
        (
            ua.UaStatusCodeError(ua.StatusCodes.BadTooManySessions),
            "connect",
            ConnectFailed,
            "BadTooManySessions",
        ),
        (
            ua.UaError(NO_ENDPOINT),
            "connect",
            SecurityRefused,
            "refused: the server offers no endpoint with this client's security "
            "(mode None, policy None); check the driver's `security`",
        ),
        (
            ConnectionRefusedError(111, "Connection refused"),
            "connect",
            ConnectFailed,
            "Connection refused",
        ),
        (ua.UaError("bad hello"), "connect", ConnectFailed, "bad hello"),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            "inventory",
            DeviceTimeout,
            "connection lost: Connection reset by peer",
        ),
        (ua.UaError("cannot decode"), "inventory", ProtocolError, "cannot decode"),
        (ValueError("not a number"), "inventory", ProtocolError, "not a number"),
        (KeyError("Tubes"), "inventory", ProtocolError, "KeyError: 'Tubes'"),
    ],
)
def test_translate(exc: BaseException, operation: str, kind: type, message: str) -> None:
    error = translate(exc, device="store-1", operation=operation)
    assert type(error) is kind
    assert (error.message, error.device, error.operation) == (message, "store-1", operation)


def test_a_bad_status_of_a_request_is_device_rejected_with_its_code() -> None:
    error = translate(
        ua.UaStatusCodeError(ua.StatusCodes.BadNotFound),
        device="store-1",
        operation="RetrieveRack R9 P1",
    )
    assert isinstance(error, DeviceRejected) and isinstance(error, ProtocolError)
    assert (error.message, error.code) == ("BadNotFound", 0x803E0000)
    assert str(error) == "store-1 RetrieveRack R9 P1: BadNotFound"


def test_driver_errors_pass_through_unchanged() -> None:
    original: DriverError = NotConnected("down", retry_in_s=1.0, device="store-1", operation="x")
    assert translate(original, device="other", operation="y") is original
