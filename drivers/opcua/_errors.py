"""Translation of asyncua's errors into the drivers' tree (`drivers._errors`)."""

from __future__ import annotations

from asyncua import ua

from drivers._errors import ConnectFailed, DeviceRejected, DeviceTimeout, DriverError, ProtocolError

#: Status codes a server answers when it refuses who we are, with what each means for the
#: person fixing the config: the connect failed for good reason, and the message says so
#: rather than "timeout".
_REFUSALS: dict[int, str] = {
    ua.StatusCodes.BadCertificateUntrusted: "the server does not trust this client's certificate",
    ua.StatusCodes.BadCertificateInvalid: "the server finds the client certificate invalid",
    ua.StatusCodes.BadCertificateUriInvalid: "the certificate's URI is not the application URI",
    ua.StatusCodes.BadCertificateTimeInvalid: "the certificate has expired or is not yet valid",
    ua.StatusCodes.BadCertificateUseNotAllowed: "the certificate may not be used by a client",
    ua.StatusCodes.BadCertificateRevoked: "the certificate has been revoked",
    ua.StatusCodes.BadSecurityChecksFailed: "the server's certificate or signature checks failed",
    ua.StatusCodes.BadSecurityPolicyRejected: "the server does not offer this security policy",
    ua.StatusCodes.BadSecurityModeRejected: "the server does not offer this security mode",
    ua.StatusCodes.BadUserAccessDenied: "the server refused the user name or password",
    ua.StatusCodes.BadIdentityTokenInvalid: "the server finds the user identity invalid",
    ua.StatusCodes.BadIdentityTokenRejected: "the server does not accept this kind of user "
    "identity (a user name and password may be required)",
}
#: The start of asyncua's error when the server offers no endpoint with our security.
_NO_ENDPOINT = "No matching endpoints"


class SecurityRefused(ConnectFailed):
    """The server refused who we are (certificate, security mode, user); retrying with the
    same config will not help, so `connect()` reports it at once."""


def status_name(code: int) -> str:
    """`BadNotFound` for 0x803E0000."""
    return ua.status_codes.get_name_and_doc(code)[0]


def translate(exc: BaseException, *, device: str, operation: str) -> DriverError:
    """The driver error for an asyncua (or socket) failure; raise it `from exc`."""
    if isinstance(exc, DriverError):
        return exc
    if isinstance(exc, TimeoutError):
        kind = ConnectFailed if operation == "connect" else DeviceTimeout
        return kind("no answer in time", device=device, operation=operation)
    if isinstance(exc, ua.UaStatusCodeError):
        code = int(exc.code)
        name = status_name(code)
        if operation == "connect":
            hint = _REFUSALS.get(code)
            if hint is not None:
                return SecurityRefused(
                    f"refused: {name} ({hint})", device=device, operation=operation
                )
            return ConnectFailed(name, device=device, operation=operation)
        return DeviceRejected(name, code=code, device=device, operation=operation)
    if isinstance(exc, OSError | ConnectionError):
        reason = exc.strerror or str(exc) or type(exc).__name__
        if operation == "connect":
            return ConnectFailed(reason, device=device, operation=operation)
        return DeviceTimeout(f"connection lost: {reason}", device=device, operation=operation)
    if isinstance(exc, ua.UaError | ValueError):
        message = str(exc) or type(exc).__name__
        if operation == "connect" and message.startswith(_NO_ENDPOINT):
            return SecurityRefused(
                "refused: the server offers no endpoint with this client's security "
                f"({_wanted_endpoint(message)}); check the driver's `security`",
                device=device,
                operation=operation,
            )
        if operation == "connect":
            return ConnectFailed(message, device=device, operation=operation)
        return ProtocolError(message, device=device, operation=operation)
    return ProtocolError(f"{type(exc).__name__}: {exc}", device=device, operation=operation)


def _wanted_endpoint(message: str) -> str:
    """`mode None, policy None` from asyncua's "No matching endpoints: 1, http://…#None"."""
    mode, _, policy = message.partition(":")[2].partition(",")
    try:
        mode_name = ua.MessageSecurityMode(int(mode)).name.rstrip("_")
    except ValueError:
        mode_name = mode.strip()
    return f"mode {mode_name}, policy {policy.strip().rpartition('#')[2]}"
