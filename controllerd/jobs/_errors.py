"""Why a job stops: the jobs package's exceptions."""

from __future__ import annotations


class JobError(Exception):
    """Base of the jobs package's exceptions."""


class JobFailed(JobError):
    """A job cannot go on (the store refuses, the output rack is full, a motion is refused
    again and again, the exposure limit leaves no time for a single tube)."""


class PickerStuck(JobError):
    """The picker did not complete a motion while the racks at the station could still wait
    for it: the racks go back, and the job waits for the picker."""
