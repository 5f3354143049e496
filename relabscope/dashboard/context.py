"""What every page's callbacks share: the registry, result caches, images, URL building.

Pages compute nothing themselves: they ask a ``Run`` (through ``Context.run``) or a
``relabscope.plot`` helper, and ``Context.cached`` keeps results that are expensive to
recompute (flip-flop tables, Grad-CAM) per run *version*, so a live run that commits an
epoch gets new results.
"""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlencode

import pandas as pd

from relabscope.analysis.compare import Comparison, compare
from relabscope.analysis.projection import MAP_POINTS
from relabscope.analysis.run import LabelKind, Run
from relabscope.dashboard.cache import Background, Memo
from relabscope.dashboard.images import SIZES, ImageStore, image_url
from relabscope.dashboard.registry import RunRegistry
from relabscope.models.spec import ModelSpec


class Context:
    def __init__(self, registry: RunRegistry, *, prefix: str = "/", refresh_seconds: float = 5.0,
                 max_points: int | None = MAP_POINTS, model: ModelSpec | None = None):
        self.registry = registry
        #: the model Grad-CAM explains for runs of a model relabscope did not build (``--model``)
        self.model = model
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.refresh_seconds = refresh_seconds
        self.max_points = max_points
        self.results = Memo(128)
        self.gradcams = Memo(256)
        self.projections = Memo(16)
        self.background = Background(self.projections)
        self.images = ImageStore(registry)

    # ------------------------------------------------------------------ runs and results
    def run(self, run_id: Any) -> Run:
        """The open run (raises RunUnavailable for unknown ids and unreadable logs)."""
        return self.registry.get(run_id)

    def version_key(self, run_id: str) -> tuple:
        run = self.run(run_id)
        return (run_id, id(run), run.num_epochs)

    def cached(self, run_id: str, name: Any, compute: Callable[[Run], Any]) -> Any:
        """``compute(run)``, kept per run version and ``name``."""
        run = self.run(run_id)
        return self.results.get((run_id, id(run), run.num_epochs, name), lambda: compute(run))

    def comparison(self, a_id: str, b_id: str) -> Comparison:
        """``compare`` of two registered runs (cheap: it reads nothing until asked)."""
        return compare(self.run(a_id), self.run(b_id))

    def pair_cached(self, a_id: str, b_id: str, name: Any, compute: Callable[[Comparison], Any]) -> Any:
        """``compute(comparison)``, kept per version of both runs and ``name``."""
        a, b = self.run(a_id), self.run(b_id)
        key = ("pair", a_id, id(a), a.num_epochs, b_id, id(b), b.num_epochs, name)
        return self.results.get(key, lambda: compute(compare(a, b)))

    def background_result(self, run_id: str, name: Any, compute: Callable[[Run], Any]) -> tuple[str, Any]:
        """``compute(run)`` per run version and ``name``, computed in the background
        (``Background.poll``'s answer: done, running, queued or failed)."""
        run = self.run(run_id)
        return self.background.poll((run_id, id(run), run.num_epochs, name), lambda: compute(run))

    def flipflops(self, run_id: str) -> pd.DataFrame:
        return self.cached(run_id, "flipflops", lambda r: r.flipflops())

    def oscillations(self, run_id: str) -> pd.DataFrame:
        return self.cached(run_id, "oscillations", lambda r: r.oscillations())

    def gradcam(self, run_id: str, sample_id: int, label: LabelKind) -> Any:
        run = self.run(run_id)
        key = (run_id, id(run), run.num_epochs, int(sample_id), label)
        model = self.model if self.model is not None and not run.trained_by_relabscope else None
        return self.gradcams.get(key, lambda: run.gradcam([int(sample_id)], label=label, model=model))

    def has_gradcam(self, run_id: str, sample_id: int, label: str) -> bool:
        run = self.run(run_id)
        return (run_id, id(run), run.num_epochs, int(sample_id), label) in self.gradcams

    # ------------------------------------------------------------------ URLs
    def href(self, page: str, run_id: str | None = None, **params: Any) -> str:
        """Link to ``page`` (e.g. "flipflops"; "" for the overview) with query params."""
        query = {"run": run_id} if run_id else {}
        query.update({k: v for k, v in params.items() if v is not None and v != ""})
        return self.prefix + page.strip("/") + ("?" + urlencode(query) if query else "")

    def image_url(self, run_id: str, sample_id: int, size: int = SIZES[0]) -> str:
        return image_url(self.prefix, run_id, sample_id, size)
