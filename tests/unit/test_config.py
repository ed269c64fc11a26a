"""Config validation: every shipped file is valid; every kind of mistake is named by its path."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from controllerd.config import ConfigError, load_config, parse_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
# config/inventory*.toml configure inventoryd, not a room: validated below with its own model.
INVENTORY_FILES = sorted(CONFIG_DIR.glob("inventory*.toml"))
# config/sentinel*.toml configure `controllerd sentinel`: validated with its own model.
SENTINEL_FILES = sorted(CONFIG_DIR.glob("sentinel*.toml"))
ROOM_FILES = sorted(
    p for p in CONFIG_DIR.glob("*.toml") if p not in INVENTORY_FILES and p not in SENTINEL_FILES
)


@pytest.mark.parametrize("path", SENTINEL_FILES, ids=lambda p: p.name)
def test_every_shipped_sentinel_config_is_valid(path: Path) -> None:
    from controllerd.sentinel import load_sentinel_config

    config = load_sentinel_config(path)
    assert config.sentinel.controllers and config.escalation.levels


@pytest.mark.parametrize("path", INVENTORY_FILES, ids=lambda p: p.name)
def test_every_shipped_inventory_config_is_valid(path: Path) -> None:
    from inventory import load_config as load_inventory_config

    assert load_inventory_config(path).inventory.site


def test_there_are_room_files_to_check() -> None:
    names = {p.name for p in ROOM_FILES}
    assert {"demo.toml", "site.example.toml"} <= names


@pytest.mark.parametrize("path", ROOM_FILES, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    config = load_config(path)
    assert config.devices, f"{path.name} describes no device"


def test_demo_room_has_the_promised_devices() -> None:
    config = load_config(CONFIG_DIR / "demo.toml")
    freezers = [d for d in config.devices if d.kind == "ult_freezer"]
    probes = [d for d in config.devices if d.kind == "probe"]
    assert len(freezers) >= 2
    assert all(d.driver.type == "modbus_tcp" for d in freezers)
    assert len(probes) == 4
    assert {d.driver.type for d in probes} == {"modbus_rtu"}
    assert len({d.driver.port for d in probes}) == 1  # one RS-485 line
    assert sorted(d.driver.unit_id for d in probes) == [1, 2, 3, 4]


def _base() -> dict:
    return tomllib.loads((CONFIG_DIR / "demo.toml").read_text())


def _problems(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return info.value.problems


def test_wrong_type_is_named_by_path() -> None:
    data = _base()
    data["devices"][1]["poll_interval_s"] = "often"
    assert any(p.startswith("devices[1].poll_interval_s:") for p in _problems(data))


def test_unknown_key_is_named_by_path() -> None:
    data = _base()
    data["devices"][0]["driver"]["colour"] = "blue"
    assert "devices[0].driver.colour: unknown key" in _problems(data)


def test_duplicate_id_is_named_even_beside_other_errors() -> None:
    data = _base()
    data["devices"][3]["id"] = "freezer-1"
    data["mqtt"]["port"] = 0
    problems = _problems(data)
    assert any(p.startswith("devices[3].id: duplicate id 'freezer-1'") for p in problems)
    assert any(p.startswith("mqtt.port:") for p in problems)


def test_bad_port_is_named_by_path() -> None:
    data = _base()
    data["devices"][0]["driver"]["port"] = 70000
    assert any(p.startswith("devices[0].driver.port:") for p in _problems(data))


def test_unit_ids_on_one_line_must_differ() -> None:
    data = _base()
    data["devices"][3]["driver"]["unit_id"] = 1
    assert any("unit_id: unit 1" in p for p in _problems(data))


def test_line_settings_on_one_line_must_agree() -> None:
    data = _base()
    data["devices"][3]["driver"]["baudrate"] = 9600
    assert any("line settings" in p for p in _problems(data))


def test_unknown_kind_and_missing_kind() -> None:
    data = _base()
    data["devices"][0]["kind"] = "fridge"
    del data["devices"][1]["kind"]
    problems = _problems(data)
    assert any(p.startswith("devices[0].kind: 'fridge'") for p in problems)
    assert "devices[1].kind: required key is missing" in problems


def test_required_value_and_overlapping_registers() -> None:
    data = _base()
    data["devices"][2]["registers"][0]["name"] = "humidity_pct"
    data["devices"][0]["registers"][2]["address"] = 0  # door_open onto temperature_c
    problems = " | ".join(_problems(data))
    assert "'temperature_c' is required for a probe" in problems
    assert "input register 0 is also used by 'temperature_c'" in problems


def test_register_name_needs_snake_case() -> None:
    data = _base()
    data["devices"][0]["registers"][1]["name"] = "Setpoint"
    assert any(p.startswith("devices[0].registers[1].name:") for p in _problems(data))


def test_probe_follows_must_name_a_freezer() -> None:
    data = _base()
    data["devices"][2]["simulation"]["follows"] = "probe-3"
    assert any("simulation.follows" in p for p in _problems(data))


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[controller\nsite=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def _check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controllerd", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_config_command_exit_codes(tmp_path: Path) -> None:
    ok = _check_config(CONFIG_DIR / "demo.toml")
    assert ok.returncode == 0, ok.stderr
    assert "freezer-1: ult_freezer on modbus_tcp" in ok.stdout
    assert ok.stdout.count("\n  ") == len(load_config(CONFIG_DIR / "demo.toml").devices)

    text = (CONFIG_DIR / "demo.toml").read_text()
    text = text.replace('id = "probe-4"', 'id = "probe-1"').replace("port = 15022", "port = 0")
    text = text.replace("poll_interval_s = 2.0", 'poll_interval_s = "x"', 1)
    text = text.replace("[mqtt]", "[mqtt]\nqos = 1")
    bad = tmp_path / "room.toml"
    bad.write_text(text)
    result = _check_config(bad)
    assert result.returncode == 2
    err = result.stderr
    assert "devices[5].id: duplicate id 'probe-1'" in err
    assert "devices[1].driver.port:" in err
    assert "devices[2].poll_interval_s:" in err
    assert "mqtt.qos: unknown key" in err
