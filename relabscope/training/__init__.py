"""Training: the loop, its event protocol, label state, checkpoints and the run function."""

from typing import Any

from relabscope.training.hooks import BatchRecord, EpochSummary, Hook, RunInfo, RunResult


def __getattr__(name: str) -> Any:
    # ``train`` lives in runner, which imports the run-log hook, which imports this
    # package's hooks: loading it lazily keeps that chain free of import cycles.
    if name == "train":
        from relabscope.training.runner import train

        return train
    raise AttributeError(f"module 'relabscope.training' has no attribute {name!r}")


__all__ = ["BatchRecord", "EpochSummary", "Hook", "RunInfo", "RunResult", "train"]
