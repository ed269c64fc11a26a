"""`controllerd sentinel -c FILE`: pages when a controller (or the broker) goes silent.

The alarm path must not depend on the thing it watches: the sentinel runs as its own small
process, ideally on another machine, with its own unit file and notifiers. It watches each
controller's retained `BASE/status` and its `BASE/heartbeat`, and raises, through the same
call tree as the daemon:

- `{site}.{controller}.offline`: the controller said `offline`, or its last will did (crash,
  kill -9);
- `{site}.{controller}.silent`: no heartbeat for `heartbeat_timeout_s` (a hung daemon, a dead
  host); not while the controller is known to be offline (one outage, one page);
- `sentinel.broker`: the broker has been unreachable for `broker_timeout_s` (pages go out
  through the channels that do not need the broker).

Alarm ids carry the site: rooms of different sites may share a controller id. With
`[sentinel].state_dir` the alarms' states and the pages sent are kept in SQLite there (the
daemon's `StateDb`), so a restarted sentinel neither pages an outage it has paged already nor
forgets to tell those it paged when the outage ends.

```toml
[mqtt]
host = "broker.example.org"
[sentinel]
id = "sentinel-1"
controllers = ["biobank/site-a/room-1", "biobank/site-a/room-2"]
heartbeat_timeout_s = 60
[[notifiers]]
id = "oncall"
type = "apprise"
url = "ntfys://ntfy.example.org/biobank-oncall"
[escalation]
levels = [{ notifiers = ["oncall"] }]
```
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import structlog
from pydantic import Field, ValidationError, field_validator, model_validator

from controllerd._strict import Strict
from controllerd._time import utc_now
from controllerd.alarms import AlarmState, Event
from controllerd.alarms.engine import AlarmNotice
from controllerd.config import ConfigError, LoggingSection, MqttSection, _format_errors
from controllerd.notify import EscalationSection, NotifierConfig, check_notifier_refs
from controllerd.notify.channels import Channel, build_channel
from controllerd.notify.pager import Pager
from controllerd.statedb import StateDb
from drivers import Backoff
from drivers.mqtt_session import mqtt_session

_log = structlog.get_logger("controllerd.sentinel")


class SentinelSection(Strict):
    """`[sentinel]`: what to watch."""

    id: str = Field(default="sentinel", description="MQTT client id suffix and page source.")
    controllers: tuple[str, ...] = Field(
        min_length=1, description="BASE of each watched controller: `{prefix}/{site}/{id}`."
    )
    heartbeat_timeout_s: float = Field(default=60.0, gt=0, description="Silence that pages.")
    broker_timeout_s: float = Field(default=60.0, gt=0, description="Broker outage that pages.")
    state_dir: Path | None = Field(
        default=None,
        description="Alarm states and pages kept across restarts (SQLite); none: in memory.",
    )

    @field_validator("controllers")
    @classmethod
    def _three_levels(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        seen: dict[str, str] = {}
        for base in value:
            if len(base.split("/")) != 3 or "+" in base or "#" in base or "" in base.split("/"):
                raise ValueError(f"'{base}' is not a controller BASE (prefix/site/controller)")
            name = controller_name(base)
            if name in seen:
                raise ValueError(
                    f"'{base}' and '{seen[name]}' are both {name}: each site/controller once"
                )
            seen[name] = base
        return value


def controller_name(base: str) -> str:
    """`biobank/site-a/room-1` -> `site-a.room-1`: the stem of a watched controller's alarm ids."""
    _prefix, site, controller = base.split("/")
    return f"{site}.{controller}"


class SentinelConfig(Strict):
    mqtt: MqttSection = MqttSection()
    logging: LoggingSection = LoggingSection()
    sentinel: SentinelSection
    notifiers: tuple[NotifierConfig, ...] = ()
    escalation: EscalationSection = Field(default_factory=EscalationSection)

    @model_validator(mode="after")
    def _refs(self) -> SentinelConfig:
        problems = check_notifier_refs(self.notifiers, self.escalation)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def load_sentinel_config(path: Path) -> SentinelConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        return SentinelConfig.model_validate(data)
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    except ValidationError as exc:
        raise ConfigError(str(path), _format_errors(exc)) from exc


#: One stored change of an alarm: (alarm, device, facts, payload, history rows).
_Save = tuple[str, str, dict[str, Any], bytes, list[tuple[str, int, str, float | None, str]]]
#: The AlarmState fields a restart restores.
_FACTS = ("condition", "active", "acked", "announced", "occurrence")


@dataclass
class _Watched:
    base: str
    offline: AlarmState
    silent: AlarmState
    last_heartbeat: float
    status: str = "unknown"


class Sentinel:
    """Watches controllers until cancelled: `await Sentinel(config=...).run()`."""

    def __init__(self, *, config: SentinelConfig, retry_initial_s: float = 1.0) -> None:
        self._config = config
        self._cfg = config.sentinel
        now = time.monotonic()
        self._watched = {
            base: _Watched(
                base=base,
                offline=AlarmState(alarm=f"{controller_name(base)}.offline"),
                silent=AlarmState(alarm=f"{controller_name(base)}.silent"),
                last_heartbeat=now,
            )
            for base in self._cfg.controllers
        }
        self._broker = AlarmState(alarm="sentinel.broker")
        self._alarms: dict[str, tuple[AlarmState, str]] = {
            "sentinel.broker": (self._broker, "sentinel")
        }
        for watched in self._watched.values():
            for state in (watched.offline, watched.silent):
                self._alarms[state.alarm] = (state, watched.base)
        #: the last page payload per alarm (what a restart resumes the pager with)
        self._payloads: dict[str, dict[str, Any]] = {}
        self._db = (
            StateDb(path=self._cfg.state_dir / "sentinel.sqlite3")
            if self._cfg.state_dir is not None
            else None
        )
        self._saves: asyncio.Queue[_Save] = asyncio.Queue()
        self._broker_down_since: float | None = now
        self._client: aiomqtt.Client | None = None
        channels: dict[str, Channel] = {}
        for notifier in config.notifiers:
            channels[notifier.id] = build_channel(
                notifier, mqtt=self, pages_topic=f"{self._cfg.controllers[0]}/pages"
            )
        self.pager = Pager(
            channels=channels,
            escalation=config.escalation,
            db=self._db,
            context={"sentinel": self._cfg.id},
            retry_initial_s=retry_initial_s,
        )

    async def publish(
        self, topic: str, payload: bytes, *, qos: int = 0, retain: bool = False
    ) -> bool:
        """The MQTT pager channel's way out (fails while the broker is unreachable)."""
        client = self._client
        if client is None:
            return False
        try:
            await client.publish(topic, payload, qos=qos, retain=retain)
        except aiomqtt.MqttError:
            return False
        return True

    async def run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            if self._db is not None:
                await stack.enter_async_context(self._db)
                await self._restore(self._db)
            await stack.enter_async_context(self.pager)
            await self.pager.resume(self._open_occurrences())
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._session(), name="sentinel-session")
                tasks.create_task(self._clock(), name="sentinel-clock")
                if self._db is not None:
                    tasks.create_task(self._store(self._db), name="sentinel-store")

    async def _restore(self, db: StateDb) -> None:
        """The alarms as the last run left them; rows of controllers no longer watched go."""
        stored = await db.run(db.load_alarms)
        gone = [alarm for alarm in stored if alarm not in self._alarms]

        def forget() -> None:
            for alarm in gone:
                db.delete_alarm(alarm)

        if gone:
            await db.run(forget)
        for alarm, facts in stored.items():
            known = self._alarms.get(alarm)
            if known is None:
                continue
            state, _device = known
            for key in _FACTS:
                if key in facts:
                    setattr(state, key, facts[key])
            if isinstance(facts.get("payload"), dict):
                self._payloads[alarm] = facts["payload"]
            if state.active:
                _log.info("alarm still active from before the restart", alarm=alarm)

    def _open_occurrences(self) -> list[AlarmNotice]:
        """Active alarms restored from the last run, for the pager: it pages those never
        paged and keeps the others to tell them when the outage ends."""
        return [
            AlarmNotice(
                event=Event.RAISED,
                alarm=alarm,
                occurrence=state.occurrence,
                severity="critical",
                payload=self._payloads.get(alarm)
                or self._payload(Event.RAISED, state, f"{alarm} (before a restart)", device),
                actor="sentinel",
            )
            for alarm, (state, device) in self._alarms.items()
            if state.active and state.announced
        ]

    async def _store(self, db: StateDb) -> None:
        """Write alarm changes in order; what is queued when stopping is still written."""
        try:
            while True:
                save = await self._saves.get()
                await self._write(db, save)
        finally:
            while not self._saves.empty():
                await self._write(db, self._saves.get_nowait())

    @staticmethod
    async def _write(db: StateDb, save: _Save) -> None:
        alarm, device, facts, payload, rows = save
        try:
            await db.run(
                lambda: db.save_alarm(
                    alarm=alarm, device=device, state=facts, payload=payload, events=rows
                )
            )
        except (OSError, sqlite3.Error) as exc:
            # Paging goes on without the disk; a restart may then page this outage again.
            _log.error("cannot store alarm state", alarm=alarm, error=str(exc))

    async def _session(self) -> None:
        cfg = self._config.mqtt
        backoff = Backoff(initial_s=cfg.reconnect_initial_s, max_s=cfg.reconnect_max_s)
        password = (
            cfg.password_file.read_text(encoding="utf-8").strip() if cfg.password_file else None
        )
        while True:
            try:
                client = aiomqtt.Client(
                    cfg.host,
                    port=cfg.port,
                    identifier=f"controllerd-sentinel-{self._cfg.id}",
                    protocol=aiomqtt.ProtocolVersion.V5,
                    username=cfg.username,
                    password=password,
                    keepalive=cfg.keepalive_s,
                    timeout=10,
                )
                async with mqtt_session(client):
                    self._client = client
                    for base in self._watched:
                        await client.subscribe(f"{base}/status", qos=1)
                        await client.subscribe(f"{base}/heartbeat", qos=0)
                    self._broker_down_since = None
                    now = time.monotonic()
                    for watched in self._watched.values():
                        watched.last_heartbeat = max(watched.last_heartbeat, now)
                    self._update(self._broker, False, "broker reachable again", None)
                    _log.info("broker connected", host=cfg.host, port=cfg.port)
                    backoff.reset()
                    async for message in client.messages:
                        self._on_message(message)
            except aiomqtt.MqttError as exc:
                if self._broker_down_since is None:
                    self._broker_down_since = time.monotonic()
                    _log.warning("broker unreachable", reason=str(exc))
            finally:
                self._client = None
            await asyncio.sleep(backoff.next_delay())

    def _on_message(self, message: aiomqtt.Message) -> None:
        topic = message.topic.value
        base, _, leaf = topic.rpartition("/")
        watched = self._watched.get(base)
        if watched is None:
            return
        try:
            body = json.loads(bytes(message.payload)) if message.payload else {}
        except ValueError:
            _log.warning("unreadable message", topic=topic)
            return
        now = time.monotonic()
        if leaf == "heartbeat":
            watched.last_heartbeat = now
            self._update(watched.silent, False, f"{base} heartbeats again", body, base)
        elif leaf == "status":
            state = str(body.get("state", "unknown"))
            if state != watched.status:
                _log.info("controller status", controller=base, state=state)
            watched.status = state
            watched.last_heartbeat = max(watched.last_heartbeat, now)
            self._update(watched.offline, state == "offline", f"{base} is {state}", body, base)

    async def _clock(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._cfg.heartbeat_timeout_s / 10))
            now = time.monotonic()
            broker_down = self._broker_down_since
            if broker_down is not None and now - broker_down >= self._cfg.broker_timeout_s:
                self._update(
                    self._broker,
                    True,
                    f"broker {self._config.mqtt.host}:{self._config.mqtt.port} unreachable "
                    f"for {now - broker_down:.0f} s",
                    None,
                )
            if broker_down is not None:
                continue  # silence is the broker's fault, not the controllers'
            for watched in self._watched.values():
                if watched.status == "offline":
                    continue  # known to be down: its offline alarm has paged
                silent_for = now - watched.last_heartbeat
                if silent_for >= self._cfg.heartbeat_timeout_s:
                    self._update(
                        watched.silent,
                        True,
                        f"{watched.base} silent for {silent_for:.0f} s (no heartbeat; "
                        f"timeout {self._cfg.heartbeat_timeout_s:g} s)",
                        None,
                        watched.base,
                    )

    def _update(
        self,
        alarm: AlarmState,
        active: bool,
        message: str,
        body: dict[str, Any] | None,
        device: str = "sentinel",
    ) -> None:
        """Follow one alarm's condition; `device` is the watched controller's BASE."""
        events = alarm.set_condition(active)
        if active and Event.RAISED in events:
            alarm.ack()  # nobody acknowledges at the sentinel: it pages, then waits for RTN
            _log.error("paging", alarm=alarm.alarm, message=message)
            self._submit(Event.RAISED, alarm, message, device)
        elif not active and alarm.occurrence and Event.CLEARED in events:
            _log.info("recovered", alarm=alarm.alarm, message=message)
            self._submit(Event.CLEARED, alarm, message, device)
        elif events:
            self._save(alarm, device, [str(e) for e in events])

    def _save(self, alarm: AlarmState, device: str, events: list[str]) -> None:
        if self._db is None:
            return
        facts: dict[str, Any] = {key: getattr(alarm, key) for key in _FACTS}
        payload = self._payloads.get(alarm.alarm, {})
        facts["payload"] = payload
        rows: list[tuple[str, int, str, float | None, str]] = [
            (event, alarm.occurrence, alarm.state, None, "sentinel") for event in events
        ]
        self._saves.put_nowait((alarm.alarm, device, facts, json.dumps(payload).encode(), rows))

    def _submit(self, event: Event, alarm: AlarmState, message: str, device: str) -> None:
        payload = self._payload(event, alarm, message, device)
        self._payloads[alarm.alarm] = payload
        self._save(alarm, device, [str(event)])
        self.pager.submit(
            AlarmNotice(
                event=event,
                alarm=alarm.alarm,
                occurrence=alarm.occurrence,
                severity="critical",
                payload=payload,
                actor="sentinel",
            )
        )

    @staticmethod
    def _payload(event: Event, alarm: AlarmState, message: str, device: str) -> dict[str, Any]:
        return {
            "alarm": alarm.alarm,
            "device": device,
            "state": "unacked" if event is Event.RAISED else "normal",
            "severity": "critical",
            "active": event is Event.RAISED,
            "acked": False,
            "value": None,
            "limit": None,
            "message": message,
            "since": utc_now(),
            "occurrence": alarm.occurrence,
        }
