"""relabscope: train noisy-label FER models and see what relabelling does to them.

The top level re-exports the public API. Heavy modules load on first use, so
``import relabscope`` stays fast and ``relabscope train`` needs only the training stack.
"""

from __future__ import annotations

from relabscope.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "open_run": "relabscope.analysis.run",
    "Run": "relabscope.analysis.run",
    "compare": "relabscope.analysis.compare",
    "Comparison": "relabscope.analysis.compare",
    "train": "relabscope.training.runner",
    "TrainConfig": "relabscope.config",
    "RunLogWriter": "relabscope.runlog.writer",
    "RunLogReader": "relabscope.runlog.reader",
    "check_log": "relabscope.runlog.check",
    "SampleTable": "relabscope.runlog.schema",
    "example_run": "relabscope.examples",
    "live_example_run": "relabscope.examples",
    "Hook": "relabscope.training.hooks",
    "load_dataset": "relabscope.data",
    "RelabscopeError": "relabscope.errors",
    "ClassBalanceWarning": "relabscope.analysis.class_balance",
    "export_suspects": "relabscope.analysis.export",
    "import_labelstudio": "relabscope.analysis.export",
}


_MODULES = {"plot": "relabscope.plot"}
__getattr__, __dir__ = lazy_exports(__name__, {**_EXPORTS, **_MODULES})


__all__ = ["__version__", *_EXPORTS, *_MODULES]
