"""The ln2_tank config kind: link, fill levels, addresses on one line."""

from __future__ import annotations

from typing import Any

import pytest

from controllerd.config import ConfigError, Ln2TankConfig, parse_config


def _room(*devices: dict[str, Any]) -> dict[str, Any]:
    return {"controller": {"site": "s", "id": "r", "state_dir": "/tmp/x"}, "devices": list(devices)}


def _tank(dev_id: str, address: int, port: str = "/dev/ttyUSB0", **extra: Any) -> dict[str, Any]:
    return {
        "id": dev_id,
        "kind": "ln2_tank",
        "driver": {"type": "ln2_serial", "port": port, "address": address},
        **extra,
    }


def test_a_tank_validates_and_describes_itself() -> None:
    config = parse_config(_room(_tank("t1", 1), _tank("t2", 2)))
    tank = config.device("t1")
    assert isinstance(tank, Ln2TankConfig)
    assert "address 1" in tank.describe() and "/dev/ttyUSB0" in tank.describe()
    assert tank.read_budget_s() > tank.driver.timeout_s


def test_duplicate_address_on_one_line_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_room(_tank("t1", 1), _tank("t2", 1)))
    assert any(p.startswith("devices[1].driver.address: address 1") for p in err.value.problems)
    # The same address on another line is fine.
    parse_config(_room(_tank("t1", 1), _tank("t2", 1, port="socket://10.0.0.5:4001")))


def test_fill_stop_must_be_above_start() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_room(_tank("t1", 1, fill={"start_pct": 60, "stop_pct": 50})))
    assert any("stop_pct" in p and p.startswith("devices[0].fill") for p in err.value.problems)


@pytest.mark.parametrize("port", ["socket://host", "socket://h:99999", "rfc2217://h:1"])
def test_bad_ports_are_refused(port: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_room(_tank("t1", 1, port=port)))
    assert any(p.startswith("devices[0].driver.port") for p in err.value.problems)


def test_line_settings_must_agree_and_not_share_a_modbus_line() -> None:
    slow = _tank("t2", 2)
    slow["driver"]["baudrate"] = 19200
    with pytest.raises(ConfigError) as err:
        parse_config(_room(_tank("t1", 1), slow))
    assert any("line settings" in p for p in err.value.problems)
