"""The pick station that the store and the picker simulators share: ports holding racks of tubes.

The store simulator puts a rack it retrieves into a port and takes it back when it stores it;
the picker simulator reads barcodes, picks and places tubes at gantry positions. Both hold the
same `PickStation`, so the rack the store brought is the rack the picker sees.

Geometry: SBS/ANSI 96-position racks, rows A to H and columns 1 to 12 at a 9 mm pitch. Each port
has the gantry coordinates (mm) of its A1 position; `B3` is 1 row (+y) and 2 columns (+x) away.
Not modelled: rack tilt, tube heights, positions between two pitches (a gantry that stops off a
position sees no tube).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ROWS = "ABCDEFGH"
COLUMNS = 12
PITCH_MM = 9.0
#: How far from a position's centre the gantry may stop and still be over that tube.
TOLERANCE_MM = 1.0


def position_names(rows: int = len(ROWS), columns: int = COLUMNS) -> list[str]:
    """`A1, A2, …, H12`: a rack's positions in reading order."""
    return [f"{ROWS[r]}{c + 1}" for r in range(rows) for c in range(columns)]


def position_offset_mm(position: str) -> tuple[float, float]:
    """(x, y) of a position relative to A1; ValueError for a name that is not on a 96 rack."""
    if len(position) < 2 or position[0] not in ROWS or not position[1:].isdigit():
        raise ValueError(f"'{position}' is not a rack position (A1 … H12)")
    column = int(position[1:])
    if not 1 <= column <= COLUMNS:
        raise ValueError(f"'{position}' is not a rack position (A1 … H12)")
    return (column - 1) * PITCH_MM, ROWS.index(position[0]) * PITCH_MM


@dataclass
class SimRack:
    """A rack and what each of its positions holds (a tube barcode, or None when empty)."""

    rack_id: str
    tubes: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def empty(cls, rack_id: str) -> SimRack:
        return cls(rack_id=rack_id, tubes=dict.fromkeys(position_names()))

    @classmethod
    def filled(cls, rack_id: str, barcodes: Mapping[str, str | None]) -> SimRack:
        rack = cls.empty(rack_id)
        for position, barcode in barcodes.items():
            position_offset_mm(position)
            rack.tubes[position] = barcode
        return rack


class StationError(Exception):
    """A station operation that the physical station could not do (occupied port, …)."""


class PickStation:
    """Ports at fixed gantry coordinates; each holds one rack or nothing."""

    def __init__(self, *, ports: Mapping[str, tuple[float, float]]) -> None:
        if not ports:
            raise ValueError("a pick station needs at least one port")
        self.origins: dict[str, tuple[float, float]] = dict(ports)
        self.racks: dict[str, SimRack | None] = dict.fromkeys(ports)

    @property
    def ports(self) -> list[str]:
        return list(self.origins)

    def put(self, port: str, rack: SimRack) -> None:
        """Place a rack into an empty port."""
        self._check_port(port)
        if self.racks[port] is not None:
            raise StationError(f"port {port} already holds rack {self.racks[port].rack_id}")  # type: ignore[union-attr]
        self.racks[port] = rack

    def take(self, port: str) -> SimRack:
        """Remove and return the rack in a port."""
        self._check_port(port)
        rack = self.racks[port]
        if rack is None:
            raise StationError(f"port {port} is empty")
        self.racks[port] = None
        return rack

    def port_of(self, rack_id: str) -> str | None:
        """The port holding a rack, or None."""
        for port, rack in self.racks.items():
            if rack is not None and rack.rack_id == rack_id:
                return port
        return None

    def position_xy_mm(self, port: str, position: str) -> tuple[float, float]:
        """Gantry coordinates of a position of the rack in a port."""
        self._check_port(port)
        ox, oy = self.origins[port]
        dx, dy = position_offset_mm(position)
        return ox + dx, oy + dy

    def locate(self, x_mm: float, y_mm: float) -> tuple[str, str] | None:
        """(port, position) under the gantry at (x, y), or None when it is over no position."""
        for port, (ox, oy) in self.origins.items():
            column = round((x_mm - ox) / PITCH_MM)
            row = round((y_mm - oy) / PITCH_MM)
            if not (0 <= column < COLUMNS and 0 <= row < len(ROWS)):
                continue
            if (
                abs(x_mm - ox - column * PITCH_MM) <= TOLERANCE_MM
                and abs(y_mm - oy - row * PITCH_MM) <= TOLERANCE_MM
            ):
                return port, f"{ROWS[row]}{column + 1}"
        return None

    def tube_at(self, x_mm: float, y_mm: float) -> str | None:
        """Barcode of the tube under the gantry (None: no rack, no tube, or off-position)."""
        where = self.locate(x_mm, y_mm)
        if where is None:
            return None
        rack = self.racks[where[0]]
        return None if rack is None else rack.tubes.get(where[1])

    def snapshot(self) -> dict[str, dict[str, object] | None]:
        """Inspectable state: port -> {rack, tubes} or None."""
        return {
            port: None if rack is None else {"rack": rack.rack_id, "tubes": dict(rack.tubes)}
            for port, rack in self.racks.items()
        }

    def _check_port(self, port: str) -> None:
        if port not in self.origins:
            raise StationError(f"no port '{port}' (ports: {', '.join(self.origins)})")


def default_station(ports: Iterable[str] = ("P1", "P2", "P3", "P4", "OUT")) -> PickStation:
    """Ports side by side along x, 130 mm apart (an SBS footprint is 127.76 mm wide)."""
    return PickStation(ports={name: (20.0 + 130.0 * i, 20.0) for i, name in enumerate(ports)})
