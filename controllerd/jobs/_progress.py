"""Job progress on the retained `BASE/jobs/{job}` topic, after every tube and state change."""

from __future__ import annotations

import time

from controllerd._time import utc_now
from controllerd.jobs._model import FINAL_STATES, Job, JobProgress
from controllerd.mqtt import Publisher
from controllerd.topics import Topics

#: Seconds per tube assumed before the first tube of a job has been timed.
FIRST_GUESS_S_PER_TUBE = 30.0


class ProgressReporter:
    """Publishes each job's progress with an ETA from the tubes timed so far."""

    def __init__(self, *, mqtt: Publisher, topics: Topics) -> None:
        self._mqtt = mqtt
        self._topics = topics
        self._started: dict[str, tuple[float, int]] = {}

    def started(self, job: Job) -> None:
        """Timing for the ETA starts now (at each start or resume)."""
        self._started[job.job] = (time.monotonic(), job.done)

    def eta_s(self, job: Job) -> float | None:
        if job.state in FINAL_STATES:
            return 0.0
        remaining = len(job.pending())
        start = self._started.get(job.job)
        if start is None or job.done <= start[1]:
            return round(remaining * FIRST_GUESS_S_PER_TUBE, 1)
        per_tube = (time.monotonic() - start[0]) / (job.done - start[1])
        return round(remaining * per_tube, 1)

    def payload(self, job: Job) -> JobProgress:
        return JobProgress(
            job=job.job,
            state=job.state,
            done=job.done,
            total=job.total,
            eta_s=self.eta_s(job),
            error=job.error,
            failed=[tube.barcode for tube in job.tubes if tube.state == "failed"],
            operator=job.operator,
            ts=utc_now(),
        )

    async def publish(self, job: Job) -> None:
        await self._mqtt.publish(
            self._topics.job(job.job), self.payload(job).to_json(), qos=1, retain=True
        )
        if job.state in FINAL_STATES:
            self._started.pop(job.job, None)
