"""`PlannerWorker`: plans in a warmed-up worker process, never on the event loop's thread.

One process (spawn start method: no forked copy of the daemon's threads, sockets or loop) runs
every plan. `__aenter__` starts it and returns at once; the worker then imports numba, loads the
compiled kernels from the on-disk cache (compiling them once if the cache is cold) and solves a
tiny problem, which takes about a second. Until then a plan is answered in the daemon process by
the numpy-only search of `_cold` in a thread (its budget cut to `_cold.MAX_BUDGET_S`), marked
`warm=False`, so a first request is answered within a fraction of a second of start-up; `ready()`
waits for the worker (the daemon awaits it, bounded, before reporting READY). If the worker fails
to warm up, every plan takes the numpy-only path and the failure is logged once; `state` says
which of `starting`, `warm` or `failed` the worker is in.

Plans queue: the worker solves one at a time. Cancelling an awaiting `plan` call does not stop a
plan already running in the worker; it ends at its budget and its result is dropped. The worker
runs at a lower CPU priority (`WORKER_NICENESS`) than the daemon. Leaving the context ends the
worker process at once, even mid-plan or mid-warm-up (a cold numba cache compiles for many
seconds), so that a daemon's stop stays bounded.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from types import TracebackType
from typing import Literal, Self, TypeVar

import structlog

from controllerd.planner._cold import MAX_BUDGET_S, numpy_only
from controllerd.planner._model import CarrierProblem, PickPlaceProblem, Plan, RouteProblem
from controllerd.planner._rack_model import RackBatchPlan, RackBatchProblem

WORKER_NICENESS = 10
"""Added to the worker process's nice value, so the daemon's event loop keeps priority."""

_log = structlog.get_logger("controllerd.planner")

_T = TypeVar("_T", Plan, RackBatchPlan)


_PR_SET_PDEATHSIG = 1
"""prctl(2) option: the signal a process gets when the thread that created it ends."""


def _die_with_daemon(daemon_pid: int) -> None:
    """Runs first in the worker: a daemon that dies (kill -9, a last-resort exit) takes its
    worker along instead of leaving it orphaned (Linux; elsewhere the pool's own shutdown)."""
    import ctypes
    import signal
    import sys

    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            _log.warning("planner worker cannot follow its daemon", errno=ctypes.get_errno())
    if os.getppid() != daemon_pid:  # the daemon died before the line above took effect
        os._exit(0)


def _warm_up() -> int:
    """Runs in the worker: compile or load the kernels, then plan a tiny problem end to end."""
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
    """Runs in the worker (or, numpy-only, in a thread of the daemon: see `_cold`)."""
    from controllerd.planner._planner import plan

    return plan(problem, budget_ms=budget_ms, seed=seed, max_iterations=max_iterations)


def _plan_rack_batches(
    problem: RackBatchProblem, budget_ms: float, seed: int, max_iterations: int | None
) -> RackBatchPlan:
    """Runs in the worker (or, numpy-only, in a thread of the daemon: see `_cold`)."""
    from controllerd.planner._planner import plan_rack_batches

    return plan_rack_batches(problem, budget_ms=budget_ms, seed=seed, max_iterations=max_iterations)


def _cold(solve: Callable[..., _T], *args: object) -> _T:
    """Runs in a thread of the daemon process: the numpy-only search, marked as such."""
    with numpy_only():
        result = solve(*args)
    return result.model_copy(update={"warm": False})


def _end_processes(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker process, busy or not: plans are disposable, a stop is not.

    `ProcessPoolExecutor.shutdown` waits for a running call (a plan, or a warm-up compiling a
    cold numba cache for many seconds); Python 3.14 adds `terminate_workers` for this, before it
    the processes are only reachable through the pool's `_processes`.
    """
    terminate = getattr(pool, "terminate_workers", None)
    if terminate is not None:
        terminate()
        return
    processes = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        if process.is_alive():
            process.terminate()


class PlannerWorker:
    """Async context manager owning the planner's worker process.

    ```python
    async with PlannerWorker() as worker:   # returns at once; the worker warms up meanwhile
        result = await worker.plan(problem, budget_ms=250, seed=1)   # result.warm: full search?
        await worker.ready()                # the worker is warm: plans get the full search
    ```
    """

    def __init__(self, *, start_method: str = "spawn") -> None:
        self._start_method = start_method
        self._pool: ProcessPoolExecutor | None = None
        self._group: asyncio.TaskGroup | None = None
        self._warm_task: asyncio.Task[None] | None = None
        self._warm = asyncio.Event()
        self._failed: BaseException | None = None
        self.pid: int | None = None
        """The worker's process id once warm (for logs and tests)."""

    @property
    def warm(self) -> bool:
        """True once the worker process is ready: plans then get the full numba search."""
        return self._warm.is_set() and self._failed is None

    @property
    def state(self) -> Literal["starting", "warm", "failed"]:
        """`starting` until the worker is warm (quick numpy-only plans meanwhile), then `warm`;
        `failed` if it could not start (every plan is then numpy-only)."""
        if not self._warm.is_set():
            return "starting"
        return "warm" if self._failed is None else "failed"

    async def ready(self) -> bool:
        """Wait until the worker has warmed up (or failed to); returns `warm`."""
        await self._warm.wait()
        return self.warm

    async def __aenter__(self) -> Self:
        context = multiprocessing.get_context(self._start_method)
        # The pool starts its process from this (the loop's) thread, which lives as long as
        # the daemon: the death signal set by `_die_with_daemon` fires when the daemon ends.
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=context,
            initializer=_die_with_daemon,
            initargs=(os.getpid(),),
        )
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        self._warm_task = self._group.create_task(self._warm_up(self._pool), name="planner-warm-up")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        group, self._group = self._group, None
        try:
            if group is not None:
                if self._warm_task is not None:
                    self._warm_task.cancel()  # the process itself stops with the pool below
                await group.__aexit__(None, None, None)
        finally:
            await self._shutdown()

    async def _warm_up(self, pool: ProcessPoolExecutor) -> None:
        began = asyncio.get_running_loop().time()
        try:
            self.pid = await asyncio.get_running_loop().run_in_executor(pool, _warm_up)
        except asyncio.CancelledError as exc:
            self._failed = exc  # leaving the context before warm: not logged as a failure
            raise
        except Exception as exc:  # any failure: plans fall back to numpy-only, logged once
            self._failed = exc
            _log.error("planner worker failed to start: numpy-only plans", error=repr(exc))
        else:
            took_s = asyncio.get_running_loop().time() - began
            _log.info("planner worker warm", pid=self.pid, took_s=round(took_s, 3))
        finally:
            self._warm.set()

    async def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            _end_processes(pool)
            # shutdown(wait=True) joins the process: do it off the loop so alarms keep flowing.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _running_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            raise RuntimeError("PlannerWorker is not running: use 'async with PlannerWorker()'")
        return self._pool

    async def plan(
        self,
        problem: RouteProblem | PickPlaceProblem | CarrierProblem,
        *,
        budget_ms: float,
        seed: int = 0,
        max_iterations: int | None = None,
    ) -> Plan:
        """Plan `problem` in the worker process (see `controllerd.planner.plan`).

        Before the worker is warm: a numpy-only plan from a thread, `warm=False`.
        """
        pool = self._running_pool()
        if not self.warm:
            quick_ms = min(budget_ms, MAX_BUDGET_S * 1e3)
            return await asyncio.to_thread(_cold, _plan, problem, quick_ms, seed, max_iterations)
        return await asyncio.get_running_loop().run_in_executor(
            pool, _plan, problem, budget_ms, seed, max_iterations
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
        exposure of every rack trip. Before the worker is warm: a numpy-only plan, `warm=False`.
        """
        pool = self._running_pool()
        if not self.warm:
            quick_ms = min(budget_ms, MAX_BUDGET_S * 1e3)
            return await asyncio.to_thread(
                _cold, _plan_rack_batches, problem, quick_ms, seed, max_iterations
            )
        return await asyncio.get_running_loop().run_in_executor(
            pool, _plan_rack_batches, problem, budget_ms, seed, max_iterations
        )
