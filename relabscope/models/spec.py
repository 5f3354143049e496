"""A model relabscope did not build, named so that it can be rebuilt later: by import path.

Grad-CAM needs the model itself. ``relabscope train`` keeps a checkpoint of its own; a run
logged by a callback or ``RunCapture`` has none, so the user names the model: in Python
(``run.gradcam(model=...)``), once for every later report and dashboard
(``RunCapture(model_factory="pkg.mod:build", ...)``, stored in the log's config), or on
the command line (``relabscope report RUN --model pkg.mod:build --weights W --layer L``).
Torch-free: the CLI and the dashboard parse and store specs without loading the model.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Mapping

from relabscope.errors import RelabscopeError

#: what a view says when a run needs a model of the user's and none was named
NO_MODEL = ("Grad-CAM is not available for a model relabscope did not build: give --model module:factory "
            "(with --layer, and --weights when the factory builds an untrained model), or record "
            "model_factory= on the callback")


@dataclass(frozen=True)
class ModelSpec:
    """How to rebuild a model for Grad-CAM.

    Attributes:
        factory: ``"module:function"``, a function of no argument that returns the
            ``nn.Module`` (or a module class).
        weights: a state-dict file loaded into it (a Lightning ``.ckpt`` too); None when
            the factory returns the trained model.
        layer: the dotted name of the layer to explain ("backbone.layer4").
        transform: ``"module:function"`` turning float images 0..255 into the model's
            input; None: the normalisation the run recorded, else ImageNet's.
    """

    factory: str
    weights: str | None = None
    layer: str | None = None
    transform: str | None = None

    def __post_init__(self) -> None:
        for name in ("factory", "transform"):
            value = getattr(self, name)
            if value is not None and (":" not in value or not all(value.split(":", 1))):
                raise RelabscopeError(f"model {name} {value!r}: write it as module:name (e.g. mypkg.models:build)")

    def gradcam_options(self, search: Path | None = None) -> dict[str, Any]:
        """``Run.gradcam``'s model options, the import paths imported (``search``: a folder
        tried first for the modules, e.g. the folder a script ran from)."""
        return {"model": import_object(self.factory, "model factory", search), "weights": self.weights,
                "layer": self.layer,
                "transform": import_object(self.transform, "transform", search) if self.transform else None}

    def to_config(self) -> dict[str, Any]:
        """As the log's config stores it (``config["model"]``)."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSpec | None:
        """The spec a run's config records, or None."""
        spec = config.get("model")
        if not isinstance(spec, Mapping) or "factory" not in spec:
            return None
        return cls(str(spec["factory"]), spec.get("weights"), spec.get("layer"), spec.get("transform"))


def import_object(path: str, what: str, search: Path | None = None) -> Any:
    """The object ``"module:name"`` names (``name`` may be dotted); one line naming
    ``what`` when the module or the name cannot be found."""
    module_name, _, name = path.partition(":")
    if search is not None and str(search) not in sys.path:
        sys.path.insert(0, str(search))
    try:
        obj: Any = import_module(module_name)
    except ImportError as exc:
        raise RelabscopeError(f"{what} {path!r}: cannot import {module_name} ({exc}); run from the folder that "
                              "holds it, or install it") from None
    for part in name.split("."):
        if not hasattr(obj, part):
            raise RelabscopeError(f"{what} {path!r}: {module_name} has no {name!r}")
        obj = getattr(obj, part)
    return obj
