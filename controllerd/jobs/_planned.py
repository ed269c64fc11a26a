"""Rack batches from the planner (`rack_batches` problem form, docs/planner.md).

`PlannerBatcher` turns the tubes still to pick into a `RackBatchProblem` — the picker's motion
and per-tube times, the pick station's rack ports as the K slots, the store's carousel, lift,
port and handling times from `[jobs.store_geometry]` and each rack's tower and shelf from the
specimen map, the exposure limit less its margin — and asks the planner's worker process for the
trips. Entering the batcher starts the worker, which warms up (numba kernels loaded) while the
daemon brings its devices up; `ready()` waits for it (the supervisor awaits it, bounded, before
READY) and `state` says where it is. When the planner cannot answer (no worker, an impossible
limit, no plan in time) the job goes on with `plan_batches` and a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

import structlog
from pydantic import ValidationError

from controllerd.config import JobsSection
from controllerd.jobs._batches import Batch, plan_batches
from controllerd.jobs._model import TubeTask
from firmware_bridge import MotionConfig

if TYPE_CHECKING:
    # Imported when the batcher starts: `controllerd.planner` keeps numba out of the daemon
    # process (only its worker imports it), but its models are not needed before.
    from controllerd.planner import PlannerWorker, RackBatchProblem

_log = structlog.get_logger("controllerd.jobs.planner")

ROWS = "ABCDEFGH"
#: Start-up of the worker (spawn, numba cache) plus one plan, at most.
PLANNER_TIMEOUT_S = 60.0

#: (tower, shelf) of a rack, None when unknown.
RackPlace = Callable[[str], tuple[int, int] | None]


class PlannerBatcher:
    """`async with PlannerBatcher(...) as batcher: batches = await batcher(tubes, k)`.

    Entering starts the planner's worker process (it warms up in the background); `await
    batcher.ready()` waits until it is warm, `batcher.state` says where it is."""

    def __init__(
        self, *, config: JobsSection, motion: MotionConfig | None, rack_place: RackPlace
    ) -> None:
        self._cfg = config
        self._motion = motion or MotionConfig()
        self._rack_place = rack_place
        self._exit = contextlib.AsyncExitStack()
        self._worker: PlannerWorker | None = None
        self._start_error: BaseException | None = None
        #: plans made by the planner and fallbacks to simple batching (for tests and logs)
        self.planned = 0
        self.fallbacks = 0

    async def __aenter__(self) -> Self:
        await self._start_worker()
        return self

    async def _start_worker(self) -> PlannerWorker | None:
        from controllerd.planner import PlannerWorker

        try:
            worker = await self._exit.enter_async_context(PlannerWorker())
        except (OSError, ValueError) as exc:  # no process pool here: jobs use simple batches
            self._start_error = exc
            _log.error("planner worker cannot start: simple rack batches", error=repr(exc))
            return None
        self._worker, self._start_error = worker, None
        _log.info("planner worker starting")
        return worker

    @property
    def state(self) -> Literal["starting", "warm", "failed", "stopped"]:
        """The worker's state (`PlannerWorker.state`); `failed` also when its process could not
        be started, `stopped` between a lost worker and the next job, which starts a new one."""
        if self._worker is None:
            return "failed" if self._start_error is not None else "stopped"
        return self._worker.state

    async def ready(self) -> bool:
        """Wait until the worker is warm (True) or failed to start (False); unbounded: the
        caller bounds it (the supervisor's start-up wait)."""
        return False if self._worker is None else await self._worker.ready()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit.aclose()

    def problem(self, tubes: list[TubeTask], k: int) -> RackBatchProblem:
        """The rack-batch problem for these tubes (ProblemError / ValidationError if invalid)."""
        from controllerd.planner import ProblemError, RackBatchProblem

        cfg, geo = self._cfg, self._cfg.store_geometry
        pitch = cfg.pitch_mm
        out_x, out_y = cfg.port_origins_mm[cfg.output_port]
        racks = {}
        for tube in tubes:
            place = self._rack_place(tube.rack)
            if place is None:
                raise ProblemError([f"racks: {tube.rack} is not in the specimen map"])
            tower, shelf = place
            racks[tube.rack] = {
                "id": tube.rack,
                "angle_deg": (tower - 1) * 360.0 / geo.towers,
                "level_mm": (shelf - 1) * geo.shelf_pitch_mm,
            }
        motion = self._motion
        return RackBatchProblem.model_validate(
            {
                "kind": "rack_batches",
                "motion": {
                    "x": {"v_mm_s": motion.x.v_mm_s, "a_mm_s2": motion.x.a_mm_s2},
                    "y": {"v_mm_s": motion.y.v_mm_s, "a_mm_s2": motion.y.a_mm_s2},
                },
                "start": [0.0, 0.0],
                "handling": {
                    "pick_s": motion.pick_s,
                    "place_s": motion.place_s,
                    "scan_s": motion.scan_s,
                },
                "store": {
                    "rotation": {"v_deg_s": geo.rotation_deg_s, "a_deg_s2": geo.rotation_deg_s2},
                    "lift": {"v_mm_s": geo.lift_mm_s, "a_mm_s2": geo.lift_mm_s2},
                    "port_level_mm": geo.port_level_mm,
                    "handle_s": geo.handling_s,
                    "transfer_s": geo.transfer_s,
                },
                "station": {"slots": [list(cfg.port_origins_mm[p]) for p in cfg.rack_ports[:k]]},
                "exposure_limit_s": cfg.exposure_limit_s - cfg.exposure_margin_s,
                "racks": list(racks.values()),
                "tubes": [
                    {
                        "id": tube.barcode,
                        "rack": tube.rack,
                        "position": [
                            (int(tube.position[1:]) - 1) * pitch,
                            ROWS.index(tube.position[0]) * pitch,
                        ],
                        # The output rack's middle: the slot a tube gets is decided as it goes.
                        "destination": [out_x + 5.5 * pitch, out_y + 3.5 * pitch],
                    }
                    for tube in tubes
                ],
            }
        )

    async def __call__(self, tubes: list[TubeTask], k: int) -> list[Batch]:
        from controllerd.planner import ProblemError

        try:
            problem = self.problem(tubes, k)
            async with asyncio.timeout(PLANNER_TIMEOUT_S):
                worker = self._worker or await self._start_worker()
                if worker is None:
                    raise RuntimeError("no planner worker")
                plan = await worker.plan_rack_batches(
                    problem, budget_ms=self._cfg.planner_budget_ms
                )
        except (ProblemError, ValidationError, TimeoutError, OSError, RuntimeError) as exc:
            # BrokenProcessPool is a RuntimeError: a dead worker is restarted next time.
            self.fallbacks += 1
            if self._worker is not None and not isinstance(exc, ProblemError | ValidationError):
                self._worker = None
                await self._exit.aclose()
                self._exit = contextlib.AsyncExitStack()
            _log.warning("planner unavailable: simple rack batches", error=str(exc))
            return plan_batches(tubes, k)
        self.planned += 1
        by_id = {tube.barcode: tube for tube in tubes}
        _log.info(
            "rack batches planned",
            tubes=len(tubes),
            warm=plan.warm,
            elapsed_ms=round(plan.elapsed_ms, 1),
            trips=len(plan.batches),
            cost_s=round(plan.cost_s, 1),
            fcfs_cost_s=round(plan.fcfs.cost_s, 1),
        )
        return [
            Batch(racks=tuple(b.racks), tubes=tuple(by_id[t] for t in b.tubes))
            for b in plan.batches
        ]
