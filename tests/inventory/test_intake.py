"""Intake: every message gets exactly one outcome; nothing past a gap or bad event is stored."""

from __future__ import annotations

import json

from inventory._intake import Intake
from inventory._store import Head
from inventory.events import MovementEvent
from tests.inventory._chain import make_chain


def _intake() -> Intake:
    return Intake(heads={}, open_entries=[])


def _tampered(event: MovementEvent, **change: object) -> bytes:
    wire = json.loads(event.to_json())
    wire.update(change)
    return json.dumps(wire).encode()


def test_in_order_events_are_stored_and_duplicates_ignored() -> None:
    intake = _intake()
    chain = make_chain("c1", 3)
    batch = intake.begin()
    outcomes = [intake.offer("c1", e.to_json(), known={})[0] for e in chain]
    assert outcomes == ["stored"] * 3
    assert [e.seq for e in batch.events] == [1, 2, 3]
    assert intake.heads["c1"] == Head(seq=3, hash=chain[2].hash)
    batch = intake.begin()
    outcome, _ = intake.offer(
        "c1", chain[1].to_json(), known={str(chain[1].event_id): chain[1].hash}
    )
    assert outcome == "duplicate"
    assert not batch


def test_bad_messages_are_quarantined_with_their_reason() -> None:
    intake = _intake()
    chain = make_chain("c1", 2)
    batch = intake.begin()
    assert intake.offer("c1", b"{not json", known={})[0] == "quarantined"
    assert intake.offer("c1", b'{"seq": 1}', known={})[0] == "quarantined"
    outcome, reason = intake.offer("c1", _tampered(chain[0], operator="mallory"), known={})
    assert (outcome, reason.split(":")[0]) == ("quarantined", "hash mismatch")
    kinds = [(entry.kind, entry.reason.split(":")[0]) for entry in batch.quarantined]
    assert kinds == [
        ("malformed", "not UTF-8 JSON"),
        ("invalid", "schema"),
        ("hash", "hash mismatch"),
    ]
    assert not batch.events
    assert intake.open_count == 3
    # The same bad bytes again (a republish) make no second entry.
    intake.offer("c1", b"{not json", known={})
    assert len(batch.quarantined) == 3


def test_a_broken_link_is_quarantined() -> None:
    intake = _intake()
    chain = make_chain("c1", 2)
    other = make_chain("c2", 2)
    batch = intake.begin()
    intake.offer("c1", chain[0].to_json(), known={})
    outcome, reason = intake.offer("c1", other[1].to_json(), known={})  # seq 2 of another chain
    assert outcome == "quarantined"
    assert "does not link" in reason
    assert batch.quarantined[0].kind == "link"
    assert intake.heads["c1"].seq == 1


def test_events_past_a_gap_are_held_then_released_when_it_closes() -> None:
    chain = make_chain("c1", 5)
    intake = _intake()
    batch = intake.begin()
    intake.offer("c1", chain[0].to_json(), known={})
    assert intake.offer("c1", chain[2].to_json(), known={})[0] == "held"
    assert intake.offer("c1", chain[3].to_json(), known={})[0] == "held"
    assert intake.heads["c1"].seq == 1  # nothing past the gap is stored (nor acknowledged)
    held = list(batch.quarantined)
    assert [e.reason for e in held] == [
        "out of sequence: expected seq 2, got 3",
        "out of sequence: expected seq 2, got 4",
    ]
    intake.committed(batch, [11, 12])
    batch = intake.begin()
    assert intake.offer("c1", chain[1].to_json(), known={})[0] == "stored"
    assert [e.seq for e in batch.events] == [2, 3, 4]
    assert batch.released == [11, 12]
    assert intake.open_count == 0
    assert intake.heads["c1"] == Head(seq=4, hash=chain[3].hash)


def test_held_entries_survive_a_restart() -> None:
    chain = make_chain("c1", 3)
    first = _intake()
    batch = first.begin()
    first.offer("c1", chain[0].to_json(), known={})
    first.offer("c1", chain[2].to_json(), known={})
    first.committed(batch, [7])
    entry = batch.quarantined[0]
    restarted = Intake(heads=first.heads, open_entries=[entry])
    assert restarted.open_count == 1
    batch = restarted.begin()
    restarted.offer("c1", chain[1].to_json(), known={})
    assert [e.seq for e in batch.events] == [2, 3]
    assert batch.released == [7]


def test_a_reused_seq_or_event_id_is_a_conflict() -> None:
    chain = make_chain("c1", 2)
    rival = make_chain("c1-rival", 2)
    intake = _intake()
    batch = intake.begin()
    intake.offer("c1", chain[0].to_json(), known={})
    intake.offer("c1", chain[1].to_json(), known={})
    outcome, reason = intake.offer("c1", rival[0].to_json(), known={})
    assert outcome == "quarantined"
    assert reason.startswith("seq 1 is already taken")
    changed = MovementEvent.seal(
        **{**chain[0].model_dump(by_alias=True, exclude={"hash"}), "operator": "bob"}
    )
    outcome, reason = intake.offer(
        "c1", changed.to_json(), known={str(chain[0].event_id): chain[0].hash}
    )
    assert outcome == "quarantined"
    assert "different content" in reason
    assert [e.kind for e in batch.quarantined] == ["sequence", "conflict"]
