"""Sample images as PNG, by (run id, sample id), for thumbnails and the sample inspector.

``GET <prefix>_relabscope/image?run=RUN&sample=N&size=S``. The run is looked up in the
registry (unknown ids are 404), the sample id must be a plain non-negative integer below
the run's sample count and the size one of ``SIZES``; anything else is 404. The pixels come
from ``Run.images`` (the data set the run's config names, found by the sample's key), so
no request parameter ever becomes part of a file path. PNGs are kept in an LRU cache;
``ImageStore.prefetch`` decodes a whole table page in one batch.
"""

from __future__ import annotations

import io
import re
from functools import partial
from typing import Iterable
from urllib.parse import urlencode

import numpy as np
from flask import Response, request
from PIL import Image

from relabscope.dashboard.cache import Memo
from relabscope.dashboard.registry import RunRegistry, RunUnavailable

ROUTE = "/_relabscope/image"
SIZES = (48, 96, 160, 224)
_INT = re.compile(r"[0-9]{1,12}")


class ImageError(Exception):
    """A request for an image that does not exist (shown as 404)."""


class ImageStore:
    def __init__(self, registry: RunRegistry, max_items: int = 4096):
        self.registry = registry
        self.memo = Memo(max_items)

    def parse(self, run_id: object, sample: object, size: object = None) -> tuple[str, int, int]:
        """Validated (run id, sample id, size); raises ImageError otherwise."""
        if not isinstance(run_id, str) or run_id not in self.registry:
            raise ImageError("unknown run")
        if not isinstance(sample, str) or not _INT.fullmatch(sample):
            raise ImageError("sample must be a non-negative integer")
        try:
            run = self.registry.get(run_id)
        except RunUnavailable as exc:
            raise ImageError(str(exc)) from None
        sid = int(sample)
        if sid >= len(run.samples):
            raise ImageError("sample id out of range")
        if size in (None, ""):
            px = SIZES[1]
        elif isinstance(size, str) and _INT.fullmatch(size) and int(size) in SIZES:
            px = int(size)
        else:
            raise ImageError(f"size must be one of {SIZES}")
        return run_id, sid, px

    def _key(self, run_id: str, sid: int, px: int) -> tuple:
        run = self.registry.get(run_id)
        return (run_id, id(run), sid, px)

    def png(self, run_id: str, sid: int, px: int) -> bytes:
        """PNG bytes of one sample, ``px`` pixels wide (after validation by ``parse``)."""
        run = self.registry.get(run_id)
        return self.memo.get(self._key(run_id, sid, px), lambda: _encode(run.images([sid], size=px)[0], px))

    def prefetch(self, run_id: str, sample_ids: Iterable[int], px: int = SIZES[0]) -> None:
        """Decode the images of ``sample_ids`` in one batch into the cache (best effort)."""
        try:
            run = self.registry.get(run_id)
            ids = [int(s) for s in sample_ids if (run_id, id(run), int(s), px) not in self.memo]
            if not ids:
                return
            pixels = run.images(ids, size=px)
        except Exception:
            return  # the image route reports the problem per image
        for sid, img in zip(ids, pixels):
            self.memo.get((run_id, id(run), sid, px), partial(_encode, img, px))


def _encode(pixels: np.ndarray, px: int) -> bytes:
    img = Image.fromarray(np.asarray(pixels, dtype=np.uint8))
    if img.width != px:
        h = max(1, round(img.height * px / img.width))
        img = img.resize((px, h), Image.Resampling.NEAREST if img.width * 2 <= px else Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def image_url(prefix: str, run_id: str, sample_id: int, size: int = SIZES[0]) -> str:
    """The URL of a sample's image (``prefix``: the app's path prefix, e.g. ``/``)."""
    return prefix.rstrip("/") + ROUTE + "?" + urlencode({"run": run_id, "sample": int(sample_id), "size": int(size)})


def register_route(server, store: ImageStore, prefix: str = "/") -> None:
    """Add the image route to the Flask ``server`` under the app's route ``prefix``."""
    def sample_image() -> Response:
        try:
            run_id, sid, px = store.parse(request.args.get("run"), request.args.get("sample"),
                                          request.args.get("size"))
            data = store.png(run_id, sid, px)
        except (ImageError, RunUnavailable) as exc:
            return Response(f"not found: {exc}", status=404, mimetype="text/plain")
        except Exception as exc:  # the data set moved, a decode failed: no image, same answer
            return Response(f"not found: image unavailable ({type(exc).__name__})", status=404,
                            mimetype="text/plain")
        resp = Response(data, mimetype="image/png")
        resp.headers["Cache-Control"] = "private, max-age=300"
        return resp

    server.add_url_rule(prefix.rstrip("/") + ROUTE, "relabscope_sample_image", sample_image, methods=["GET"])
