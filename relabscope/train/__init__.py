"""Training: the loop, its event protocol, label state, checkpoints and the run function."""

from relabscope.train.hooks import BatchRecord, EpochSummary, Hook, RunInfo, RunResult
from relabscope.train.runner import train

__all__ = ["BatchRecord", "EpochSummary", "Hook", "RunInfo", "RunResult", "train"]
