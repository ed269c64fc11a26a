"""The sentinel's config: what it watches, and alarm ids that cannot collide across sites."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from controllerd.sentinel import Sentinel, SentinelConfig


def config(*controllers: str) -> dict[str, Any]:
    return {"sentinel": {"controllers": list(controllers)}}


def test_rooms_of_two_sites_with_one_id_get_their_own_alarms() -> None:
    cfg = SentinelConfig.model_validate(config("biobank/site-a/room-1", "biobank/site-b/room-1"))
    sentinel = Sentinel(config=cfg)
    ids = {w.offline.alarm for w in sentinel._watched.values()}
    ids |= {w.silent.alarm for w in sentinel._watched.values()}
    assert ids == {
        "site-a.room-1.offline",
        "site-a.room-1.silent",
        "site-b.room-1.offline",
        "site-b.room-1.silent",
    }


@pytest.mark.parametrize(
    ("controllers", "problem"),
    [
        (("biobank/site-a/room-1", "biobank/site-a/room-1"), "each site/controller once"),
        (("biobank/site-a/room-1", "lab/site-a/room-1"), "each site/controller once"),
        (("biobank/site-a",), "not a controller BASE"),
        (("biobank//room-1",), "not a controller BASE"),
        (("biobank/+/room-1",), "not a controller BASE"),
    ],
)
def test_watched_controllers_are_checked(controllers: tuple[str, ...], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        SentinelConfig.model_validate(config(*controllers))
