"""`telemetry_json` writes exactly what `json.dumps` of the telemetry body would."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from controllerd.topics import TelemetryPayload, telemetry_json

names = st.text(min_size=1, max_size=12)


@given(
    values=st.dictionaries(names, st.floats() | st.integers(-(2**40), 2**40), max_size=6),
    quality=st.sampled_from(["good", "uncertain", "bad"]),
    faults=st.dictionaries(names, st.text(max_size=20), max_size=2),
    stale=st.lists(names, max_size=2),
    error=st.none() | st.text(max_size=30),
    texts=st.dictionaries(names, st.text(max_size=20), max_size=2),
)
def test_same_bytes_as_json_dumps(
    values: dict[str, float],
    quality: Any,
    faults: dict[str, str],
    stale: list[str],
    error: str | None,
    texts: dict[str, str],
) -> None:
    ts = "2026-11-22T10:15:30.123Z"
    body: dict[str, Any] = {
        "ts": ts,
        "values": {name: float(value) for name, value in values.items()},
        "quality": quality,
    }
    if faults:
        body["faults"] = faults
    if stale:
        body["stale"] = stale
    if error is not None:
        body["error"] = error
    if texts:
        body["texts"] = texts
    expected = json.dumps(body, separators=(",", ":")).encode()
    got = telemetry_json(
        ts=ts, values=values, quality=quality, faults=faults, stale=stale, error=error, texts=texts
    )
    assert got == expected
    model = TelemetryPayload(
        ts=ts, values=values, quality=quality, faults=faults, stale=stale, error=error, texts=texts
    )
    assert model.to_json() == expected
