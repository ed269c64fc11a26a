"""How long racks may stay at the pick station: the executor's exposure budget.

A rack's trip runs from its retrieve request until it is stored again and must stay within E
(`[jobs].exposure_limit_s`). Before each tube, before fetching another rack and before each
retry of a failed motion, the executor asks `overrun`: if the racks went back after that much
more work, would each still be stored in time? Racks go back oldest first and one at a time
(the store has one robot), so a rack is stored only after the scans and stores of the racks
ahead of it. Durations are the longest seen so far on the executor's clock — a tube (from the
move over it to its recorded movement, motion faults excluded), a rack scan, a robot move
(retrieve or store); before the first of each, a guess. `[jobs].exposure_margin_s` is kept in
reserve on top, for what the estimate misses (a store move is longer when the carousel stands
far from the rack's tower).
"""

from __future__ import annotations

from collections.abc import Mapping

#: Guesses before the first tube, rack scan and robot move have been timed.
TUBE_GUESS_S = 20.0
SCAN_GUESS_S = 15.0
ROBOT_GUESS_S = 30.0


class Longest:
    """The longest duration seen so far, or a guess before the first."""

    def __init__(self, guess_s: float) -> None:
        self.guess_s = guess_s
        self.seen_s: float | None = None

    def add(self, seconds: float) -> None:
        self.seen_s = seconds if self.seen_s is None else max(self.seen_s, seconds)

    @property
    def value(self) -> float:
        return self.guess_s if self.seen_s is None else self.seen_s


class ExposureBudget:
    """Whether racks at the station can afford more work before going back."""

    def __init__(self, *, limit_s: float, margin_s: float) -> None:
        self.limit_s = limit_s
        self.margin_s = margin_s
        self.tube = Longest(TUBE_GUESS_S)
        self.scan = Longest(SCAN_GUESS_S)
        self.robot = Longest(ROBOT_GUESS_S)

    def return_s(self) -> float:
        """One rack's way back: scanned in its port, then stored."""
        return self.scan.value + self.robot.value

    @staticmethod
    def return_order(out_since: Mapping[str, float]) -> list[str]:
        """Racks in the order they go back: out longest first."""
        return sorted(out_since, key=lambda rack: (out_since[rack], rack))

    def overrun(self, out_since: Mapping[str, float], *, now: float, work_s: float) -> str | None:
        """Why the racks (rack -> out since) must go back before `work_s` more seconds of work
        (and then their returns), or None when every one would still be back within E less
        the margin."""
        back = now + work_s
        for rack in self.return_order(out_since):
            back += self.return_s()
            trip = back - out_since[rack]
            if trip > self.limit_s - self.margin_s:
                return (
                    f"rack {rack} would be out {trip:.0f} s "
                    f"(E {self.limit_s:.0f} s less {self.margin_s:.0f} s margin)"
                )
        return None
