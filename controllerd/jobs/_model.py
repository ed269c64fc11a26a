"""The pick and cancel commands, job and tube states, and the job progress payload."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from controllerd.commands import CommandBase

#: Hard cap of a pick list, whatever the config says: a bigger command is refused unread.
MAX_BARCODES = 960

Barcode = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=False)]

JobState = Literal["queued", "running", "paused", "done", "cancelled", "failed"]
#: States a job never leaves.
FINAL_STATES: frozenset[str] = frozenset({"done", "cancelled", "failed"})

#: pending -> picking (reserved output slot, about to pick) -> held (in the gripper) -> done;
#: or failed (wrong/unreadable barcode: left where it is) or cancelled (job cancelled first).
TubeState = Literal["pending", "picking", "held", "done", "failed", "cancelled"]


class PickRequest(CommandBase):
    """`BASE/cmd/pick`: pick these tubes into the output rack."""

    barcodes: list[Barcode] = Field(min_length=1, max_length=MAX_BARCODES)
    priority: int = Field(default=5, ge=0, le=9, description="9 runs first; equal: oldest first.")
    output_rack: str | None = Field(
        default=None, min_length=1, max_length=64, description="Must be the rack at the output."
    )


class CancelRequest(CommandBase):
    """`BASE/cmd/cancel`: finish the current tube, return the racks, end the job `cancelled`."""

    job: str = Field(min_length=1, max_length=64)


@dataclass(slots=True)
class TubeTask:
    """One tube of a job: where it is, where it goes, how far it got."""

    barcode: str
    store: str
    rack: str
    position: str
    state: TubeState = "pending"
    out_rack: str | None = None
    out_position: str | None = None
    error: str | None = None


@dataclass(slots=True)
class Job:
    """A pick job as the journal keeps it."""

    job: str
    command_id: str
    operator: str
    priority: int
    order: int
    state: JobState
    output_rack: str
    tubes: list[TubeTask] = field(default_factory=list)
    error: str | None = None
    cancel_requested: bool = False

    @property
    def done(self) -> int:
        return sum(1 for tube in self.tubes if tube.state == "done")

    @property
    def total(self) -> int:
        return len(self.tubes)

    def pending(self) -> list[TubeTask]:
        return [tube for tube in self.tubes if tube.state in ("pending", "picking", "held")]


class JobProgress(BaseModel):
    """Retained `BASE/jobs/{job}`, after every tube and every state change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job: str
    state: JobState
    done: int
    total: int
    eta_s: float | None
    error: str | None
    failed: list[str] = Field(default_factory=list, description="Tubes left where they were.")
    operator: str
    ts: str

    def to_json(self) -> bytes:
        return json.dumps(self.model_dump(), separators=(",", ":")).encode()
