"""The room's configuration: one TOML file, validated by pydantic models.

`load_config` reads and validates a file; every problem is reported with its TOML path
(`devices[3].driver.port: …`) through `ConfigError`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, ValidationError, field_validator, model_validator

from controllerd._config_base import DeviceBase, Strict, check_id
from controllerd.alarms import KIND_DEFAULTS, ValueAlarms
from controllerd.notify._config import EscalationSection, NotifierConfig, check_notifier_refs
from controllerd.sim_config import (
    FreezerSimulation,
    Ln2Simulation,
    PickerSimulation,
    ProbeSimulation,
    SimulatorSection,
    StoreSimulation,
)
from drivers.ln2 import POLL_QUERIES, FillSettings, Ln2SerialConfig
from drivers.modbus import ModbusLinkConfig, ModbusRtuConfig, RegisterSpec, check_register_map
from drivers.opcua_model import OpcUaConfig
from firmware_bridge.protocol import FirmwareSerialConfig, MotionConfig


class ControllerSection(Strict):
    """`[controller]`: who this daemon is and where it keeps its state."""

    site: str = Field(description="Site id: the second MQTT topic level.")
    id: str = Field(description="Controller (room) id: the third MQTT topic level.")
    state_dir: Path = Field(description="Durable state (SQLite outbox, alarms, specimen map).")
    heartbeat_s: float = Field(
        default=10.0, gt=0, le=300, description="Period of BASE/heartbeat (the sentinel's sign)."
    )

    _site = field_validator("site", "id")(check_id)


class MqttSection(Strict):
    """`[mqtt]`: the broker connection (MQTT 5)."""

    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    prefix: str = Field(default="biobank", description="First MQTT topic level.")
    username: str | None = Field(default=None, description="Broker user name.")
    password_file: Path | None = Field(
        default=None, description="File holding the broker password (never the password itself)."
    )
    ca_file: Path | None = Field(default=None, description="CA bundle: enables TLS.")
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(default=None, description="Client key (mutual TLS).")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive.")
    connect_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="How long one connection attempt may take."
    )
    reconnect_initial_s: float = Field(default=0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Cap of the reconnect delay.")

    _prefix = field_validator("prefix")(check_id)

    @model_validator(mode="after")
    def _check_tls(self) -> MqttSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("cert_file needs ca_file (TLS)")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username")
        return self


Permission = Literal["ack", "shelve", "fill", "pick", "cancel"]


class OperatorConfig(Strict):
    """`[[operators]]`: who may command what (`BASE/cmd/...`, see docs/mqtt.md)."""

    id: str = Field(description="The `operator` field of a command.")
    name: str = Field(default="", description="Full name, for the audit log.")
    roles: tuple[Permission, ...] = Field(description="What this operator may do.")

    _id = field_validator("id")(check_id)


def _default_port_origins() -> dict[str, tuple[float, float]]:
    # The demo's pick station: ports side by side along x, 130 mm apart.
    names = ("P1", "P2", "P3", "P4", "OUT")
    return {name: (20.0 + 130.0 * i, 20.0) for i, name in enumerate(names)}


class StoreGeometry(Strict):
    """`[jobs.store_geometry]`: the store's robot as the planner models it (docs/planner.md).

    Defaults are the demo store's (simulators/store)."""

    towers: int = Field(default=4, ge=1, le=64, description="Towers around the carousel.")
    rotation_deg_s: float = Field(default=30.0, gt=0, description="Carousel speed.")
    rotation_deg_s2: float = Field(
        default=1e6,
        gt=0,
        allow_inf_nan=False,
        description="Carousel acceleration (the demo store turns at constant speed: 1e6).",
    )
    shelf_pitch_mm: float = Field(default=75.0, gt=0, description="Height between shelves.")
    lift_mm_s: float = Field(default=150.0, gt=0, description="Lift speed.")
    lift_mm_s2: float = Field(
        default=1e6,
        gt=0,
        allow_inf_nan=False,
        description="Lift acceleration (the demo store's lift runs at constant speed: 1e6).",
    )
    port_level_mm: float = Field(
        default=0.0,
        allow_inf_nan=False,
        description="Height of the port, where racks leave and enter the store, above shelf 1.",
    )
    handling_s: float = Field(default=6.0, ge=0, description="Grip, transfer, release a rack.")
    transfer_s: float = Field(
        default=0.0,
        ge=0,
        allow_inf_nan=False,
        description="Carrying a rack between the port and its station slot, each way (the demo "
        "store counts it in handling_s).",
    )


class JobsSection(Strict):
    """`[jobs]`: pick jobs on the room's tube store and picker (docs/jobs.md)."""

    planner: Literal["worker", "simple"] = Field(
        default="worker",
        description="worker: the planner's rack batches (in its worker process); simple: each "
        "rack once, K at a time, fullest first (also the fallback when the planner fails).",
    )
    planner_budget_ms: float = Field(default=500.0, gt=0, le=60_000, description="Search time.")
    store_geometry: StoreGeometry = Field(default_factory=StoreGeometry)

    store: str | None = Field(default=None, description="Tube store id (default: the only one).")
    picker: str | None = Field(default=None, description="Picker id (default: the only one).")
    rack_ports: tuple[str, ...] = Field(
        default=("P1", "P2", "P3", "P4"),
        min_length=1,
        description="Pick-station ports racks are fetched into (K = how many racks at once).",
    )
    output_port: str = Field(default="OUT", description="Port holding the output rack.")
    port_origins_mm: dict[str, tuple[float, float]] = Field(
        default_factory=_default_port_origins,
        description="Gantry (x, y) in mm of position A1 of each port's rack.",
    )
    pitch_mm: float = Field(default=9.0, gt=0, description="Rack position pitch (SBS: 9 mm).")
    exposure_limit_s: float = Field(
        default=900.0, gt=0, description="E: most seconds a rack may spend out of the cold."
    )
    exposure_margin_s: float = Field(
        default=60.0,
        ge=0,
        description="Reserve kept on top of the estimated time to finish a tube and return the "
        "racks (racks also go back while the store's pick-chamber alarm is active).",
    )
    max_tubes: int = Field(default=96, ge=1, le=960, description="Most tubes in one job.")
    window: int = Field(
        default=200, ge=1, le=900, description="Movements in flight past the inventory's ack."
    )
    republish_s: float = Field(
        default=10.0, gt=0, description="Republish unacknowledged movements after this."
    )

    @model_validator(mode="after")
    def _check_ports(self) -> JobsSection:
        ports = (*self.rack_ports, self.output_port)
        missing = [port for port in ports if port not in self.port_origins_mm]
        if missing:
            raise ValueError(f"port_origins_mm: no origin for port(s) {', '.join(missing)}")
        if self.output_port in self.rack_ports or len(set(self.rack_ports)) != len(self.rack_ports):
            raise ValueError("rack_ports: each once, and not the output port")
        return self


class LoggingSection(Strict):
    """`[logging]`: structlog output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: JSON under systemd (journald), readable on a terminal."
    )


class _ModbusDevice(DeviceBase):
    driver: ModbusLinkConfig = Field(description="How to reach the device.")
    registers: tuple[RegisterSpec, ...] = Field(min_length=1, description="Register map.")

    #: Value names the kind cannot do without.
    required_values: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _check_registers(self) -> _ModbusDevice:
        problems = check_register_map(self.registers)
        names = {reg.name for reg in self.registers}
        problems += [
            f"registers: '{name}' is required for a {self.kind_name()}"
            for name in self.required_values
            if name not in names
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def kind_name(self) -> str:
        return str(getattr(self, "kind", "device"))

    def stale_limits(self) -> dict[str, float]:
        return {r.name: r.stale_after_s for r in self.registers if r.stale_after_s is not None}

    def read_budget_s(self) -> float:
        return self.driver.timeout_s * (self.driver.retries + 1)

    def describe(self) -> str:
        link = self.driver
        where = (
            f"modbus_rtu {link.port} {link.baudrate} {link.parity}{link.bytesize}{link.stopbits}"
            if isinstance(link, ModbusRtuConfig)
            else f"modbus_tcp {link.host}:{link.port}"
        )
        values = ", ".join(reg.name for reg in self.registers)
        return f"{self.kind_name()} on {where} unit {link.unit_id}, values {values}"


class UltFreezerConfig(_ModbusDevice):
    """A -80 °C ULT freezer on Modbus: cabinet temperature, setpoint, door, compressor, alarms."""

    kind: Literal["ult_freezer"]
    required_values: ClassVar[tuple[str, ...]] = ("temperature_c",)
    simulation: FreezerSimulation | None = Field(
        default=None, description="Present when `simulators run` serves this device."
    )


class ProbeConfig(_ModbusDevice):
    """A temperature probe on Modbus (one temperature)."""

    kind: Literal["probe"]
    required_values: ClassVar[tuple[str, ...]] = ("temperature_c",)
    simulation: ProbeSimulation | None = Field(
        default=None, description="Present when `simulators run` serves this device."
    )


class Ln2TankConfig(DeviceBase):
    """An LN2 tank's controller on a serial line (ASCII protocol, docs/ln2-protocol.md)."""

    kind: Literal["ln2_tank"]
    driver: Ln2SerialConfig = Field(description="The controller's line and address.")
    fill: FillSettings = Field(default=FillSettings(), description="Fill levels and fill watch.")
    low_level_pct: float = Field(default=30.0, ge=0, le=100, description="Low-level alarm.")
    high_level_pct: float = Field(default=90.0, ge=0, le=100, description="High-level alarm.")
    boil_off_window_h: float = Field(
        default=6.0,
        gt=0,
        le=168,
        description="Boil-off is measured over this many hours outside fills (hours_to_low).",
    )
    simulation: Ln2Simulation | None = Field(
        default=None, description="Present when `simulators run` serves this device."
    )

    @model_validator(mode="after")
    def _check_levels(self) -> Ln2TankConfig:
        if self.high_level_pct <= self.low_level_pct:
            raise ValueError(
                f"high_level_pct ({self.high_level_pct}) must be above "
                f"low_level_pct ({self.low_level_pct})"
            )
        return self

    def read_budget_s(self) -> float:
        # One poll's queries, and a fill stop the daemon may send with it.
        return (len(POLL_QUERIES) + 1) * self.driver.exchange_budget_s

    def default_alarms(self) -> dict[str, ValueAlarms]:
        """The kind's alarm defaults with this tank's own low and high levels."""
        rules = dict(KIND_DEFAULTS["ln2_tank"])
        level = rules["ln2_level_pct"]
        assert level.low is not None and level.high is not None
        rules["ln2_level_pct"] = level.model_copy(
            update={
                "low": level.low.model_copy(update={"limit": self.low_level_pct}),
                "high": level.high.model_copy(update={"limit": self.high_level_pct}),
            }
        )
        return rules

    def describe(self) -> str:
        link, fill = self.driver, self.fill
        return (
            f"ln2_tank on {link.port} address {link.address}, fill {fill.start_pct:g}-"
            f"{fill.stop_pct:g} %, alarms below {self.low_level_pct:g} % / above "
            f"{self.high_level_pct:g} %"
        )


class TubeStoreConfig(DeviceBase):
    """A robotic -80 °C tube store over OPC UA (docs/store-opcua.md).

    Its towers, shelves and racks are the store's business: the daemon learns them from the
    store's inventory. Telemetry: chamber_temperature_c, pick_chamber_temperature_c,
    state_code (0 Idle, 1 Busy, 2 Faulted, 3 Maintenance), door_open (0/1), fault_code.
    """

    kind: Literal["tube_store"]
    driver: OpcUaConfig = Field(description="The store's OPC UA server.")
    simulation: StoreSimulation | None = Field(
        default=None, description="Present when `simulators run` serves this device."
    )

    def read_budget_s(self) -> float:
        # Reads return the latest subscribed values; a connect takes up to three timeouts.
        return self.driver.timeout_s * 3

    def describe(self) -> str:
        link = self.driver
        security = (
            f"Basic256Sha256 {link.security.mode}" if link.security is not None else "no security"
        )
        return (
            f"tube_store on opcua {link.url} ({security}), values chamber_temperature_c, "
            "pick_chamber_temperature_c, state_code, door_open, fault_code"
        )


class TubePickerConfig(DeviceBase):
    """The tube picker's motion controller: an XY gantry with Z, a gripper and a barcode reader
    on a framed serial link (docs/firmware-protocol.md)."""

    kind: Literal["tube_picker"]
    driver: FirmwareSerialConfig = Field(description="The controller's serial link.")
    motion: MotionConfig | None = Field(
        default=None,
        description="Speeds, accelerations and pick/place/scan times, sent to the controller "
        "after every connect; the firmware's own settings when unset.",
    )
    simulation: PickerSimulation | None = Field(
        default=None, description="Present when `simulators run` serves this device."
    )

    def read_budget_s(self) -> float:
        # A read reports the latest heartbeat; only a reconnect (hello, set_motion) waits.
        return self.driver.timeout_s * (self.driver.retries + 1) * 2 + 2.0

    def describe(self) -> str:
        link = self.driver
        return (
            f"tube_picker on firmware_serial {link.port} {link.baudrate}, values x_mm, y_mm, "
            "z_mm, holding, homed, moving, estop"
        )


#: Every device kind; a new kind adds its model here (and its driver in controllerd.supervisor).
DEVICE_KINDS: tuple[type[DeviceBase], ...] = (
    UltFreezerConfig,
    ProbeConfig,
    Ln2TankConfig,
    TubeStoreConfig,
    TubePickerConfig,
)

DeviceConfig = Annotated[
    UltFreezerConfig | ProbeConfig | Ln2TankConfig | TubeStoreConfig | TubePickerConfig,
    Field(discriminator="kind"),
]


class Config(Strict):
    """A whole room: one daemon's configuration."""

    controller: ControllerSection
    mqtt: MqttSection = MqttSection()
    logging: LoggingSection = LoggingSection()
    simulator: SimulatorSection | None = Field(
        default=None, description="Only for simulated rooms: read by `simulators run`."
    )
    devices: tuple[DeviceConfig, ...] = Field(default=(), description="The room's devices.")
    operators: tuple[OperatorConfig, ...] = Field(
        default=(), description="Who may command what; commands from others are refused."
    )
    notifiers: tuple[NotifierConfig, ...] = Field(
        default=(), description="How alarms reach people (docs/alarms.md)."
    )
    escalation: EscalationSection = Field(
        default_factory=EscalationSection, description="The call tree."
    )
    jobs: JobsSection = Field(default_factory=JobsSection, description="Pick jobs.")

    @model_validator(mode="after")
    def _check_devices(self) -> Config:
        problems = _cross_device_problems(self.devices)
        problems += check_notifier_refs(self.notifiers, self.escalation)
        seen: set[str] = set()
        for index, op in enumerate(self.operators):
            if op.id in seen:
                problems.append(f"operators[{index}].id: duplicate operator '{op.id}'")
            seen.add(op.id)
        kinds = {dev.id: dev.kind for dev in self.devices}
        for key, kind in (("store", "tube_store"), ("picker", "tube_picker")):
            wanted = getattr(self.jobs, key)
            if wanted is not None and kinds.get(wanted) != kind:
                problems.append(f"jobs.{key}: no {kind} '{wanted}'")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def device(self, device_id: str) -> DeviceConfig:
        """The device with this id (KeyError when there is none)."""
        for dev in self.devices:
            if dev.id == device_id:
                return dev
        raise KeyError(device_id)


def _cross_device_problems(devices: Sequence[DeviceConfig]) -> list[str]:
    problems: list[str] = []
    first_index: dict[str, int] = {}
    lines: dict[str, tuple[int, ModbusRtuConfig]] = {}
    units: dict[tuple[str, int], int] = {}
    for index, dev in enumerate(devices):
        if dev.id in first_index:
            problems.append(
                f"devices[{index}].id: duplicate id '{dev.id}' (also devices"
                f"[{first_index[dev.id]}])"
            )
        first_index.setdefault(dev.id, index)
        if not isinstance(dev, _ModbusDevice):
            continue
        link = dev.driver
        unit_key = (link.link_key, link.unit_id)
        if unit_key in units:
            problems.append(
                f"devices[{index}].driver.unit_id: unit {link.unit_id} on "
                f"{link.link_key} is also devices[{units[unit_key]}]"
            )
        units.setdefault(unit_key, index)
        if isinstance(link, ModbusRtuConfig):
            other = lines.setdefault(link.port, (index, link))
            if other[1].line_settings != link.line_settings:
                problems.append(
                    f"devices[{index}].driver: line settings on {link.port} differ "
                    f"from devices[{other[0]}] (baudrate, parity, stopbits, bytesize "
                    "must agree on one line)"
                )
    problems += _ln2_line_problems(devices, modbus_ports=set(lines))
    ids = set(first_index)
    for index, dev in enumerate(devices):
        sim = getattr(dev, "simulation", None)
        if isinstance(sim, ProbeSimulation) and sim.follows is not None:
            followed = next((d for d in devices if d.id == sim.follows), None)
            if sim.follows not in ids or not isinstance(followed, UltFreezerConfig):
                problems.append(
                    f"devices[{index}].simulation.follows: '{sim.follows}' is not a "
                    "ult_freezer in this file"
                )
    return problems


def _ln2_line_problems(devices: Sequence[DeviceConfig], *, modbus_ports: set[str]) -> list[str]:
    """LN2 controllers sharing a line: distinct addresses, one set of line settings, no Modbus."""
    problems: list[str] = []
    lines: dict[str, tuple[int, Ln2SerialConfig]] = {}
    addresses: dict[tuple[str, int], int] = {}
    for index, dev in enumerate(devices):
        if not isinstance(dev, Ln2TankConfig):
            continue
        link = dev.driver
        key = (link.link_key, link.address)
        if key in addresses:
            problems.append(
                f"devices[{index}].driver.address: address {link.address} on {link.port} "
                f"is also devices[{addresses[key]}]"
            )
        addresses.setdefault(key, index)
        other = lines.setdefault(link.link_key, (index, link))
        if other[1].line_settings != link.line_settings:
            problems.append(
                f"devices[{index}].driver: line settings on {link.port} differ from "
                f"devices[{other[0]}] (baudrate, parity, stopbits, bytesize, gap_s must agree "
                "on one line)"
            )
        if link.port in modbus_ports:
            problems.append(
                f"devices[{index}].driver.port: {link.port} is a Modbus RTU line; one line "
                "carries one protocol"
            )
    return problems


class ConfigError(Exception):
    """A config file that cannot be used; `problems` holds one 'path: message' line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


#: Discriminated-union branch names: pydantic puts them in error locations, TOML has no such level.
_UNION_TAGS = frozenset(
    {"ult_freezer", "probe", "modbus_tcp", "modbus_rtu", "apprise", "mqtt", "exec"}
    | {str(t) for m in DEVICE_KINDS for t in get_args(m.model_fields["kind"].annotation)}
)


def _toml_path(loc: Sequence[int | str]) -> str:
    path = ""
    for index, part in enumerate(loc):
        if isinstance(part, int):
            path += f"[{part}]"
        elif index > 0 and part in _UNION_TAGS:
            continue  # discriminated-union branch names are not part of the TOML path
        else:
            path += f".{part}" if path else str(part)
    return path


def _format_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        path = _toml_path(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if (
            err["type"] == "value_error"
            and ": " in message
            and message.split(": ")[0].startswith(
                ("devices[", "registers", "notifiers[", "escalation.", "operators[")
            )
        ):
            # Cross-field validators already name their own paths; keep them relative to `path`.
            for part in message.split("; "):
                problems.append(
                    f"{path}.{part}"
                    if path
                    and not part.startswith(("devices[", "notifiers[", "escalation.", "operators["))
                    else part
                )
            continue
        if err["type"] in ("union_tag_not_found", "union_tag_invalid"):
            ctx = err.get("ctx", {})
            key = ctx.get("discriminator", "kind").strip("'")
            path = f"{path}.{key}" if path else key
            message = (
                "required key is missing"
                if err["type"] == "union_tag_not_found"
                else f"'{ctx.get('tag')}' is not one of {ctx.get('expected_tags')}"
            )
        elif err["type"] == "extra_forbidden":
            message = "unknown key"
        elif err["type"] == "missing":
            message = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error",):
            message = f"{message} (got {err['input']!r})"
        problems.append(f"{path}: {message}" if path else message)
    return problems


def _raw_duplicate_ids(data: dict[str, Any]) -> list[str]:
    """Duplicate device ids, found in the raw data: pydantic skips the cross-device check when
    any field is invalid, and a user fixing one problem should not discover the next one later.
    """
    devices = data.get("devices")
    if not isinstance(devices, list):
        return []
    first: dict[str, int] = {}
    problems = []
    for index, dev in enumerate(devices):
        dev_id = dev.get("id") if isinstance(dev, dict) else None
        if not isinstance(dev_id, str):
            continue
        if dev_id in first:
            problems.append(
                f"devices[{index}].id: duplicate id '{dev_id}' (also devices[{first[dev_id]}])"
            )
        first.setdefault(dev_id, index)
    return problems


def parse_config(data: dict[str, Any], *, source: str = "<config>") -> Config:
    """Validate already-parsed TOML data (raises ConfigError)."""
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = _format_errors(exc)
        problems += [p for p in _raw_duplicate_ids(data) if p not in problems]
        raise ConfigError(source, problems) from exc


def load_config(path: Path | str) -> Config:
    """Read and validate a config file (raises ConfigError naming every problem)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    return parse_config(data, source=str(path))
