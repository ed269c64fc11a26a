"""Jobs waiting to run: highest priority first, then first come first served."""

from __future__ import annotations

import asyncio
import heapq

from controllerd.jobs._model import Job


class JobQueue:
    """An asyncio priority queue of jobs that also lets a queued job be removed (cancel)."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str]] = []
        self._jobs: dict[str, Job] = {}
        self._changed = asyncio.Condition()

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job: str) -> bool:
        return job in self._jobs

    async def put(self, job: Job) -> None:
        async with self._changed:
            self._jobs[job.job] = job
            heapq.heappush(self._heap, (-job.priority, job.order, job.job))
            self._changed.notify_all()

    def position(self, job: str) -> int:
        """1 for the next job to run."""
        ranked = sorted(entry for entry in self._heap if entry[2] in self._jobs)
        return next(i for i, entry in enumerate(ranked, start=1) if entry[2] == job)

    def remove(self, job: str) -> Job | None:
        return self._jobs.pop(job, None)

    async def get(self) -> Job:
        """The next job (waits while the queue is empty)."""
        async with self._changed:
            while True:
                while self._heap:
                    _, _, job_id = heapq.heappop(self._heap)
                    job = self._jobs.pop(job_id, None)
                    if job is not None:
                        return job
                await self._changed.wait()
