"""Training: the loop, its event protocol, label state, checkpoints and the run function."""

from relabscope.training.hooks import BatchRecord, EpochSummary, Hook, RunInfo, RunResult
from relabscope.training.runner import train

__all__ = ["BatchRecord", "EpochSummary", "Hook", "RunInfo", "RunResult", "train"]
