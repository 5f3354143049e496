"""Training: the loop, its event protocol, the labels in effect, checkpoints and the run
function. Loaded on first use (``relabscope.lazy``), so importing ``relabscope.training.X``
loads X and what it needs, not the whole trainer."""

from relabscope.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "BatchRecord": "relabscope.training.hooks", "EpochSummary": "relabscope.training.hooks",
    "Hook": "relabscope.training.hooks", "RunInfo": "relabscope.training.hooks", "RunResult": "relabscope.training.hooks",
    "train": "relabscope.training.runner",
})

__all__ = ["BatchRecord", "EpochSummary", "Hook", "RunInfo", "RunResult", "train"]
