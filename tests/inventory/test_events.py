"""The movement event model and its hash, byte for byte as docs/inventory.md states it."""

from __future__ import annotations

import hashlib
import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from inventory.events import GENESIS_PREV_HASH, MovementEvent, canonical_json, event_hash
from tests.inventory._chain import make_chain

FIELDS = {
    "event_id": "0b8e5c7e-3c2f-4c1e-9a57-1f0c2d3e4f50",
    "seq": 1,
    "ts": "2026-11-22T10:15:30.123Z",
    "barcode": "BB-Ä-0001",
    "from": None,
    "to": {"store": "store-1", "rack": "R07", "position": "A01"},
    "job": None,
    "operator": "alice",
    "exposure_s": 12.5,
    "prev_hash": GENESIS_PREV_HASH,
}


def test_the_documented_bytes_are_what_is_hashed() -> None:
    expected = (
        '{"barcode":"BB-Ä-0001","event_id":"0b8e5c7e-3c2f-4c1e-9a57-1f0c2d3e4f50",'
        '"exposure_s":12.5,"from":null,"job":null,"operator":"alice",'
        f'"prev_hash":"{GENESIS_PREV_HASH}","seq":1,'
        '"to":{"position":"A01","rack":"R07","store":"store-1"},'
        '"ts":"2026-11-22T10:15:30.123Z"}'
    ).encode()
    assert canonical_json(FIELDS) == expected
    assert event_hash(FIELDS) == hashlib.sha256(expected).hexdigest()


def test_seal_hashes_exactly_what_is_sent() -> None:
    event = MovementEvent.seal(**FIELDS)
    wire = json.loads(event.to_json())
    assert wire["hash"] == event.hash == event_hash(FIELDS)
    assert event_hash(wire) == event.hash  # `hash` itself is left out
    assert MovementEvent.model_validate(wire) == event
    assert event.to_json() == canonical_json(wire)


def test_chain_links() -> None:
    chain = make_chain("room-1", 5)
    assert chain[0].prev_hash == GENESIS_PREV_HASH
    for before, after in itertools.pairwise(chain):
        assert after.prev_hash == before.hash
        assert after.seq == before.seq + 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seq": 0}, "seq"),
        ({"ts": "2026-11-22 10:15:30"}, "ts"),
        ({"barcode": ""}, "barcode"),
        ({"prev_hash": "abc"}, "prev_hash"),
        ({"colour": "red"}, "colour"),
        ({"to": {"store": "s", "rack": "r"}}, "to.position"),
    ],
)
def test_bad_events_are_rejected_naming_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        MovementEvent.seal(**{**FIELDS, **change})
    assert field in str(info.value).replace("\n", ".")


@given(st.text(min_size=1, max_size=30), st.floats(min_value=0, max_value=1e6))
def test_any_edit_changes_the_hash(barcode: str, exposure: float) -> None:
    event = MovementEvent.seal(**{**FIELDS, "barcode": barcode, "exposure_s": exposure})
    wire = json.loads(event.to_json())
    assert event_hash(wire) == event.hash
    wire["operator"] = "mallory"
    assert event_hash(wire) != event.hash


def test_the_docs_example_hash() -> None:
    example = {**FIELDS, "barcode": "BB-0001"}
    assert event_hash(example) == (
        "8b64a3b3a8ce2c497717a34aa2150d166fb018760a88491fe8a65db13a20e241"
    )
