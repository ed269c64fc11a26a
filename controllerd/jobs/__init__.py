"""Pick jobs: the `pick` and `cancel` commands, a priority queue, the executor that fetches
racks and picks tubes with barcode verification, the crash-safe journal and the progress topic
(docs/jobs.md). Movements go through the durable outbox (controllerd.outbox).
"""

from controllerd.jobs._batches import (
    Batch,
    Batcher,
    fcfs_batches,
    plan_batches,
    simple_batcher,
)
from controllerd.jobs._errors import JobError, JobFailed, PickerStuck
from controllerd.jobs._executor import JobExecutor
from controllerd.jobs._exposure import ExposureBudget
from controllerd.jobs._journal import Journal
from controllerd.jobs._manager import JobManager, pick_chamber_alarm
from controllerd.jobs._model import (
    FINAL_STATES,
    MAX_BARCODES,
    CancelRequest,
    Job,
    JobProgress,
    JobState,
    PickRequest,
    TubeTask,
)
from controllerd.jobs._planned import PlannerBatcher
from controllerd.jobs._progress import ProgressReporter
from controllerd.jobs._queue import JobQueue

__all__ = [
    "FINAL_STATES",
    "MAX_BARCODES",
    "Batch",
    "Batcher",
    "CancelRequest",
    "ExposureBudget",
    "Job",
    "JobError",
    "JobExecutor",
    "JobFailed",
    "JobManager",
    "JobProgress",
    "JobQueue",
    "JobState",
    "Journal",
    "PickRequest",
    "PickerStuck",
    "PlannerBatcher",
    "ProgressReporter",
    "TubeTask",
    "fcfs_batches",
    "pick_chamber_alarm",
    "plan_batches",
    "simple_batcher",
]
