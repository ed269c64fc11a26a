"""The sd_notify protocol, spoken directly: READY=1, STATUS=…, WATCHDOG=1, STOPPING=1."""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    """Sends datagrams to $NOTIFY_SOCKET; does nothing when not started by systemd."""

    def __init__(self) -> None:
        path = os.environ.get("NOTIFY_SOCKET")
        self._address = ("\0" + path[1:] if path.startswith("@") else path) if path else None
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        valid_pid = not pid or pid == str(os.getpid())
        self.watchdog_s: float | None = int(usec) / 1e6 if usec.isdigit() and valid_pid else None

    def notify(self, *lines: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self._address)
        except OSError:
            return  # systemd not listening (shutdown) must never take the service down
