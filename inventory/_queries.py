"""Request/response queries for dashboards: validated requests in, JSON answers out.

A request on `{prefix}/{site}/inventory/query` carries an MQTT 5 response topic (and usually
correlation data); the answer goes there. Requests, one of:

    {"query": "barcode", "barcode": "BB-000123"}             current location and full history
    {"query": "rack", "store": "store-1", "rack": "R07"}     the tubes now in a rack
    {"query": "since", "ts": "2026-11-22T10:00:00.000Z", "limit": 1000}   movements since a time

Answers are `{"ok": true, ...}` or `{"ok": false, "error": "what was wrong"}`.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from inventory._errors import QueryError
from inventory._store import LocationRow, Store, StoredEvent
from inventory.events import Name, Timestamp


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BarcodeQuery(_Request):
    query: Literal["barcode"]
    barcode: Name


class RackQuery(_Request):
    query: Literal["rack"]
    store: Name
    rack: Name


class SinceQuery(_Request):
    query: Literal["since"]
    ts: Timestamp
    limit: int = Field(default=1000, ge=1, le=10_000)


Query = Annotated[BarcodeQuery | RackQuery | SinceQuery, Field(discriminator="query")]
_QUERY: TypeAdapter[BarcodeQuery | RackQuery | SinceQuery] = TypeAdapter(Query)


def parse_query(payload: bytes) -> BarcodeQuery | RackQuery | SinceQuery:
    """A valid request, or QueryError saying what is wrong with it."""
    try:
        return _QUERY.validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(request)'}: {err['msg']}"
            for err in exc.errors()[:5]
        )
        raise QueryError(f"bad query: {problems}") from exc


def event_json(event: StoredEvent) -> dict[str, Any]:
    """A stored event as answers show it: the event itself plus its controller."""
    body: dict[str, Any] = json.loads(event.payload)
    body["controller"] = event.controller
    return body


def location_json(row: LocationRow) -> dict[str, Any]:
    return {
        "barcode": row.barcode,
        "store": row.store,
        "rack": row.rack,
        "position": row.position,
        "since": row.ts,
        "controller": row.controller,
        "seq": row.seq,
    }


async def answer(store: Store, payload: bytes) -> dict[str, Any]:
    """The answer to one request (never raises for a bad request: the answer says why)."""
    try:
        request = parse_query(payload)
    except QueryError as exc:
        return {"ok": False, "error": str(exc)}
    if isinstance(request, BarcodeQuery):
        location = await store.location(request.barcode)
        history = await store.history(request.barcode)
        return {
            "ok": True,
            "barcode": request.barcode,
            "location": None if location is None else location_json(location),
            "history": [event_json(e) for e in history],
        }
    if isinstance(request, RackQuery):
        rows = await store.rack(request.store, request.rack)
        return {
            "ok": True,
            "store": request.store,
            "rack": request.rack,
            "tubes": [location_json(r) for r in rows],
        }
    events = await store.events_since(request.ts, request.limit + 1)
    return {
        "ok": True,
        "since": request.ts,
        "events": [event_json(e) for e in events[: request.limit]],
        "more": len(events) > request.limit,
    }
