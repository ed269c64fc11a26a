"""The configuration of `inventoryd`: one TOML file, validated by pydantic models.

`load_config` reads and validates a file and reports every problem with its TOML path through
`ConfigError`, like `controllerd check-config` does for a room.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inventory._errors import ConfigError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(
            f"'{value}' is not a valid id (letters, digits, '_', '.', '-'; at most 64; "
            "it becomes an MQTT topic level)"
        )
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InventorySection(_Strict):
    """`[inventory]`: which site this ledger keeps."""

    site: str = Field(description="Site id: the second MQTT topic level of every controller.")

    _site = field_validator("site")(_check_id)


class MqttSection(_Strict):
    """`[mqtt]`: the broker connection (MQTT 5, persistent session)."""

    host: str = Field(default="127.0.0.1", min_length=1, description="Broker host.")
    port: int = Field(default=1883, ge=1, le=65535, description="Broker port.")
    prefix: str = Field(default="biobank", description="First MQTT topic level.")
    client_id: str | None = Field(
        default=None,
        description="MQTT client id: the persistent session's name (default inventoryd-{site}). "
        "Never share it: a second client with the same id takes the session over.",
    )
    session_expiry_s: int = Field(
        default=7 * 24 * 3600,
        ge=60,
        le=0xFFFFFFFF,
        description="How long the broker keeps the session (and queues movements) while the "
        "inventory is down: long enough for a maintenance window.",
    )
    username: str | None = Field(default=None, description="Broker user name.")
    password_file: Path | None = Field(
        default=None, description="File holding the broker password (never the password itself)."
    )
    ca_file: Path | None = Field(default=None, description="CA bundle: enables TLS.")
    cert_file: Path | None = Field(default=None, description="Client certificate (mutual TLS).")
    key_file: Path | None = Field(default=None, description="Client key (mutual TLS).")
    keepalive_s: int = Field(default=30, ge=5, le=3600, description="MQTT keep-alive.")
    reconnect_initial_s: float = Field(default=0.5, gt=0, description="First reconnect delay.")
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Cap of the reconnect delay.")

    _prefix = field_validator("prefix")(_check_id)

    @model_validator(mode="after")
    def _check_tls(self) -> MqttSection:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        if self.cert_file is not None and self.ca_file is None:
            raise ValueError("cert_file needs ca_file (TLS)")
        if self.password_file is not None and self.username is None:
            raise ValueError("password_file needs username")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be at least reconnect_initial_s")
        return self


class StoreSection(_Strict):
    """`[store]`: where the ledger lives."""

    url: str = Field(
        description="`sqlite:///ABSOLUTE/PATH` (one file, WAL; the embedded default) or "
        "`postgresql://user@host:port/db` (asyncpg; a site's shared server). A password "
        "belongs in ~/.pgpass or PGPASSWORD, not here."
    )
    schema_name: str = Field(
        default="inventory",
        alias="schema",
        description="PostgreSQL schema holding the tables (created if missing); unused by SQLite.",
    )
    batch_max: int = Field(
        default=200, ge=1, le=10_000, description="Most movements stored in one transaction."
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme == "sqlite":
            if not url.startswith("sqlite:///") or len(url) <= len("sqlite:///"):
                raise ValueError("a SQLite URL is sqlite:///PATH (three slashes, then the file)")
        elif scheme not in ("postgresql", "postgres"):
            raise ValueError(f"unknown store '{scheme}:' (use sqlite:/// or postgresql://)")
        return url

    @field_validator("schema_name")
    @classmethod
    def _check_schema(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError(f"'{value}' is not a plain SQL identifier (a-z, 0-9, _)")
        return value


class LoggingSection(_Strict):
    """`[logging]`: structlog output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = Field(
        default="auto", description="auto: JSON under systemd (journald), readable on a terminal."
    )


class InventoryConfig(_Strict):
    """The whole `inventoryd` config file."""

    inventory: InventorySection
    mqtt: MqttSection = Field(default_factory=MqttSection)
    store: StoreSection
    logging: LoggingSection = Field(default_factory=LoggingSection)

    @property
    def client_id(self) -> str:
        return self.mqtt.client_id or f"inventoryd-{self.inventory.site}"


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def parse_config(data: dict[str, Any], *, source: str = "<config>") -> InventoryConfig:
    """Validate an already parsed TOML document."""
    try:
        return InventoryConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"{_location(err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(source, problems) from exc


def load_config(path: Path | str) -> InventoryConfig:
    """Read and validate a config file (raises ConfigError naming every problem)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    return parse_config(data, source=str(path))
