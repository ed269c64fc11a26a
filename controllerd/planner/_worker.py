"""`PlannerWorker`: plans in a warmed-up worker process, never on the event loop's thread.

One process (spawn start method: no forked copy of the daemon's threads, sockets or loop) runs
every plan. `__aenter__` waits until the worker has imported numba, loaded the compiled kernels
from the on-disk cache (compiling them once if the cache is cold) and solved a tiny problem, so
the daemon can report READY knowing the first real plan starts at full speed. Plans queue: the
worker solves one at a time. Cancelling an awaiting `plan` call does not stop a plan already
running in the worker; it ends at its budget and its result is dropped. The worker runs at a
lower CPU priority (`WORKER_NICENESS`) than the daemon.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType
from typing import Self

from controllerd.planner._model import CarrierProblem, PickPlaceProblem, Plan, RouteProblem
from controllerd.planner._rack_model import RackBatchPlan, RackBatchProblem

WORKER_NICENESS = 10
"""Added to the worker process's nice value, so the daemon's event loop keeps priority."""


def _warm_up() -> int:
    """Runs in the worker: compile or load the kernels, then plan a tiny problem end to end."""
    import os

    from controllerd.planner import _kernels
    from controllerd.planner._model import MotionSpec, RouteProblem
    from controllerd.planner._planner import plan

    # Planning is background work: the daemon's event loop (alarms) wins the CPU when they
    # compete, which matters on small controllers with two cores.
    os.nice(WORKER_NICENESS)
    _kernels.warm_up()
    axis = {"v_mm_s": 800.0, "a_mm_s2": 4000.0}
    tiny = RouteProblem(
        motion=MotionSpec.model_validate({"x": axis, "y": axis}),
        start=(0.0, 0.0),
        points=[(float(i * 7 % 5), float(i * 3 % 4)) for i in range(12)],
    )
    plan(tiny, budget_ms=5.0, seed=0)
    return os.getpid()


def _plan(
    problem: RouteProblem | PickPlaceProblem | CarrierProblem,
    budget_ms: float,
    seed: int,
    max_iterations: int | None,
) -> Plan:
    """Runs in the worker."""
    from controllerd.planner._planner import plan

    return plan(problem, budget_ms=budget_ms, seed=seed, max_iterations=max_iterations)


def _plan_rack_batches(
    problem: RackBatchProblem, budget_ms: float, seed: int, max_iterations: int | None
) -> RackBatchPlan:
    """Runs in the worker."""
    from controllerd.planner._planner import plan_rack_batches

    return plan_rack_batches(problem, budget_ms=budget_ms, seed=seed, max_iterations=max_iterations)


class PlannerWorker:
    """Async context manager owning the planner's worker process.

    ```python
    async with PlannerWorker() as worker:   # returns once the worker is warm
        result = await worker.plan(problem, budget_ms=250, seed=1)
    ```
    """

    def __init__(self, *, start_method: str = "spawn") -> None:
        self._start_method = start_method
        self._pool: ProcessPoolExecutor | None = None
        self.pid: int | None = None
        """The worker's process id once warm (for logs and tests)."""

    async def __aenter__(self) -> Self:
        context = multiprocessing.get_context(self._start_method)
        self._pool = ProcessPoolExecutor(max_workers=1, mp_context=context)
        try:
            self.pid = await asyncio.get_running_loop().run_in_executor(self._pool, _warm_up)
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._shutdown()

    async def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            # shutdown(wait=True) joins the process: do it off the loop so alarms keep flowing.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    async def plan(
        self,
        problem: RouteProblem | PickPlaceProblem | CarrierProblem,
        *,
        budget_ms: float,
        seed: int = 0,
        max_iterations: int | None = None,
    ) -> Plan:
        """Plan `problem` in the worker process (see `controllerd.planner.plan`)."""
        if self._pool is None:
            raise RuntimeError("PlannerWorker is not running: use 'async with PlannerWorker()'")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, _plan, problem, budget_ms, seed, max_iterations
        )

    async def plan_rack_batches(
        self,
        problem: RackBatchProblem,
        *,
        budget_ms: float,
        seed: int = 0,
        max_iterations: int | None = None,
    ) -> RackBatchPlan:
        """Plan a pick job's rack batches in the worker (see `plan_rack_batches`).

        This is what the pick-job executor consumes: `batches` in order, each with its racks in
        fetch order (slot i of the station for the i-th), its tubes in pick order and the
        exposure of every rack trip.
        """
        if self._pool is None:
            raise RuntimeError("PlannerWorker is not running: use 'async with PlannerWorker()'")
        return await asyncio.get_running_loop().run_in_executor(
            self._pool, _plan_rack_batches, problem, budget_ms, seed, max_iterations
        )
