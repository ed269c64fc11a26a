"""The local specimen map: where every tube of the room's stores is, in SQLite under `state_dir`.

Each store's inventory is copied in whole on connect and per rack after each `ScanRack`, each
time in one transaction, so a reader sees the old map or the new one, never half of each. The
daemon answers "where is this tube?" from it even while the inventory service is down; the
pick jobs look tubes up by barcode and racks by id. It holds what the store last reported
(the store's last scan), not the site ledger.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from drivers.opcua_model import Inventory, RackRecord

FILE_NAME = "specimen_map.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS racks (
    store TEXT NOT NULL,
    rack TEXT NOT NULL,
    tower INTEGER NOT NULL,
    shelf INTEGER NOT NULL,
    location TEXT NOT NULL,
    PRIMARY KEY (store, rack)
);
CREATE TABLE IF NOT EXISTS tubes (
    store TEXT NOT NULL,
    rack TEXT NOT NULL,
    position TEXT NOT NULL,
    barcode TEXT NOT NULL,
    PRIMARY KEY (store, rack, position)
);
CREATE INDEX IF NOT EXISTS tubes_by_barcode ON tubes (barcode);
CREATE TABLE IF NOT EXISTS ports (
    store TEXT NOT NULL,
    port TEXT NOT NULL,
    rack TEXT,
    PRIMARY KEY (store, port)
);
"""


@dataclass(frozen=True, slots=True)
class TubeLocation:
    """Where one tube is: its store, rack and position, and where that rack is."""

    barcode: str
    store: str
    rack: str
    position: str
    tower: int
    shelf: int
    #: the rack's location when last reported: `store`, `robot` or `port:<port>`
    rack_location: str


class SpecimenMap:
    """`with SpecimenMap(path) as smap:`; every write is one transaction."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def in_state_dir(cls, state_dir: Path) -> SpecimenMap:
        return cls(state_dir / FILE_NAME)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def replace_store(self, store: str, inventory: Inventory) -> None:
        """Replace everything known about `store` by this inventory, atomically."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in ("racks", "tubes", "ports"):
                db.execute(f"DELETE FROM {table} WHERE store = ?", (store,))
            for rack in inventory.racks:
                self._insert_rack(store, rack)
            db.executemany(
                "INSERT INTO ports (store, port, rack) VALUES (?, ?, ?)",
                [(store, port, rack) for port, rack in inventory.ports.items()],
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def replace_rack(
        self, store: str, rack: RackRecord, *, ports: Mapping[str, str | None] | None = None
    ) -> None:
        """Replace one rack (its slot, location and tubes), and the ports if given, atomically."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("DELETE FROM racks WHERE store = ? AND rack = ?", (store, rack.rack_id))
            db.execute("DELETE FROM tubes WHERE store = ? AND rack = ?", (store, rack.rack_id))
            self._insert_rack(store, rack)
            if ports is not None:
                db.execute("DELETE FROM ports WHERE store = ?", (store,))
                db.executemany(
                    "INSERT INTO ports (store, port, rack) VALUES (?, ?, ?)",
                    [(store, port, held) for port, held in ports.items()],
                )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _insert_rack(self, store: str, rack: RackRecord) -> None:
        self._db.execute(
            "INSERT INTO racks (store, rack, tower, shelf, location) VALUES (?, ?, ?, ?, ?)",
            (store, rack.rack_id, rack.tower, rack.shelf, rack.location),
        )
        self._db.executemany(
            "INSERT INTO tubes (store, rack, position, barcode) VALUES (?, ?, ?, ?)",
            [
                (store, rack.rack_id, position, barcode)
                for position, barcode in rack.tubes.items()
                if barcode
            ],
        )

    def where(self, barcode: str) -> TubeLocation | None:
        """Where the tube with this barcode is, or None when no store reported it."""
        row = self._db.execute(
            "SELECT t.store, t.rack, t.position, r.tower, r.shelf, r.location "
            "FROM tubes t JOIN racks r ON r.store = t.store AND r.rack = t.rack "
            "WHERE t.barcode = ? ORDER BY t.store, t.rack LIMIT 1",
            (barcode,),
        ).fetchone()
        if row is None:
            return None
        store, rack, position, tower, shelf, location = row
        return TubeLocation(barcode, store, rack, position, tower, shelf, location)

    def rack(self, store: str, rack_id: str) -> RackRecord | None:
        """One rack with its tubes (positions without a tube are absent), or None."""
        row = self._db.execute(
            "SELECT tower, shelf, location FROM racks WHERE store = ? AND rack = ?",
            (store, rack_id),
        ).fetchone()
        if row is None:
            return None
        tubes = dict(
            self._db.execute(
                "SELECT position, barcode FROM tubes WHERE store = ? AND rack = ?",
                (store, rack_id),
            ).fetchall()
        )
        return RackRecord(rack_id=rack_id, tower=row[0], shelf=row[1], location=row[2], tubes=tubes)

    def racks(self, store: str) -> list[str]:
        """The rack ids of a store, sorted."""
        rows = self._db.execute(
            "SELECT rack FROM racks WHERE store = ? ORDER BY rack", (store,)
        ).fetchall()
        return [row[0] for row in rows]

    def ports(self, store: str) -> dict[str, str | None]:
        """What each port of a store held when last reported."""
        rows = self._db.execute(
            "SELECT port, rack FROM ports WHERE store = ? ORDER BY port", (store,)
        ).fetchall()
        return {port: rack for port, rack in rows}

    def tube_count(self, store: str) -> int:
        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM tubes WHERE store = ?", (store,)
        ).fetchone()
        return int(count)
