"""Test helper: a copy of config/demo.toml that runs side by side with anything else.

`write_demo_config(tmp_path)` rewrites the demo room with free loopback TCP ports, every path
(serial line, control socket, state directory) under `tmp_path` and the serial line at 8N2
(a pty cannot do parity), writes it as TOML and returns its path; `load_config` of that path
gives the matching `Config`.
"""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "config" / "demo.toml"
#: sun_path holds 108 bytes on Linux; a longer socket path cannot be bound.
_MAX_SOCKET_PATH = 100


def free_tcp_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def demo_config_data(
    tmp_path: Path, *, speed: float | None = None, scenario: bool = False
) -> dict[str, Any]:
    """The demo room's TOML data with private ports and paths (and no scenario by default)."""
    data = tomllib.loads(DEMO_CONFIG.read_text(encoding="utf-8"))
    sock = tmp_path / "sim.sock"
    if len(str(sock)) > _MAX_SOCKET_PATH:
        raise ValueError(f"{sock} is too long for a Unix socket")
    data["controller"]["state_dir"] = str(tmp_path / "state")
    sim = data["simulator"]
    sim["control_socket"] = str(sock)
    if speed is not None:
        sim["speed"] = speed
    if scenario:
        sim["scenario"] = str(DEMO_CONFIG.parent / sim["scenario"])
    else:
        sim.pop("scenario", None)
    lines: dict[str, str] = {}
    for device in data["devices"]:
        driver = device["driver"]
        if driver["type"] == "modbus_tcp":
            driver["port"] = free_tcp_port()
        elif driver["type"] == "opcua":
            driver["url"] = f"opc.tcp://127.0.0.1:{free_tcp_port()}/"
        else:
            name = Path(driver["port"]).name
            driver["port"] = lines.setdefault(driver["port"], str(tmp_path / name))
            # A pseudo-terminal cannot keep PARENB (glibc's tcsetattr then fails with EINVAL),
            # so the simulated line runs 8N2, the Modbus serial spec's no-parity framing.
            driver["parity"] = "N"
            driver["stopbits"] = 2
    return data


def write_demo_config(
    tmp_path: Path, *, speed: float | None = None, scenario: bool = False
) -> Path:
    """Write `demo_config_data` to `tmp_path/room.toml` and return that path."""
    path = tmp_path / "room.toml"
    path.write_text(tomli_w.dumps(demo_config_data(tmp_path, speed=speed, scenario=scenario)))
    return path
