"""The sd_notify protocol, spoken directly: READY=1, STATUS=…, WATCHDOG=1, STOPPING=1."""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    """Sends datagrams to $NOTIFY_SOCKET; does nothing when not started by systemd."""

    def __init__(self, *, socket_path: str | None = None) -> None:
        path = socket_path if socket_path is not None else os.environ.get("NOTIFY_SOCKET")
        self._address: str | None = None
        if path:
            # A leading '@' names a socket in the abstract namespace.
            self._address = "\0" + path[1:] if path.startswith("@") else path
        watchdog_usec = os.environ.get("WATCHDOG_USEC", "")
        watchdog_pid = os.environ.get("WATCHDOG_PID", "")
        valid_pid = not watchdog_pid or watchdog_pid == str(os.getpid())
        self.watchdog_s: float | None = (
            int(watchdog_usec) / 1e6 if watchdog_usec.isdigit() and valid_pid else None
        )

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *lines: str) -> None:
        """Send one datagram of newline-separated assignments; failures are not fatal."""
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError:
            # systemd not listening (e.g. during shutdown) must never take the daemon down.
            return

    def ready(self, status: str) -> None:
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.notify(f"STATUS={status}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1", "STATUS=stopping")
