"""Configuration of an OPC UA link as it appears in a device's `[devices.driver]` block."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from drivers.opcua_model._model import NAMESPACE_URI


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpcUaSecurity(_Strict):
    """Message security: Basic256Sha256 with this client's certificate (files, never inline)."""

    policy: Literal["Basic256Sha256"] = "Basic256Sha256"
    mode: Literal["Sign", "SignAndEncrypt"] = Field(
        default="SignAndEncrypt", description="Sign only, or sign and encrypt every message."
    )
    certificate: Path = Field(description="This client's certificate (PEM or DER).")
    private_key: Path = Field(description="This client's private key (PEM).")
    server_certificate: Path | None = Field(
        default=None,
        description="The server's certificate, pinned; when unset it is taken from the "
        "server's endpoint list at each connect.",
    )


class OpcUaConfig(_Strict):
    """An OPC UA server speaking the tube store model (docs/store-opcua.md)."""

    type: Literal["opcua"]
    url: str = Field(description="Endpoint URL, `opc.tcp://host:port[/path]`.")
    namespace_uri: str = Field(
        default=NAMESPACE_URI, min_length=1, description="Namespace URI of the store model."
    )
    timeout_s: float = Field(
        default=5.0, gt=0, le=120, description="Each request's own timeout, in seconds."
    )
    operation_timeout_s: float = Field(
        default=600.0,
        gt=0,
        le=7200,
        description="How long a robot operation (retrieve, store, scan) may take to finish.",
    )
    publishing_interval_ms: float = Field(
        default=250.0, ge=10, le=60_000, description="Subscription publishing interval."
    )
    reconnect_initial_s: float = Field(
        default=0.5, gt=0, description="First reconnect delay; doubles per failure."
    )
    reconnect_max_s: float = Field(default=30.0, gt=0, description="Cap of the reconnect delay.")
    security: OpcUaSecurity | None = Field(
        default=None, description="Message security; none (plain opc.tcp) when unset."
    )
    username: str | None = Field(default=None, min_length=1, description="User name, if any.")
    password_file: Path | None = Field(
        default=None, description="File holding the user's password (never the password itself)."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme != "opc.tcp" or not parsed.hostname:
            raise ValueError(f"'{value}' is not an opc.tcp://host:port URL")
        try:
            parsed.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError as exc:
            raise ValueError(f"'{value}': {exc}") from None
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> OpcUaConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must not be below reconnect_initial_s")
        if (self.username is None) != (self.password_file is None):
            raise ValueError("username and password_file go together")
        return self

    @property
    def host(self) -> str:
        return urlparse(self.url).hostname or ""

    @property
    def port(self) -> int:
        """The TCP port (4840, OPC UA's registered port, when the URL names none)."""
        return urlparse(self.url).port or 4840
