"""The systemd units: verified by systemd-analyze where it exists, and checked for what we need."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "controllerd.service"
INVENTORY_UNIT = UNIT.with_name("inventoryd.service")
SENTINEL_UNIT = UNIT.with_name("controllerd-sentinel.service")
CONFIG_DIR = UNIT.parents[1] / "config"


def _sections(unit: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    return parser


def test_unit_has_what_the_daemon_needs() -> None:
    service = _sections(UNIT)["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "controllerd"
    assert "dialout" in service["SupplementaryGroups"]
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert " run -c " in service["ExecStart"]


def test_inventory_unit_follows_the_same_conventions() -> None:
    service = _sections(INVENTORY_UNIT)["Service"]
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"
    assert service["StateDirectory"] == "inventoryd"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ExecStart"].endswith("inventoryd run -c /etc/inventoryd/inventory.toml")


def test_sentinel_unit_runs_the_sentinel_on_its_own() -> None:
    parser = _sections(SENTINEL_UNIT)
    service = parser["Service"]
    assert service["ExecStart"].endswith("controllerd sentinel -c /etc/controllerd/sentinel.toml")
    # It pages when everything else is down: it always comes back, whatever ended it.
    assert service["Restart"] == "always"
    assert float(service["RestartSec"]) <= 10
    assert service["User"] == "controllerd"
    assert service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == "yes"
    # Its own state (alarms and pages across restarts, where the example config keeps them),
    # apart from the daemon's; no serial devices: tighter than the daemon.
    assert service["StateDirectory"] == "controllerd-sentinel"
    example = tomllib.loads((CONFIG_DIR / "sentinel.example.toml").read_text())
    assert example["sentinel"]["state_dir"] == "/var/lib/controllerd-sentinel"
    assert "SupplementaryGroups" not in service
    assert service["PrivateDevices"] == "yes"
    # Its fate is not tied to the daemon it watches (it is meant for another machine).
    unit = parser["Unit"]
    for key in ("Requires", "BindsTo", "PartOf", "After", "Wants", "Requisite"):
        assert "controllerd.service" not in unit.get(key, ""), key
    assert parser["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
@pytest.mark.parametrize(
    ("unit", "program"),
    [(UNIT, "controllerd"), (INVENTORY_UNIT, "inventoryd"), (SENTINEL_UNIT, "controllerd")],
    ids=["controllerd", "inventoryd", "sentinel"],
)
def test_systemd_analyze_verify(unit: Path, program: str, tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's console script.
    exe = Path(sys.executable).parent / program
    assert exe.exists()
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace(f"/opt/controllerd/bin/{program}", str(exe)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert unit.name not in result.stderr, result.stderr
