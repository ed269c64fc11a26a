"""Alarm rules in the config: limits, rates, discrete states, suppression by design.

A device's `alarms` block names rules per value; a value it names replaces that value's kind
defaults (a -80 °C freezer alarms at -70 °C without any config). Communication loss, stale data
and sensor failure are not rules: every device has them and no config can remove them (their
times and severities can be tuned).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from controllerd._strict import Strict

Severity = Literal["critical", "high", "medium", "low"]
SEVERITY_RANK: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}


class _Timing(Strict):
    severity: Severity = Field(default="high", description="How urgent the alarm is.")
    on_delay_s: float = Field(
        default=0.0, ge=0, description="The condition must hold this long before it alarms."
    )
    off_delay_s: float = Field(
        default=0.0, ge=0, description="It must be gone this long before the alarm clears."
    )
    latching: bool = Field(
        default=False,
        description="A latching alarm stays active after the condition clears until acknowledged.",
    )


class LimitRule(_Timing):
    """A high or low limit in the value's own unit, with a deadband against chattering."""

    limit: float = Field(description="The limit, in the value's unit (°C for `temperature_c`).")
    deadband: float = Field(
        default=0.0,
        ge=0,
        description="Once active, the value must come back this far past the limit to clear.",
    )


class RateRule(_Timing):
    """A rate of change: the value moving faster than `limit_per_min` units per minute."""

    limit_per_min: float = Field(gt=0, description="Units per minute (°C/min for temperatures).")
    direction: Literal["rise", "fall", "both"] = Field(default="rise")
    window_s: float = Field(default=60.0, gt=0, description="The rate is measured over this span.")


class DiscreteRule(_Timing):
    """A state value (0/1 flag, state code) that alarms when it equals `active_when`."""

    active_when: float = Field(default=1.0, description="The value that means 'in alarm'.")
    text: str = Field(default="", description="What the alarm means, for the page.")


class SuppressRule(Strict):
    """Suppression by design: another value of the same device opens a grace period.

    A door opening suppresses the cabinet's high alarm while it stays open (at most `grace_s`)
    and for `recovery_s` after it closes: a freezer warms when its door opens, by design.
    """

    value: str = Field(description="The value that opens the grace period (e.g. `door_open`).")
    active_when: float = Field(default=1.0)
    grace_s: float = Field(gt=0, description="Longest suppression while the door stays open.")
    recovery_s: float = Field(default=0.0, ge=0, description="Suppression after it closes.")


class ValueAlarms(Strict):
    """The rules of one value."""

    high_high: LimitRule | None = None
    high: LimitRule | None = None
    low: LimitRule | None = None
    low_low: LimitRule | None = None
    rate: RateRule | None = None
    discrete: DiscreteRule | None = None
    suppress_while: SuppressRule | None = Field(
        default=None, description="Suppresses this value's high alarms during a grace period."
    )

    @model_validator(mode="after")
    def _check_order(self) -> ValueAlarms:
        if self.high and self.high_high and self.high_high.limit <= self.high.limit:
            raise ValueError("high_high.limit must be above high.limit")
        if self.low and self.low_low and self.low_low.limit >= self.low.limit:
            raise ValueError("low_low.limit must be below low.limit")
        if self.high and self.low and self.low.limit >= self.high.limit:
            raise ValueError("low.limit must be below high.limit")
        return self


class DeviceAlarms(Strict):
    """A device's `alarms` block."""

    values: dict[str, ValueAlarms] = Field(
        default_factory=dict,
        description="Rules per value name; a value named here replaces its kind defaults.",
    )
    comm_loss_after_s: float | None = Field(
        default=None,
        gt=0,
        description="No answer for this long is a communication-loss alarm "
        "(default: the read timeout with retries plus two poll intervals).",
    )
    stale_after_s: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="No fresh data for this long (no reading, or a reading without a value the "
        "rules watch) is a stale-data alarm (default: the read budget plus ten poll intervals, "
        "at least 30 s). It can be tuned, not turned off.",
    )
    comm_loss_severity: Severity = "high"
    sensor_fault_severity: Severity = "high"
    stale_severity: Severity = "medium"
    out_of_service: bool = Field(
        default=False, description="Maintenance: the device's alarms are out of service."
    )


#: Kind defaults: the rules a kind gets without any config.
KIND_DEFAULTS: dict[str, dict[str, ValueAlarms]] = {
    "ult_freezer": {
        "temperature_c": ValueAlarms(
            high_high=LimitRule(limit=-60.0, severity="critical", deadband=1.0, on_delay_s=60),
            high=LimitRule(limit=-70.0, severity="high", deadband=1.0, on_delay_s=300),
            low=LimitRule(limit=-95.0, severity="low", deadband=1.0, on_delay_s=600),
            rate=RateRule(limit_per_min=1.0, severity="medium", on_delay_s=120, window_s=300),
            suppress_while=SuppressRule(value="door_open", grace_s=300, recovery_s=300),
        ),
        "door_open": ValueAlarms(
            discrete=DiscreteRule(severity="medium", on_delay_s=300, text="door open too long")
        ),
    },
    # A probe is the independent monitor inside a -80 °C freezer: the same limits as the
    # cabinet's, but no door signal to suppress door openings with, so its delays ride out an
    # ordinary opening (the air warms for a minute or two, then recovers) and still page long
    # before the samples warm. Colder than -95 °C is a misplaced or miscalibrated probe.
    # Room probes need their own limits in the config.
    "probe": {
        "temperature_c": ValueAlarms(
            high_high=LimitRule(limit=-60.0, severity="critical", deadband=1.0, on_delay_s=300),
            high=LimitRule(limit=-70.0, severity="high", deadband=1.0, on_delay_s=900),
            low=LimitRule(limit=-95.0, severity="low", deadband=1.0, on_delay_s=600),
        ),
    },
    "tube_store": {
        "chamber_temperature_c": ValueAlarms(
            high=LimitRule(limit=-70.0, severity="high", deadband=1.0, on_delay_s=300),
            suppress_while=SuppressRule(value="door_open", grace_s=300, recovery_s=300),
        ),
        "pick_chamber_temperature_c": ValueAlarms(
            high=LimitRule(limit=-15.0, severity="high", deadband=1.0, on_delay_s=120)
        ),
        "state_code": ValueAlarms(
            discrete=DiscreteRule(active_when=2, severity="high", text="store faulted")
        ),
        "door_open": ValueAlarms(
            discrete=DiscreteRule(severity="medium", on_delay_s=300, text="door open too long")
        ),
    },
    "ln2_tank": {
        "ln2_level_pct": ValueAlarms(
            low=LimitRule(limit=20.0, severity="critical", deadband=1.0, on_delay_s=60),
            high=LimitRule(limit=95.0, severity="medium", deadband=1.0, on_delay_s=60),
        ),
        "temperature_a_c": ValueAlarms(
            high=LimitRule(limit=-150.0, severity="critical", deadband=2.0, on_delay_s=120)
        ),
        "fill_timeout": ValueAlarms(
            discrete=DiscreteRule(severity="critical", text="fill timeout: supply empty?")
        ),
        "valve_stuck_open": ValueAlarms(
            discrete=DiscreteRule(severity="critical", text="fill valve stuck open")
        ),
        "lid_open": ValueAlarms(
            discrete=DiscreteRule(severity="medium", on_delay_s=120, text="lid open too long")
        ),
    },
}


def rules_for(
    kind: str, configured: DeviceAlarms | None, defaults: dict[str, ValueAlarms] | None = None
) -> dict[str, ValueAlarms]:
    """A device's effective rules: its defaults (the kind's unless the device derives its own
    from its config), each value replaced where configured."""
    rules = dict(KIND_DEFAULTS.get(kind, {}) if defaults is None else defaults)
    if configured is not None:
        rules.update(configured.values)
    return rules
