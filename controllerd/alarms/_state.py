"""The ISA-18.2 alarm state model of one alarm, pure (no I/O, caller's clock).

Underneath every alarm are three facts: whether its condition is `active`, whether the current
occurrence is `acked`, and what masks it (`shelved` by an operator for a limited time,
`suppressed` by design, `out_of_service` for maintenance). The published `state` is derived:

    out_of_service > shelved > suppressed > unacked | acked | rtn_unacked | normal

A masked alarm keeps following its condition underneath, so unmasking shows the truth at once;
an occurrence that began and ended entirely under a mask was never annunciated and needs no
acknowledgement. A latching alarm stays active after its condition clears until acknowledged.

Every method returns the `Event`s people may need to hear about (`raised`, `acked`,
`returned`, `cleared`): the notifier pages on `raised` once per occurrence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

AlarmStateName = Literal[
    "normal", "unacked", "acked", "rtn_unacked", "shelved", "suppressed", "out_of_service"
]


class Event(StrEnum):
    RAISED = "raised"  # a new occurrence is annunciated
    ACKED = "acked"  # an operator acknowledged it
    RETURNED = "returned"  # the condition cleared, still unacknowledged
    CLEARED = "cleared"  # back to normal (cleared after ack, or acked after return)
    SHELVED = "shelved"
    UNSHELVED = "unshelved"


class AlarmCommandError(Exception):
    """An operator action that does not apply to the alarm in its current state."""


@dataclass
class AlarmState:
    """One alarm's ISA-18.2 state."""

    alarm: str
    latching: bool = False
    condition: bool = False
    active: bool = False
    acked: bool = True
    announced: bool = False
    occurrence: int = 0
    shelved_until: float | None = None
    shelve_reason: str | None = None
    suppressed: bool = False
    out_of_service: bool = False
    history: list[str] = field(default_factory=list)

    @property
    def masked(self) -> bool:
        return self.out_of_service or self.shelved_until is not None or self.suppressed

    @property
    def state(self) -> AlarmStateName:
        if self.out_of_service:
            return "out_of_service"
        if self.shelved_until is not None:
            return "shelved"
        if self.suppressed:
            return "suppressed"
        if self.active:
            return "acked" if self.acked else "unacked"
        return "normal" if self.acked else "rtn_unacked"

    # ------------------------------------------------------------------ inputs

    def set_condition(self, condition: bool) -> list[Event]:
        """The debounced condition, after every evaluation."""
        if condition == self.condition:
            return []
        self.condition = condition
        events: list[Event] = []
        if condition:
            if not self.active:  # a latched, unacknowledged alarm continues its occurrence
                self.occurrence += 1
                self.active, self.acked, self.announced = True, False, False
            if not self.masked:
                events += self._announce()
        else:
            if self.latching and not self.acked:
                return events  # latched until acknowledged
            events += self._return()
        return events

    def ack(self) -> list[Event]:
        """Operator acknowledgement; AlarmCommandError when there is nothing to acknowledge."""
        if self.out_of_service:
            raise AlarmCommandError(f"{self.alarm} is out of service")
        if self.acked:
            raise AlarmCommandError(f"{self.alarm} has nothing to acknowledge ({self.state})")
        self.acked = True
        events = [Event.ACKED] if self.announced else []
        if not self.condition and self.active:
            self.active = False  # a latched alarm is released by the ack
        if not self.active and self.announced:
            events.append(Event.CLEARED)
        return events

    def shelve(self, *, until: float, reason: str) -> list[Event]:
        if self.out_of_service:
            raise AlarmCommandError(f"{self.alarm} is out of service")
        self.shelved_until = until
        self.shelve_reason = reason
        return [Event.SHELVED]

    def unshelve(self) -> list[Event]:
        if self.shelved_until is None:
            raise AlarmCommandError(f"{self.alarm} is not shelved")
        self.shelved_until = self.shelve_reason = None
        return [Event.UNSHELVED, *self._unmasked()]

    def set_suppressed(self, suppressed: bool) -> list[Event]:
        if suppressed == self.suppressed:
            return []
        self.suppressed = suppressed
        return [] if suppressed else self._unmasked()

    def set_out_of_service(self, oos: bool) -> list[Event]:
        if oos == self.out_of_service:
            return []
        self.out_of_service = oos
        return [] if oos else self._unmasked()

    def announce_pending(self) -> list[Event]:
        """Raise an occurrence that began under a mask which is gone now (a restart that put a
        device back in service: its active alarms are annunciated, not silently unacked)."""
        return self._unmasked() if self.active else []

    def expire_shelve(self, now: float) -> list[Event]:
        """Automatic unshelving once the shelve time is over."""
        if self.shelved_until is not None and now >= self.shelved_until:
            return self.unshelve()
        return []

    # ------------------------------------------------------------------ internals

    def _announce(self) -> list[Event]:
        if self.active and not self.acked and not self.announced:
            self.announced = True
            return [Event.RAISED]
        return []

    def _return(self) -> list[Event]:
        if not self.active:
            return []
        self.active = False
        if not self.announced:
            # Began and ended under a mask: never annunciated, nothing to acknowledge.
            self.acked = True
            return []
        return [Event.CLEARED] if self.acked else [Event.RETURNED]

    def _unmasked(self) -> list[Event]:
        if self.masked:
            return []
        return self._announce()
