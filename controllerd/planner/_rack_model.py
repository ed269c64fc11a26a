"""The `rack_batches` problem form and its plan: which racks come out of the store together.

A job picks tubes out of source racks kept in the cold store. The pick station holds K racks at a
time (one per `station.slots` entry); each rack may stay at the station at most
`exposure_limit_s` per trip. The plan says which racks to fetch together (batches, in fetch
order), in which order the gantry picks each batch's tubes, and each rack trip's exposure.
`docs/planner.md` documents the form and the timeline with an example.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from controllerd.planner._model import (
    FiniteFloat,
    HandlingSpec,
    MotionSpec,
    Point,
    PositiveFloat,
    Seconds,
    _Strict,
    _unique_ids,
)
from controllerd.planner._motion import AxisLimits, reference_move_time_s
from controllerd.planner._store import StoreState, StoreTiming


class RotationSpec(_Strict):
    """The carousel's rotation (it turns the shortest way)."""

    v_deg_s: PositiveFloat = Field(description="Top angular speed, deg/s.")
    a_deg_s2: PositiveFloat = Field(description="Angular acceleration, deg/s².")


class LiftSpec(_Strict):
    """The store's lift (vertical travel)."""

    v_mm_s: PositiveFloat = Field(description="Top speed, mm/s.")
    a_mm_s2: PositiveFloat = Field(description="Acceleration, mm/s².")


class StoreSpec(_Strict):
    """The cold store's geometry and fixed times (see `controllerd.planner._store`)."""

    rotation: RotationSpec
    lift: LiftSpec
    port_level_mm: FiniteFloat = Field(description="Lift height where racks leave the store.")
    handle_s: Seconds = Field(description="Extracting a rack from, or inserting it into, its slot.")
    transfer_s: Seconds = Field(description="Moving a rack between the port and the station.")
    initial_angle_deg: FiniteFloat = Field(default=0.0, description="Carousel angle at start.")

    def timing(self) -> StoreTiming:
        """The store's plain timing model."""
        return StoreTiming(
            rotation=AxisLimits(v_mm_s=self.rotation.v_deg_s, a_mm_s2=self.rotation.a_deg_s2),
            lift=AxisLimits(v_mm_s=self.lift.v_mm_s, a_mm_s2=self.lift.a_mm_s2),
            port_level_mm=self.port_level_mm,
            handle_s=self.handle_s,
            transfer_s=self.transfer_s,
        )

    def initial_state(self) -> StoreState:
        """Carousel at `initial_angle_deg`, lift at the port."""
        return StoreState(angle_deg=self.initial_angle_deg, level_mm=self.port_level_mm)


class StoredRack(_Strict):
    """A source rack and where it sits in the store."""

    id: str = Field(min_length=1, description="Unique within the problem.")
    angle_deg: FiniteFloat = Field(description="Carousel angle that brings it to the lift.")
    level_mm: FiniteFloat = Field(description="Lift height of its slot.")

    def place(self) -> StoreState:
        """Its position as a store state."""
        return StoreState(angle_deg=self.angle_deg, level_mm=self.level_mm)


class StationSpec(_Strict):
    """The pick station: one slot per rack it can hold (K = number of slots)."""

    slots: list[Point] = Field(
        min_length=1,
        description="Deck position of each slot's rack origin; the i-th rack fetched in a batch "
        "goes into slot i.",
    )


class RackTube(_Strict):
    """One tube to pick from a source rack and place at `destination` on the deck."""

    id: str = Field(min_length=1, description="Unique within the problem (e.g. the barcode).")
    rack: str = Field(description="Id of the rack holding it.")
    position: Point = Field(description="Offset from the rack's origin, mm.")
    destination: Point = Field(description="Where it goes on the deck (output rack), mm.")


class RackBatchProblem(_Strict):
    """Pick tubes from racks fetched K at a time, each rack out at most `exposure_limit_s`.

    `tubes` is the pick list in request order (the first-come-first-served baseline follows it).
    """

    kind: Literal["rack_batches"]
    motion: MotionSpec
    start: Point = Field(description="Gantry home: it starts and ends every batch here.")
    handling: HandlingSpec = HandlingSpec()
    store: StoreSpec
    station: StationSpec
    racks: list[StoredRack]
    tubes: list[RackTube]
    # After the tubes: its validator checks that every tube fits a trip of its own.
    exposure_limit_s: PositiveFloat = Field(description="Longest a rack may stay out per trip.")

    @field_validator("racks")
    @classmethod
    def _unique_rack_ids(cls, racks: list[StoredRack]) -> list[StoredRack]:
        seen: set[str] = set()
        for rack in racks:
            if rack.id in seen:
                raise ValueError(f"duplicate rack id '{rack.id}'")
            seen.add(rack.id)
        return racks

    _tube_ids = field_validator("tubes")(_unique_ids)

    @field_validator("tubes")
    @classmethod
    def _racks_exist(cls, tubes: list[RackTube], info: ValidationInfo) -> list[RackTube]:
        known = {rack.id for rack in info.data.get("racks", [])}
        for tube in tubes:
            if "racks" in info.data and tube.rack not in known:
                raise ValueError(f"tube '{tube.id}' names unknown rack '{tube.rack}'")
        return tubes

    @field_validator("exposure_limit_s")
    @classmethod
    def _each_tube_fits(cls, limit_s: float, info: ValidationInfo) -> float:
        data = info.data
        if not {"motion", "start", "station", "tubes", "handling"} <= data.keys():
            return limit_s  # the missing field has its own error
        motion = data["motion"].limits()
        home, slot = data["start"], data["station"].slots[0]
        for tube in data["tubes"]:
            # The shortest trip a tube can have: its rack alone in slot 0, only it picked.
            source = (slot[0] + tube.position[0], slot[1] + tube.position[1])
            alone = (
                reference_move_time_s(home, source, motion)
                + reference_move_time_s(source, tube.destination, motion)
                + reference_move_time_s(tube.destination, home, motion)
                + data["handling"].per_tube_s
            )
            if alone > limit_s:
                raise ValueError(
                    f"impossible exposure limit: tube '{tube.id}' of rack '{tube.rack}' takes "
                    f"{alone:.1f} s at the station even alone, more than exposure_limit_s "
                    f"{limit_s:g} s"
                )
        return limit_s

    @property
    def capacity(self) -> int:
        """K: racks the station holds at once."""
        return len(self.station.slots)


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RackBatch(_Out):
    """One trip: racks fetched together, their tubes picked, the racks returned."""

    racks: list[str] = Field(description="Rack ids in fetch order (= slot order and return order).")
    tubes: list[str] = Field(description="Tube ids in pick order.")
    order: list[int] = Field(description="The same tubes as indices into the problem's `tubes`.")
    exposure_s: list[float] = Field(description="Per rack (as `racks`): time at the station.")
    start_s: float = Field(description="Job time when the batch's first fetch starts.")
    pick_s: float = Field(description="Gantry time for the batch's tubes (moves + handling).")
    end_s: float = Field(description="Job time when the batch's last return ends.")


class JobFigures(_Out):
    """Whole-job figures of a plan (used for the first-come-first-served baseline)."""

    cost_s: float = Field(description="Job time from the first fetch to the last return.")
    fetches: int = Field(description="Rack trips (each a fetch and a return).")
    max_exposure_s: float
    exposure_violations: int = Field(description="Rack trips longer than the exposure limit.")


class RackBatchPlan(_Out):
    """The answer to a `rack_batches` problem."""

    batches: list[RackBatch]
    order: list[int] = Field(description="Every tube index once, in pick order over the job.")
    ids: list[str] = Field(description="Tube ids in `order`.")
    cost_s: float = Field(description="Whole job time, recomputed from the batches.")
    fetches: int
    max_exposure_s: float
    exposure_violations: int = Field(description="Always 0 for a plan from the planner.")
    fcfs: JobFigures = Field(
        description="First come, first served: tubes in request order, a rack fetched when its "
        "tube comes up (returning a finished, else the least recently used, rack when full)."
    )
    fcfs_by_rack: JobFigures = Field(
        description="Racks in order of first request, K per trip, each trip's tubes in request "
        "order."
    )
    elapsed_ms: float
    iterations: int = Field(description="Search iterations run (reproducibility).")
    warm: bool = Field(
        default=True,
        description="False for a quick numpy-only plan answered while the worker was starting.",
    )
