"""A private Mosquitto broker on a free loopback port, from the project's own config.

Used by `controllerd demo` and by the tests; never by the daemon itself (which talks to the
site's broker). The broker's process is owned by the `PrivateBroker` context manager.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def config_dir(
    *, env: str | None = None, source: Path = PROJECT_ROOT / "config", prefix: str = sys.prefix
) -> Path:
    """Where the project's data files are (the demo room, example configs, mosquitto.conf):
    `$CONTROLLERD_CONFIG_DIR` when set; else `config/` of the source tree (a clone, an editable
    install); else `{prefix}/share/controllerd/config`, where `pip install .` puts them."""
    if env:
        return Path(env)
    if source.is_dir():
        return source
    return Path(prefix) / "share" / "controllerd" / "config"


CONFIG_DIR = config_dir(env=os.environ.get("CONTROLLERD_CONFIG_DIR"))


class BrokerError(RuntimeError):
    """The private broker could not be started."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class PrivateBroker:
    """`with PrivateBroker(workdir=...) as broker:` — a Mosquitto on `broker.port`."""

    def __init__(self, *, workdir: Path, port: int = 0) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self._fixed_port = bool(port)
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "mosquitto.log"

    def _write_config(self) -> Path:
        template = (CONFIG_DIR / "mosquitto.conf").read_text(encoding="utf-8")
        data_dir = self.workdir / "mosquitto-data"
        data_dir.mkdir(parents=True, exist_ok=True)
        text = template.replace("@PORT@", str(self.port)).replace("@DATA_DIR@", str(data_dir))
        if os.geteuid() == 0:
            # As root Mosquitto would switch to its own user, which cannot write our workdir.
            text += "user root\n"
        path = self.workdir / "mosquitto.conf"
        path.write_text(text, encoding="utf-8")
        return path

    def start(self) -> None:
        """Start (or restart after `stop`) the broker and wait until it accepts connections."""
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise BrokerError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(5):
            conf = self._write_config()
            log = self.log_path.open("ab")
            self._process = subprocess.Popen(
                [exe, "-c", str(conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            log.close()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    break
                if _accepts(self.port):
                    return
                time.sleep(0.05)
            self.stop()
            if self._fixed_port:
                break
            self.port = free_port()  # another process took the port in between: try another
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        raise BrokerError(f"mosquitto did not start on 127.0.0.1:{self.port}\n{tail}")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL after 5 s)."""
        proc, self._process = self._process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """Kill the broker abruptly (SIGKILL), as a crash would."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
