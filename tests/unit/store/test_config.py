"""The tube_store device kind and its OPC UA link config."""

from __future__ import annotations

from typing import Any

import pytest

from controllerd.config import ConfigError, TubeStoreConfig, parse_config


def _room(driver: dict[str, Any], **device: Any) -> dict[str, Any]:
    return {
        "controller": {"site": "s", "id": "r", "state_dir": "/tmp/x"},
        "devices": [{"id": "store-1", "kind": "tube_store", "driver": driver, **device}],
    }


def test_a_store_validates() -> None:
    config = parse_config(
        _room({"type": "opcua", "url": "opc.tcp://10.0.0.5:4840/store"}, simulation={"racks": 5})
    )
    store = config.device("store-1")
    assert isinstance(store, TubeStoreConfig)
    assert (store.driver.host, store.driver.port) == ("10.0.0.5", 4840)
    assert "tube_store on opcua" in store.describe()


@pytest.mark.parametrize(
    ("driver", "device", "problem"),
    [
        ({"type": "opcua", "url": "http://x:1"}, {}, "devices[0].driver.url"),
        ({"type": "opcua", "url": "opc.tcp://x:1", "username": "u"}, {}, "password_file"),
        (
            {"type": "opcua", "url": "opc.tcp://x:1", "security": {"certificate": "c"}},
            {},
            "devices[0].driver.security.private_key",
        ),
        (
            {"type": "opcua", "url": "opc.tcp://x:1"},
            {"simulation": {"towers": 1, "shelves": 2, "racks": 3}},
            "do not fit",
        ),
        ({"type": "opcua", "url": "opc.tcp://x:1", "colour": 1}, {}, "driver.colour: unknown"),
    ],
)
def test_bad_store_configs_name_the_problem(
    driver: dict[str, Any], device: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_room(driver, **device))
    assert any(problem in line for line in err.value.problems), err.value.problems
