"""The alarm engine: device readings in, ISA-18.2 alarms out (retained MQTT, SQLite, pages).

Pollers call `on_reading` / `on_failure` synchronously after every poll; evaluation is pure and
cheap, and what changed is handed to the engine's publisher task, which stores it (SQLite) and
then publishes the retained `BASE/alarms/{alarm}` and hands the events to the notifier. A timer
task wakes at the earliest detector deadline (an on-delay ending between two polls, a grace
period or a shelve running out, a device silent past its comm-loss time), so an alarm reaches
the wire when its delay ends, not at the next poll.

Alarm ids: `{device}.comm_loss`, `{device}.stale`, `{device}.{value}.sensor_fault`,
`{device}.{value}.stale`, `{device}.{value}.{high_high|high|low|low_low|rate}` and
`{device}.{value}` for a discrete rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

import structlog

from controllerd._tasks import BackgroundTasks
from controllerd._time import format_ts, utc_now
from controllerd.alarms._detect import (
    Detector,
    DiscreteDetector,
    FreshnessDetector,
    LimitDetector,
    RateDetector,
    TimeoutDetector,
)
from controllerd.alarms._rules import (
    KIND_DEFAULTS,
    DeviceAlarms,
    Severity,
    SuppressRule,
    ValueAlarms,
    rules_for,
)
from controllerd.alarms._state import AlarmCommandError, AlarmState, Event
from controllerd.config import Config, DeviceConfig
from controllerd.mqtt import Publisher
from controllerd.statedb import StateDb
from controllerd.topics import AlarmPayload, Topics
from drivers import Reading

_log = structlog.get_logger("controllerd.alarms")

#: Longest an operator may shelve an alarm for.
MAX_SHELVE_S = 24 * 3600.0

#: Stale data by default: no fresh data for this many poll intervals (at least `STALE_MIN_S`),
#: plus the device's read budget.
STALE_POLLS = 10
STALE_MIN_S = 30.0


@dataclass(frozen=True, slots=True)
class AlarmNotice:
    """What the notifier hears: an event of an alarm occurrence, with the published payload."""

    event: Event
    alarm: str
    occurrence: int
    severity: Severity
    payload: dict[str, Any]
    actor: str


@dataclass(slots=True)
class _Point:
    alarm: str
    device: str
    value_name: str | None
    rule: str
    severity: Severity
    text: str
    state: AlarmState
    detector: Detector | None = None
    suppressible_by_grace: bool = False
    value: float | None = None
    since: str = field(default_factory=utc_now)
    last_state: str = ""
    #: a discrete rule's own text; the device's words on the value are appended to it
    rule_text: str = ""
    #: (active, acked, occurrence) as last published: a change under a mask is news too
    last_facts: tuple[bool, bool, int] = (False, True, 0)

    def facts(self) -> tuple[bool, bool, int]:
        st = self.state
        return (st.active, st.acked, st.occurrence)

    @property
    def limit(self) -> float | None:
        return None if self.detector is None else self.detector.limit


@dataclass(slots=True)
class _Grace:
    rule: SuppressRule
    opened_at: float | None = None
    closed_at: float | None = None
    opened_for: float = 0.0
    #: the rule's value and its open state, as plain attributes (read every poll)
    gate: str = field(init=False)
    open_when: float = field(init=False)

    def __post_init__(self) -> None:
        self.gate = self.rule.value
        self.open_when = self.rule.active_when

    def feed(self, value: float, now: float) -> None:
        is_open = value == self.open_when
        if is_open and self.opened_at is None:
            self.opened_at, self.closed_at = now, None
        elif not is_open and self.opened_at is not None:
            self.opened_for = now - self.opened_at
            self.opened_at, self.closed_at = None, now

    def active(self, now: float) -> bool:
        # Sums, as `deadline` computes them: at its deadline a grace period is over.
        if self.opened_at is not None:
            return now < self.opened_at + self.rule.grace_s
        if self.closed_at is not None and self.opened_for < self.rule.grace_s:
            return now < self.closed_at + self.rule.recovery_s
        return False

    def deadline(self, now: float) -> float | None:
        """When the grace period ends, if it has not yet."""
        end = None
        if self.opened_at is not None:
            end = self.opened_at + self.rule.grace_s
        elif self.closed_at is not None and self.opened_for < self.rule.grace_s:
            end = self.closed_at + self.rule.recovery_s
        return end if end is not None and end > now else None


@dataclass(slots=True)
class _ValueFeed:
    """What one value of a reading feeds on the quiet path: the points that show it, and the
    detectors that watch it, idle (the device is quiet).

    An idle limit detector ignores a value on the safe side of its limit (`feed_idle`), so a
    value within `safe_low`..`safe_high` (the tightest low and high limits) skips them all.
    """

    points: list[_Point] = field(default_factory=list)
    limits: list[Detector] = field(default_factory=list)
    others: list[Detector] = field(default_factory=list)
    safe_low: float = -math.inf
    safe_high: float = math.inf

    def add(self, point: _Point, detector: Detector | None) -> None:
        self.points.append(point)
        if isinstance(detector, LimitDetector):
            assert detector.limit is not None
            self.limits.append(detector)
            if detector.high:
                self.safe_high = min(self.safe_high, detector.limit)
            else:
                self.safe_low = max(self.safe_low, detector.limit)
        elif detector is not None:
            self.others.append(detector)


@dataclass(slots=True)
class _Device:
    config: DeviceConfig
    alarms_config: DeviceAlarms
    comm: _Point
    comm_timer: TimeoutDetector
    fresh: _Point
    freshness: FreshnessDetector
    points: dict[str, _Point] = field(default_factory=dict)
    graces: dict[str, _Grace] = field(default_factory=dict)  # keyed by the suppressed value
    #: the points a reading feeds a value to: each with its value name and detector
    detected: list[tuple[_Point, str, Detector]] = field(default_factory=list)
    #: those points and the stale-value points by value name, for the quiet path
    #: (`_feed_quiet`)
    feeds: dict[str, _ValueFeed] = field(default_factory=dict)
    #: whether the poller reported at all: the comm-loss clock starts at its first report
    reported: bool = False
    #: as of its last full evaluation, every alarm of the device is normal, unmasked and
    #: published as such, every detector idle and no grace period running: see `_feed_quiet`
    quiet: bool = False


class AlarmEngine:
    """Owns every alarm of a room; `async with` starts its publisher and timer tasks."""

    def __init__(
        self,
        *,
        config: Config,
        mqtt: Publisher,
        topics: Topics,
        db: StateDb,
        notify: Callable[[AlarmNotice], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        startup_grace_s: float = 0.0,
    ) -> None:
        self._mqtt = mqtt
        self._topics = topics
        self._db = db
        self._notify = notify
        self._clock = clock
        self._wall = wall
        self._devices: dict[str, _Device] = {}
        self.points: dict[str, _Point] = {}
        self._dirty: dict[str, list[tuple[Event | str, str]]] = {}
        self._wake = asyncio.Event()
        self._rearm = asyncio.Event()
        self._controller = config.controller.id
        self._store_alarm = f"{config.controller.id}.alarm-store"
        self._store_error: str | None = None
        self._armed_for = math.inf
        self._flushed = asyncio.Condition()
        self._tasks = BackgroundTasks()
        self._generation = 0
        self._stored_generation = 0
        # Devices get `startup_grace_s` on top of their comm-loss time to answer a first time
        # (connection set-up, an OPC UA session, a serial line opening).
        now = clock() + startup_grace_s
        for device in config.devices:
            self._add_device(device, now)

    # ------------------------------------------------------------------ building

    def _add_device(self, device: DeviceConfig, now: float) -> None:
        configured: DeviceAlarms | None = getattr(device, "alarms", None)
        alarms_config = configured or DeviceAlarms()
        after = alarms_config.comm_loss_after_s or (
            device.read_budget_s() + 2 * device.poll_interval_s
        )
        comm_timer = TimeoutDetector(after_s=after, now=now)
        comm = self._point(
            f"{device.id}.comm_loss",
            device.id,
            None,
            "comm_loss",
            alarms_config.comm_loss_severity,
            f"{device.id} is not answering",
            comm_timer,
        )
        defaults_hook = getattr(device, "default_alarms", None)
        defaults = defaults_hook() if callable(defaults_hook) else None
        effective = rules_for(device.kind, configured, defaults)
        stale_after = alarms_config.stale_after_s or (
            max(STALE_MIN_S, STALE_POLLS * device.poll_interval_s) + device.read_budget_s()
        )
        freshness = FreshnessDetector(
            after_s=stale_after, watched=_watched(device, effective), now=now
        )
        fresh = self._point(
            f"{device.id}.stale",
            device.id,
            None,
            "stale",
            alarms_config.stale_severity,
            f"{device.id}: no fresh data for {stale_after:g} s",
            freshness,
        )
        dev = _Device(
            config=device,
            alarms_config=alarms_config,
            comm=comm,
            comm_timer=comm_timer,
            fresh=fresh,
            freshness=freshness,
        )
        self._devices[device.id] = dev
        for value, rules in effective.items():
            for rule_name, high in (("high_high", True), ("high", True), ("low", False)):
                rule = getattr(rules, rule_name)
                if rule is not None:
                    self._value_point(
                        dev,
                        value,
                        rule_name,
                        rule.severity,
                        rule.latching,
                        LimitDetector(rule, high=high),
                        grace=high and rules.suppress_while is not None,
                    )
            if rules.low_low is not None:
                self._value_point(
                    dev,
                    value,
                    "low_low",
                    rules.low_low.severity,
                    rules.low_low.latching,
                    LimitDetector(rules.low_low, high=False),
                )
            if rules.rate is not None:
                self._value_point(
                    dev,
                    value,
                    "rate",
                    rules.rate.severity,
                    rules.rate.latching,
                    RateDetector(rules.rate),
                    grace=rules.suppress_while is not None,
                )
            if rules.discrete is not None:
                point = self._value_point(
                    dev,
                    value,
                    "",
                    rules.discrete.severity,
                    rules.discrete.latching,
                    DiscreteDetector(rules.discrete),
                )
                point.text = point.rule_text = rules.discrete.text or point.text
            if rules.suppress_while is not None:
                dev.graces[value] = _Grace(rule=rules.suppress_while)
        for value, _limit in device.stale_limits().items():
            self._value_point(dev, value, "stale", alarms_config.stale_severity, False, None)
        if alarms_config.out_of_service:
            for point in self._device_points(dev):
                point.state.out_of_service = True

    def _point(
        self,
        alarm: str,
        device: str,
        value: str | None,
        rule: str,
        severity: Severity,
        text: str,
        detector: Detector | None,
        latching: bool = False,
    ) -> _Point:
        point = _Point(
            alarm=alarm,
            device=device,
            value_name=value,
            rule=rule,
            severity=severity,
            text=text,
            state=AlarmState(alarm=alarm, latching=latching),
            detector=detector,
        )
        point.last_state = point.state.state
        point.last_facts = point.facts()
        self.points[alarm] = point
        return point

    def _value_point(
        self,
        dev: _Device,
        value: str,
        rule: str,
        severity: Severity,
        latching: bool,
        detector: Detector | None,
        *,
        grace: bool = False,
    ) -> _Point:
        alarm = f"{dev.config.id}.{value}" + (f".{rule}" if rule else "")
        words = {"high_high": "high-high", "low_low": "low-low", "rate": "rate of change"}
        text = f"{value} {words.get(rule, rule)}".strip() if rule else f"{value} active"
        point = self._point(
            alarm, dev.config.id, value, rule or "discrete", severity, text, detector, latching
        )
        point.suppressible_by_grace = grace
        dev.points[alarm] = point
        if detector is not None:
            dev.detected.append((point, value, detector))
        if detector is not None or rule == "stale":
            dev.feeds.setdefault(value, _ValueFeed()).add(point, detector)
        dev.quiet = False
        return point

    def _sensor_point(self, dev: _Device, value: str) -> _Point:
        alarm = f"{dev.config.id}.{value}.sensor_fault"
        point = self.points.get(alarm)
        if point is None:
            point = self._value_point(
                dev, value, "sensor_fault", dev.alarms_config.sensor_fault_severity, False, None
            )
            point.state.out_of_service = dev.alarms_config.out_of_service
        return point

    @staticmethod
    def _device_points(dev: _Device) -> Iterable[_Point]:
        yield dev.comm
        yield dev.fresh
        yield from dev.points.values()

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        stored = await self._db.run(self._db.load_alarms)
        now = self._clock()
        for alarm, facts in stored.items():
            point = self.points.get(alarm)
            if point is None and facts.get("external"):
                point = self._point(
                    alarm,
                    facts.get("device", "?"),
                    None,
                    "external",
                    facts.get("severity", "high"),
                    facts.get("text", alarm),
                    None,
                )
            if point is None:
                if alarm.endswith(".sensor_fault") and alarm.split(".")[0] in self._devices:
                    dev = self._devices[alarm.split(".")[0]]
                    point = self._sensor_point(dev, alarm.split(".")[1])
                else:
                    await self._retire(alarm)
                    continue
            self._restore(point, facts, now)
        for point in self.points.values():
            self._mark(point, [(event, "system") for event in point.state.announce_pending()])
        await self._tasks.start()
        self._tasks.spawn(self._publisher(), name="alarms-publisher")
        self._tasks.spawn(self._timer(), name="alarms-timer")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._tasks.close()

    def _restore(self, point: _Point, facts: dict[str, Any], now: float) -> None:
        self._unquiet(point)
        st = point.state
        for key in (
            "condition",
            "active",
            "acked",
            "announced",
            "occurrence",
            "shelved_until",
            "shelve_reason",
            "suppressed",
        ):
            if key in facts:
                setattr(st, key, facts[key])
        point.since = facts.get("since", point.since)
        point.value = facts.get("value")
        if point.rule == "discrete" and isinstance(facts.get("text"), str):
            point.text = facts["text"]
        point.last_state = st.state
        point.last_facts = point.facts()
        if isinstance(point.detector, FreshnessDetector) and st.condition:
            point.detector.restore_active()  # stale until fresh data says otherwise
        elif point.detector is not None and st.condition:
            # Continue the condition as it was: a restart is not a new occurrence.
            debounce = point.detector._debounce
            debounce.raw = debounce.active = True
            debounce._raw_since = now

    async def _retire(self, alarm: str) -> None:
        """An alarm that no longer exists in the config: its retained topic goes."""
        await self._db.run(lambda: self._db.delete_alarm(alarm))
        clear = getattr(self._mqtt, "clear_retained", None)
        if clear is not None:
            await clear(self._topics.alarm(alarm))
        _log.info("alarm retired (no longer configured)", alarm=alarm)

    def known(self, alarm: str) -> bool:
        return alarm in self.points

    def external(
        self, alarm: str, *, device: str, active: bool, severity: Severity, text: str
    ) -> None:
        """An alarm whose condition is decided elsewhere (a notifier that cannot deliver)."""
        point = self.points.get(alarm)
        if point is None:
            if not active:
                return
            point = self._point(alarm, device, None, "external", severity, text, None)
        point.text = text
        self._set_condition(point, active, None)

    def active_count(self) -> int:
        return sum(1 for p in self.points.values() if p.state.active)

    def open_occurrences(self) -> list[AlarmNotice]:
        """Announced occurrences that are not over, for the pager after a restart: `raised`
        (active, unacknowledged), `acked` (active, acknowledged) or `returned` (back to
        normal, unacknowledged)."""
        result = []
        for point in self.points.values():
            st = point.state
            if not st.announced or (st.acked and not st.active):
                continue
            event = Event.ACKED if st.acked else Event.RAISED if st.active else Event.RETURNED
            result.append(
                AlarmNotice(
                    event=event,
                    alarm=point.alarm,
                    occurrence=st.occurrence,
                    severity=point.severity,
                    payload=self.payload(point).model_dump(),
                    actor="system",
                )
            )
        return result

    # ------------------------------------------------------------------ inputs from pollers

    def on_reading(self, device: str, reading: Reading, stale: Iterable[str] = ()) -> None:
        """A successful poll (synchronous and cheap)."""
        dev = self._devices.get(device)
        if dev is None:
            return
        now = self._clock()
        dev.reported = True
        dev.comm_timer.ok(now)
        dev.freshness.reading(reading.values, reading.faults, now)
        for grace in dev.graces.values():
            gate = reading.values.get(grace.gate)
            if gate is not None:
                grace.feed(gate, now)
        if dev.quiet and not reading.faults and not stale:  # stale: a list, as a rule
            if not self._feed_quiet(dev, reading, now):
                self._evaluate(dev, now)
            return
        stale_set = set(stale)
        for point in dev.points.values():
            name = point.value_name
            assert name is not None
            if point.rule == "stale":
                self._set_condition(point, name in stale_set, reading.values.get(name))
                continue
            if point.rule == "sensor_fault":
                self._set_condition(point, name in reading.faults, None)
                continue
            value = reading.values.get(name)
            if value is not None and point.detector is not None:
                point.detector.feed(value, now)
                point.value = value
            if point.rule == "discrete" and name in reading.texts:
                # The device's own words (a store's fault text) say which fault it is; they
                # stay in the message after it clears, naming the occurrence to acknowledge.
                point.text = f"{point.rule_text}: {reading.texts[name]}"
        for name in reading.faults:
            self._set_condition(self._sensor_point(dev, name), True, None)
        self._evaluate(dev, now)

    def on_failure(self, device: str, error: str) -> None:
        """A failed poll: the device did not answer (after the driver's own retries)."""
        dev = self._devices.get(device)
        if dev is None:
            return
        now = self._clock()
        if not dev.reported:
            dev.reported = True
            dev.comm_timer.ok(now)
        dev.comm_timer.failed(now)
        dev.freshness.failed(now)
        dev.comm.text = f"{device} is not answering: {error}"
        self._evaluate(dev, now)

    # ------------------------------------------------------------------ evaluation

    def _feed_quiet(self, dev: _Device, reading: Reading, now: float) -> bool:
        """Feed a good reading without stale values or faults to a quiet device.

        Returns True when the device stays quiet; False when the full evaluation must follow.
        What the full path does with such a reading, cheaper: the stale and sensor-fault
        conditions stay false, so only the values and the detectors are fed; and while every
        detector stays idle, fresh data keeps coming and no grace period runs, no alarm of
        the device can change, so what is left is its deadline (the freshness one, the only
        one a quiet device has). Most readings take this path: about 20 state updates less.
        """
        values = reading.values
        idle = True
        for name, feed in dev.feeds.items():
            value = values.get(name)
            if value is None:
                continue
            for point in feed.points:
                point.value = value
            if not feed.safe_low <= value <= feed.safe_high:  # NaN included: each decides
                for detector in feed.limits:
                    if not detector.feed_idle(value, now):
                        idle = False
            for detector in feed.others:
                if not detector.feed_idle(value, now):
                    idle = False
        texts = reading.texts
        if texts:
            for point, name, _detector in dev.detected:
                if point.rule == "discrete" and name in texts:
                    point.text = f"{point.rule_text}: {texts[name]}"
        freshness = dev.freshness
        if not idle or freshness.active:
            return False
        for grace in dev.graces.values():
            if grace.active(now):
                return False
        deadline = freshness.deadline()
        if deadline is not None and deadline < self._armed_for:  # `_rearm_for`, inline
            self._armed_for = deadline
            self._rearm.set()
        return True

    @staticmethod
    def _is_quiet(dev: _Device, now: float) -> bool:
        """Whether every alarm of the device is normal, unmasked and published as such, every
        detector idle and no grace period running (a grace period that is over stays over)."""
        if not dev.comm_timer.idle or not dev.freshness.idle:
            return False
        if any(grace.active(now) for grace in dev.graces.values()):
            return False
        for point in (dev.comm, dev.fresh, *dev.points.values()):
            st = point.state
            if (
                st.condition
                or st.active
                or not st.acked
                or st.suppressed
                or st.out_of_service
                or st.shelved_until is not None
                or point.last_state != "normal"
                or point.last_facts != (False, True, st.occurrence)
            ):
                return False
        return all(detector.idle for _point, _name, detector in dev.detected)

    def _unquiet(self, point: _Point) -> None:
        """The point changed outside an evaluation: its device must be evaluated in full."""
        dev = self._devices.get(point.device)
        if dev is not None:
            dev.quiet = False

    def _rearm_for(self, deadline: float | None) -> None:
        """Wake the timer earlier when a device brings an earlier deadline."""
        if deadline is not None and deadline < self._armed_for:
            self._armed_for = deadline
            self._rearm.set()

    def _evaluate(self, dev: _Device, now: float) -> None:
        dev.comm_timer.tick(now)
        self._set_condition(dev.comm, dev.comm_timer.active, None)
        comm_lost = dev.comm.state.condition
        self._evaluate_freshness(dev, now, comm_lost)
        faulted = {
            p.value_name
            for p in dev.points.values()
            if p.rule == "sensor_fault" and p.state.condition
        }
        wall = self._wall()
        for point in dev.points.values():
            grace = dev.graces.get(point.value_name or "")
            suppressed = (
                comm_lost
                or (point.rule != "sensor_fault" and point.value_name in faulted)
                or (point.suppressible_by_grace and grace is not None and grace.active(now))
            )
            condition = point.state.condition
            if point.detector is not None:
                point.detector.tick(now)
                condition = point.detector.active
            self._update(point, condition=condition, suppressed=suppressed)
            if point.state.shelved_until is not None:
                self._apply(point, point.state.expire_shelve(wall))
        for point in (dev.comm, dev.fresh):
            if point.state.shelved_until is not None:
                self._apply(point, point.state.expire_shelve(wall))
        dev.quiet = self._is_quiet(dev, now)
        self._rearm_for(self._device_deadline(dev))

    def _evaluate_freshness(self, dev: _Device, now: float, comm_lost: bool) -> None:
        detector = dev.freshness
        detector.tick(now)
        if detector.active and not dev.fresh.state.condition:
            missing = detector.missing(now)
            dev.fresh.text = (
                f"{dev.config.id}: no fresh {', '.join(missing)} for {detector.after_s:g} s"
                if missing and now - detector.last_reading < detector.after_s
                else f"{dev.config.id}: no reading for {detector.after_s:g} s"
            )
        self._update(dev.fresh, condition=detector.active, suppressed=comm_lost)

    def _update(self, point: _Point, *, condition: bool, suppressed: bool) -> None:
        """A new condition and mask at once: a mask that begins applies first (an occurrence
        that starts under it is not annunciated), a mask that ends applies last (an occurrence
        that ended under it needs nobody)."""
        st = point.state
        if suppressed:
            self._apply(point, st.set_suppressed(True))
        self._set_condition(point, condition, None)
        if not suppressed:
            self._apply(point, st.set_suppressed(False))

    def _set_condition(self, point: _Point, condition: bool, value: float | None) -> None:
        if value is not None:
            point.value = value
        self._apply(point, point.state.set_condition(condition))

    def _apply(self, point: _Point, events: list[Event], actor: str = "system") -> None:
        if events or point.state.state != point.last_state or point.facts() != point.last_facts:
            self._mark(point, [(e, actor) for e in events])

    def _mark(self, point: _Point, events: list[tuple[Event | str, str]]) -> None:
        state = point.state.state
        if state != point.last_state:
            point.since = utc_now()
            if not events:
                events = [(f"state:{state}", "system")]
            point.last_state = state
        point.last_facts = point.facts()
        self._unquiet(point)
        self._dirty.setdefault(point.alarm, []).extend(events)
        self._generation += 1
        self._wake.set()

    def _device_deadline(self, dev: _Device) -> float | None:
        if dev.quiet:
            return dev.freshness.deadline()  # idle detectors and no grace period: no others
        deadlines: list[float] = []
        now = self._clock()
        for point in self._device_points(dev):
            if point.detector is not None:
                d = point.detector.deadline()
                if d is not None:
                    deadlines.append(d)
        for grace in dev.graces.values():
            d = grace.deadline(now)
            if d is not None:
                deadlines.append(d)
        return min(deadlines) if deadlines else None

    def next_deadline(self) -> float | None:
        """When the earliest delay, grace period or comm-loss time ends (monotonic)."""
        deadlines = [d for dev in self._devices.values() if (d := self._device_deadline(dev))]
        return min(deadlines) if deadlines else None

    def tick(self) -> None:
        """Re-evaluate every device now (delays, graces, shelves, silent devices)."""
        now = self._clock()
        for dev in self._devices.values():
            if dev.quiet:
                # Time alone changes nothing of a quiet device but its data going stale.
                dev.freshness.tick(now)
                if not dev.freshness.active:
                    self._rearm_for(dev.freshness.deadline())
                    continue
            self._evaluate(dev, now)

    async def _timer(self) -> None:
        while True:
            deadline = self.next_deadline()
            self._armed_for = math.inf if deadline is None else deadline
            delay = 1.0 if deadline is None else max(0.0, deadline - self._clock()) + 0.001
            self._rearm.clear()
            # Sleep until the deadline, or until a reading brings an earlier one.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(delay, 1.0)):
                    await self._rearm.wait()
            self.tick()

    # ------------------------------------------------------------------ output

    def payload(self, point: _Point) -> AlarmPayload:
        st = point.state
        return AlarmPayload(
            alarm=point.alarm,
            device=point.device,
            state=st.state,
            severity=point.severity,
            active=st.active,
            acked=st.acked,
            value=point.value,
            limit=point.limit,
            message=point.text,
            since=point.since,
            occurrence=st.occurrence,
            shelved_until=(None if st.shelved_until is None else _rfc3339(st.shelved_until)),
            shelve_reason=st.shelve_reason,
        )

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        """Store, publish and notify everything changed so far (in that order)."""
        while self._dirty:
            dirty, self._dirty = self._dirty, {}
            generation = self._generation
            for alarm, events in dirty.items():
                point = self.points[alarm]
                await self._store_and_publish(point, events)
            async with self._flushed:
                self._stored_generation = generation
                self._flushed.notify_all()

    async def _store_and_publish(
        self, point: _Point, events: list[tuple[Event | str, str]]
    ) -> None:
        payload = self.payload(point)
        body = payload.to_json()
        st = point.state
        facts: dict[str, Any] = {
            "condition": st.condition,
            "active": st.active,
            "acked": st.acked,
            "announced": st.announced,
            "occurrence": st.occurrence,
            "shelved_until": st.shelved_until,
            "shelve_reason": st.shelve_reason,
            "suppressed": st.suppressed,
            "since": point.since,
            "value": point.value,
        }
        if point.rule == "external":
            facts.update(
                external=True, device=point.device, severity=point.severity, text=point.text
            )
        elif point.rule == "discrete" and point.text != point.rule_text:
            facts["text"] = point.text  # the device's own words on it: kept across a restart
        rows: list[tuple[str, int, str, float | None, str]] = [
            (str(e), st.occurrence, st.state, point.value, actor) for e, actor in events
        ]
        # On the wire first, then stored, then paged: the fsync stays off the alarm's latency,
        # and a crash between the two is harmless (the restarted daemon republishes what it
        # stored and raises the occurrence again, paging it once since nobody was paged yet).
        await self._mqtt.publish(self._topics.alarm(point.alarm), body, qos=1, retain=True)
        try:
            await self._db.run(
                lambda: self._db.save_alarm(
                    alarm=point.alarm, device=point.device, state=facts, payload=body, events=rows
                )
            )
        except (sqlite3.Error, OSError) as exc:
            # Alarms must keep flowing and paging when the disk fails; the failure is an alarm.
            self._store_failed(str(exc))
        else:
            if self._store_error is not None and point.alarm != self._store_alarm:
                self._store_error = None
                self.external(
                    self._store_alarm,
                    device=self._controller,
                    active=False,
                    severity="critical",
                    text="alarm state is stored again",
                )
        for event, actor in events:
            if isinstance(event, Event):
                _log.info(
                    f"alarm {event.value}",
                    alarm=point.alarm,
                    device=point.device,
                    state=st.state,
                    severity=point.severity,
                    value=point.value,
                    occurrence=st.occurrence,
                    actor=actor,
                )
                if self._notify is not None:
                    self._notify(
                        AlarmNotice(
                            event=event,
                            alarm=point.alarm,
                            occurrence=st.occurrence,
                            severity=point.severity,
                            payload=json.loads(body),
                            actor=actor,
                        )
                    )

    def _store_failed(self, reason: str) -> None:
        if self._store_error is None:
            _log.error(
                "cannot store alarm state; alarms are still published and paged", reason=reason
            )
            self._store_error = reason
            self.external(
                self._store_alarm,
                device=self._controller,
                active=True,
                severity="critical",
                text=f"alarm state cannot be stored (restarts will forget it): {reason}",
            )

    async def settled(self) -> None:
        """Wait until what is marked so far is stored and published."""
        target = self._generation
        self._wake.set()
        async with self._flushed:
            await self._flushed.wait_for(lambda: self._stored_generation >= target)

    # ------------------------------------------------------------------ operator actions

    def _get(self, alarm: str) -> _Point:
        point = self.points.get(alarm)
        if point is None:
            raise AlarmCommandError(f"no alarm '{alarm}'")
        return point

    async def ack(self, alarm: str, *, operator: str) -> dict[str, Any]:
        point = self._get(alarm)
        self._apply(point, point.state.ack(), actor=operator)
        await self.settled()
        return self.payload(point).model_dump()

    async def shelve(
        self, alarm: str, *, operator: str, duration_s: float, reason: str
    ) -> dict[str, Any]:
        point = self._get(alarm)
        if not 0 < duration_s <= MAX_SHELVE_S:
            raise AlarmCommandError(
                f"duration_s must be within (0, {MAX_SHELVE_S:g}], got {duration_s:g}"
            )
        self._apply(
            point,
            point.state.shelve(until=self._wall() + duration_s, reason=reason),
            actor=operator,
        )
        await self.settled()
        return self.payload(point).model_dump()

    async def unshelve(self, alarm: str, *, operator: str) -> dict[str, Any]:
        point = self._get(alarm)
        self._apply(point, point.state.unshelve(), actor=operator)
        await self.settled()
        return self.payload(point).model_dump()


def _rfc3339(epoch: float) -> str:
    return format_ts(datetime.fromtimestamp(epoch, UTC))


def _watched(device: DeviceConfig, rules: dict[str, ValueAlarms]) -> set[str]:
    """Values an alarm depends on that the device sends in every good reading: a register of
    its map, or (devices without one) a value of its kind's defaults. Optional values (an LN2
    tank's `hours_to_low`) are not watched: their absence is not stale data."""
    registers = getattr(device, "registers", None)
    always = (
        {register.name for register in registers}
        if registers is not None
        else set(KIND_DEFAULTS.get(device.kind, {}))
    )
    watched: set[str] = set()
    for value, rule in rules.items():
        if any(getattr(rule, name) is not None for name in _RULE_FIELDS):
            watched.add(value)
        if rule.suppress_while is not None:
            watched.add(rule.suppress_while.value)
    return watched & always


_RULE_FIELDS = ("high_high", "high", "low", "low_low", "rate", "discrete")
