"""Translation of asyncua's errors into the drivers' tree (`drivers._errors`)."""

from __future__ import annotations

from asyncua import ua

from drivers._errors import ConnectFailed, DeviceRejected, DeviceTimeout, DriverError, ProtocolError

#: Status codes a server answers when it refuses who we are: the connect failed for good reason,
#: and the message should say so rather than "timeout".
_SECURITY_CODES = frozenset(
    {
        ua.StatusCodes.BadCertificateUntrusted,
        ua.StatusCodes.BadCertificateInvalid,
        ua.StatusCodes.BadCertificateUriInvalid,
        ua.StatusCodes.BadCertificateTimeInvalid,
        ua.StatusCodes.BadCertificateUseNotAllowed,
        ua.StatusCodes.BadCertificateRevoked,
        ua.StatusCodes.BadSecurityChecksFailed,
        ua.StatusCodes.BadSecurityPolicyRejected,
        ua.StatusCodes.BadSecurityModeRejected,
        ua.StatusCodes.BadUserAccessDenied,
        ua.StatusCodes.BadIdentityTokenInvalid,
        ua.StatusCodes.BadIdentityTokenRejected,
    }
)


def status_name(code: int) -> str:
    """`BadNotFound` for 0x803E0000."""
    return ua.status_codes.get_name_and_doc(code)[0]


def translate(exc: BaseException, *, device: str, operation: str) -> DriverError:
    """The driver error for an asyncua (or socket) failure; raise it `from exc`."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, TimeoutError):
        return DeviceTimeout("no answer in time", device=device, operation=operation)
    if isinstance(exc, ua.UaStatusCodeError):
        code = int(exc.code)
        name = status_name(code)
        if operation == "connect":
            reason = "refused: " if code in _SECURITY_CODES else ""
            return ConnectFailed(f"{reason}{name}", device=device, operation=operation)
        return DeviceRejected(name, code=code, device=device, operation=operation)
    if isinstance(exc, OSError | ConnectionError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        if operation == "connect":
            return ConnectFailed(reason, device=device, operation=operation)
        return DeviceTimeout(f"connection lost: {reason}", device=device, operation=operation)
    if isinstance(exc, ua.UaError | ValueError):
        message = str(exc) or type(exc).__name__
        if operation == "connect":
            return ConnectFailed(message, device=device, operation=operation)
        return ProtocolError(message, device=device, operation=operation)
    return ProtocolError(f"{type(exc).__name__}: {exc}", device=device, operation=operation)
