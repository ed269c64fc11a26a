"""The specimen movement event of the MQTT contract, and its hash chain.

This module is the one definition both sides share: the controller builds and seals its events
with it, the inventory validates and re-hashes them with it. It is pure (pydantic, hashlib,
json) so that anything may import it.

The hash, byte for byte (see docs/inventory.md):

1. take the event as a JSON object and drop its `hash` member;
2. serialise it as canonical JSON: keys sorted (by code point), no whitespace (separators `,`
   and `:`), non-ASCII characters written as themselves (no `\\u` escapes), UTF-8; numbers as
   Python's `json` module writes them (integers in decimal, floats as the shortest
   round-tripping decimal such as `12.5` or `3.0`);
3. `hash` is the lowercase hex SHA-256 of those bytes.

`prev_hash` is the previous event's `hash` of the same controller; the first event (`seq` 1)
carries `GENESIS_PREV_HASH`, 64 zeros.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Annotated, Any, Self
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: `prev_hash` of every controller's first event (`seq` 1).
GENESIS_PREV_HASH = "0" * 64

#: RFC 3339 in UTC with milliseconds, as every timestamp of the MQTT contract.
TS_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"

HexHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Timestamp = Annotated[str, StringConstraints(pattern=TS_PATTERN)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Location(BaseModel):
    """Where a tube is: a store, a rack in it, a position in the rack."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    store: Name = Field(description="Store (or pick station) id.")
    rack: Name = Field(description="Rack id within the store.")
    position: Name = Field(description="Position within the rack, e.g. 'A01'.")


class MovementEvent(BaseModel):
    """One specimen movement, as published on `{prefix}/{site}/{controller}/events/movements`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    event_id: UUID = Field(description="Unique id; the inventory de-duplicates by it.")
    seq: int = Field(ge=1, description="Counts up per controller from 1, without gaps.")
    ts: Timestamp = Field(description="When the tube arrived at `to` (RFC 3339 UTC, ms).")
    barcode: Name = Field(description="The tube's barcode.")
    from_: Location | None = Field(
        alias="from", description="Where it was; null when it enters the site (intake)."
    )
    to: Location = Field(description="Where it is now.")
    job: str | None = Field(description="Pick job that moved it; null for a manual move.")
    operator: Name = Field(description="Who (or which job's owner) moved it.")
    exposure_s: float = Field(ge=0, description="Seconds the tube spent outside the cold.")
    prev_hash: HexHash = Field(description="`hash` of the previous event of this controller.")
    hash: HexHash = Field(description="SHA-256 (hex) of the canonical JSON without `hash`.")

    @classmethod
    def seal(cls, **fields: Any) -> Self:
        """Build an event from every field but `hash`, and compute its hash.

        `from` may be given as `from_`. The hash covers exactly what `to_json` sends.
        """
        draft = cls.model_validate({**fields, "hash": "0" * 64})
        body = draft.wire_dict()
        del body["hash"]
        return cls.model_validate({**body, "hash": event_hash(body)})

    def wire_dict(self) -> dict[str, Any]:
        """The event as its JSON object (field `from_` named `from`)."""
        return self.model_dump(mode="json", by_alias=True)

    def to_json(self) -> bytes:
        """The payload to publish: the canonical JSON of the whole event, `hash` included."""
        return canonical_json(self.wire_dict())


def canonical_json(obj: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8 without escapes: the bytes that get hashed."""
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def event_hash(event: Mapping[str, Any]) -> str:
    """The hash of an event given as its JSON object (a `hash` member, if any, is left out)."""
    body = {key: value for key, value in event.items() if key != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()
