"""The local specimen map: atomic replacement, lookups by barcode and by rack."""

from __future__ import annotations

from pathlib import Path

import pytest

from controllerd.specimen_map import SpecimenMap
from drivers.opcua_model import Inventory, RackRecord


def _inventory(tubes_r1: dict[str, str | None], location: str = "store") -> Inventory:
    return Inventory(
        racks=(
            RackRecord("R1", 1, 2, location, tubes_r1),
            RackRecord("R2", 2, 5, "store", {"A1": "222"}),
        ),
        ports={"P1": None, "OUT": "OUT-1"},
    )


def test_replace_store_and_look_up(tmp_path: Path) -> None:
    with SpecimenMap.in_state_dir(tmp_path) as smap:
        smap.replace_store("store-1", _inventory({"A1": "111", "B2": "112", "C3": None}))
        found = smap.where("112")
        assert found is not None
        assert (found.store, found.rack, found.position, found.tower, found.shelf) == (
            "store-1",
            "R1",
            "B2",
            1,
            2,
        )
        assert smap.where("nope") is None
        rack = smap.rack("store-1", "R1")
        assert rack is not None and rack.tubes == {"A1": "111", "B2": "112"}
        assert smap.racks("store-1") == ["R1", "R2"]
        assert smap.ports("store-1") == {"OUT": "OUT-1", "P1": None}
        # A new inventory replaces the old one entirely.
        smap.replace_store("store-1", _inventory({"H12": "999"}))
        assert smap.where("111") is None
        assert smap.tube_count("store-1") == 2
    # It is durable: a new process finds it.
    with SpecimenMap.in_state_dir(tmp_path) as again:
        assert again.where("999") is not None


def test_replace_rack_keeps_the_others_and_updates_ports(tmp_path: Path) -> None:
    with SpecimenMap(tmp_path / "map.sqlite3") as smap:
        smap.replace_store("store-1", _inventory({"A1": "111"}))
        smap.replace_store("store-2", _inventory({"A1": "333"}))
        smap.replace_rack(
            "store-1", RackRecord("R1", 1, 2, "port:P1", {"A2": "111"}), ports={"P1": "R1"}
        )
        found = smap.where("111")
        assert found is not None and (found.position, found.rack_location) == ("A2", "port:P1")
        assert smap.ports("store-1") == {"P1": "R1"}
        assert smap.where("222") is not None and smap.where("333") is not None


def test_a_failed_replace_changes_nothing(tmp_path: Path) -> None:
    with SpecimenMap(tmp_path / "map.sqlite3") as smap:
        smap.replace_store("store-1", _inventory({"A1": "111"}))
        broken = Inventory(
            racks=(RackRecord("R1", 1, 1, "store", {}), RackRecord("R1", 1, 1, "store", {})),
            ports={},
        )
        with pytest.raises(Exception, match="UNIQUE"):
            smap.replace_store("store-1", broken)
        assert smap.where("111") is not None
        assert smap.racks("store-1") == ["R1", "R2"]
