"""Logging your own model's training to a relabscope run log.

- :class:`RunCapture` (``relabscope.integrations.capture``): for a hand-written loop, and
  the core the callbacks share: the labels in effect, ``relabel(...)``, embeddings from a
  named layer, one writer under several processes;
- :class:`RelabscopeCallback` (``relabscope.integrations.lightning``): a Lightning callback;
- :class:`RelabscopeTrainerCallback` (``relabscope.integrations.hf``): a callback for the
  transformers ``Trainer``.

Nothing loads until it is used: importing this package imports neither torch, Lightning
nor transformers (each integration needs its own extra: ``relabscope[lightning]``,
``relabscope[hf]``). docs/integrations.md shows each in a few lines.
"""

from __future__ import annotations

from relabscope.lazy import lazy_exports

_EXPORTS = {
    "RunCapture": "relabscope.integrations.capture",
    "sample_table": "relabscope.integrations.capture",
    "RelabscopeCallback": "relabscope.integrations.lightning",
    "RelabscopeTrainerCallback": "relabscope.integrations.hf",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__all__ = list(_EXPORTS)
