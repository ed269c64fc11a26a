"""The inventory's MQTT topics (documented in docs/mqtt.md) and its payloads."""

from __future__ import annotations

import json
from typing import Any

from inventory._store import Head
from inventory._time import utc_now

#: The topic level the inventory publishes under; no controller may take this id.
INVENTORY_LEVEL = "inventory"


class InventoryTopics:
    """Every topic of one site's inventory."""

    def __init__(self, *, prefix: str, site: str) -> None:
        self.prefix = prefix
        self.site = site
        self.movements = f"{prefix}/{site}/+/events/movements"
        base = f"{prefix}/{site}/{INVENTORY_LEVEL}"
        self.status = f"{base}/status"
        self.alarm = f"{base}/alarms/quarantine"
        self.quarantine = f"{base}/quarantine"
        self.query = f"{base}/query"
        self._base = base

    def ack(self, controller: str) -> str:
        """Retained: the highest contiguous seq stored for a controller (its outbox may drop
        everything up to it)."""
        return f"{self._base}/acks/{controller}"

    def head(self, controller: str) -> str:
        """Retained: the hash of a controller's last stored event, for anchoring."""
        return f"{self._base}/heads/{controller}"

    def controller_of(self, topic: str) -> str | None:
        """The controller of a movements topic, None for any other topic."""
        parts = topic.split("/")
        if (
            len(parts) == 5
            and parts[0] == self.prefix
            and parts[1] == self.site
            and parts[3:] == ["events", "movements"]
            and parts[2] != INVENTORY_LEVEL
        ):
            return parts[2]
        return None


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def ack_payload(controller: str, head: Head) -> bytes:
    return _json({"controller": controller, "seq": head.seq, "ts": utc_now()})


def head_payload(controller: str, head: Head) -> bytes:
    return _json({"controller": controller, "seq": head.seq, "hash": head.hash, "ts": utc_now()})


def status_payload(state: str, version: str) -> bytes:
    return _json({"state": state, "ts": utc_now(), "version": version})


def alarm_payload(*, open_count: int, message: str, since: str) -> bytes:
    active = open_count > 0
    return _json(
        {
            "alarm": "quarantine",
            "device": INVENTORY_LEVEL,
            "state": "unacked" if active else "normal",
            "severity": "high",
            "active": active,
            "acked": False,
            "value": open_count,
            "limit": 0,
            "message": message,
            "since": since,
        }
    )


def quarantine_payload(
    *, entry_id: int, controller: str, kind: str, reason: str, seq: int | None, event_id: str | None
) -> bytes:
    return _json(
        {
            "id": entry_id,
            "controller": controller,
            "kind": kind,
            "reason": reason,
            "seq": seq,
            "event_id": event_id,
            "ts": utc_now(),
        }
    )
