"""Every view on logs the Lightning callback wrote: the dashboard's pages (the sample page's
image included), ``relabscope report`` and Grad-CAM of the user's own model.

Two logs of the same training, images in a folder of PNG files whose relative paths are
the sample keys: one records the folder, the other records none and gets it when served
(``images={"": folder}``) or reported (``--images``). Grad-CAM needs the user's model: given
(``--model``, ``serve``'s too) it draws; without it the report lists Grad-CAM as not
available and why, never as failed, and the sample page's card says the same.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning.pytorch")

from PIL import Image  # noqa: E402

import relabscope as rs  # noqa: E402
from relabscope.errors import NotApplicable  # noqa: E402
from relabscope.models.spec import ModelSpec  # noqa: E402
from tests.integrations.lightning_run import TinyNet, fit  # noqa: E402
from tests.integrations.tiny import TinyData, make_data  # noqa: E402

EPOCHS = 4
#: the tiny data's pixels as uint8: value = 128 + 40 x (the generated float)
OFFSET, SCALE = 128.0, 40.0
#: the image route's sizes used here: 8 px images scale to them by whole factors
THUMB, BIG = 96, 224


@dataclass
class Logs:
    folder: Path            # the PNG files, by key
    pixels: np.ndarray      # (n, 8, 8) uint8, train then test: what the folder holds
    recorded: Path          # run directory whose log records the folder
    bare: Path              # run directory whose log records no images
    weights: Path           # the checkpoint Lightning saved after the last epoch
    model: TinyNet          # the trained module, in memory


def _as_pixels(x: torch.Tensor) -> np.ndarray:
    return np.clip(np.round(x[:, 0].numpy() * SCALE + OFFSET), 0, 255).astype(np.uint8)


def _as_input(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 or 0..255 float images (B, H, W) or (B, C, H, W) -> what TinyNet trains on."""
    x = pixels.float()
    x = x[:, :1] if x.dim() == 4 else x[:, None]
    return (x - OFFSET) / SCALE


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> Logs:
    root = tmp_path_factory.mktemp("callback-views")
    data = make_data()
    train, test = _as_pixels(data.x_train), _as_pixels(data.x_test)
    pixels = np.concatenate([train, test])
    keys = [f"train/{i:03d}.png" for i in range(len(train))] + [f"test/{i:03d}.png" for i in range(len(test))]
    folder = root / "with-folder" / "images"  # inside the folder served: a log's own images are read only there
    for key, img in zip(keys, pixels):
        (folder / key).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / key)
    # train on exactly the pixels in the folder
    quantised = TinyData(_as_input(torch.from_numpy(train)), data.y_train, data.clean,
                         _as_input(torch.from_numpy(test)), data.y_test)
    recorded, bare = root / "with-folder" / "tiny", root / "without" / "tiny"
    model, _, _ = fit(recorded, EPOCHS, data=quantised, checkpoints=root / "ckpt",
                      callback_options={"keys": keys, "images": folder, "image_size": 8})
    fit(bare, EPOCHS, data=quantised, callback_options={"keys": keys, "image_size": 8})
    return Logs(folder, pixels, recorded, bare, root / "ckpt" / f"epoch={EPOCHS - 1}.ckpt", model)


def test_the_logs_know_their_images(logs) -> None:
    with rs.open_run(logs.recorded) as run:
        assert run.has_images and run.image_source == f"folder:{logs.folder.resolve()}"
        np.testing.assert_array_equal(run.images([0, 100])[..., 0], logs.pixels[[0, 100]])
        events = len(run.relabel_events())
    with rs.open_run(logs.bare) as run:
        assert not run.has_images
        assert len(run.relabel_events()) == events > 0  # the same training


# ---------------------------------------------------------------------- dashboard
def _served(logs: Logs, which: str):
    from relabscope.dashboard import create_app

    if which == "recorded":
        app = create_app([logs.recorded.parent], refresh_seconds=0)
    elif which == "default":
        app = create_app([logs.bare.parent], refresh_seconds=0, images={"": logs.folder})
    else:
        app = create_app([logs.bare.parent], refresh_seconds=0)
    return app, app.server.test_client()


@pytest.fixture(scope="module", params=["recorded", "default"])
def served(request, logs):
    """The app over the log that records the folder, and over the one that records none,
    served with the folder for every such run."""
    return _served(logs, request.param)


def _page(app, client, page: str, search: str) -> tuple[dict, dict[str, object]]:
    """The page's layout as the router returns it, and every prop value on it and the shell."""
    from relabscope.dashboard import ids
    from relabscope.dashboard.harness import ROUTER, components, dash_call

    out = dash_call(app, client, ROUTER, {f"{ids.URL}.pathname": "/" + page, f"{ids.URL}.search": search})
    layout = out[ids.PAGE]["children"]
    values: dict[str, object] = {f"{ids.URL}.pathname": "/" + page, f"{ids.URL}.search": search,
                                 f"{ids.TICK}.n_intervals": 1, f"{ids.LIVE_VERSION}.data": out[ids.LIVE_VERSION]["data"]}
    for cid, comp in components(layout).items():
        for prop, value in comp["props"].items():
            values[f"{cid}.{prop}"] = value
    if f"{ids.MP_METHOD}.value" in values:
        values[f"{ids.MP_METHOD}.value"] = "pca"  # drawn at once; UMAP and t-SNE are other tests' business
    return layout, values


def _error_cards(tree) -> list[dict]:
    from relabscope.dashboard.harness import find

    return find(tree, lambda c: "error-card" in str(c["props"].get("className", "")))


def _png(client, url: str) -> np.ndarray:
    resp = client.get(url)
    assert resp.status_code == 200 and resp.mimetype == "image/png", (url, resp.status_code)
    return np.asarray(Image.open(io.BytesIO(resp.data)).convert("RGB"))


def _scaled(img: np.ndarray, size: int) -> np.ndarray:
    """An 8 x 8 grey image as the route serves it at ``size``: each pixel a block, RGB."""
    factor = size // img.shape[0]
    return np.repeat(np.repeat(img, factor, 0), factor, 1)[..., None].repeat(3, axis=2)


@pytest.mark.parametrize("page", ["", "flipflops", "sample", "map", "compactness", "compare"])
def test_every_page_and_callback_renders_without_an_error(served, page) -> None:
    from relabscope.dashboard import ids
    from relabscope.dashboard.harness import dash_call, find, key_outputs, page_callbacks, texts

    app, client = served
    layout, values = _page(app, client, page, "?run=tiny&against=tiny&sample=5")
    assert not _error_cards(layout), texts(_error_cards(layout))
    page_ids = {k.split(".")[0] for k in values} - {ids.URL, ids.LIVE_VERSION, ids.TICK}
    answered = {}
    for key, cb in page_callbacks(app.callback_map, page_ids, {ids.URL, ids.LIVE_VERSION, ids.TICK}):
        outputs = key_outputs(key)
        inputs = {f"{i['id']}.{i['property']}": values.get(f"{i['id']}.{i['property']}") for i in cb["inputs"]}
        state = {f"{s['id']}.{s['property']}": values.get(f"{s['id']}.{s['property']}") for s in cb["state"]}
        out = dash_call(app, client, outputs, inputs, state)
        assert not _error_cards(out), (outputs, texts(_error_cards(out)))
        answered.update(out)
    assert len(answered) >= 2, f"/{page} fired no callbacks"
    with rs.open_run(app.relabscope.registry.get("tiny").path) as run:
        if page == "":
            assert f"{len(run.relabel_events()):,}" in texts(answered[ids.OV_NUMBERS]["children"])
        if page == "map":
            figure = answered[ids.MP_GRAPH]["figure"]
            shown = sorted(int(point[0]) for t in figure["data"] for point in t.get("customdata") or [])
            assert shown == np.flatnonzero(run.train_mask).tolist()  # every training sample, once
        if page == "sample":
            [facts] = find(answered[ids.SM_FACTS]["children"], lambda c: c["type"] == "DataTable")
            assert {"field": "key", "value": "train/005.png"} in facts["props"]["data"]


def test_the_sample_page_shows_the_folders_pixels(served, logs) -> None:
    from relabscope.dashboard.harness import find

    app, client = served
    layout, _ = _page(app, client, "sample", "?run=tiny&sample=5")
    [src] = [c["props"]["src"] for c in find(layout, lambda c: c["type"] == "Img")]
    assert "run=tiny" in src and "sample=5" in src and f"size={BIG}" in src
    np.testing.assert_array_equal(_png(client, src), _scaled(logs.pixels[5], BIG))
    test_sample = len(logs.pixels) - 1  # a validation sample, found by its key too
    got = _png(client, f"/_relabscope/image?run=tiny&sample={test_sample}&size={THUMB}")
    np.testing.assert_array_equal(got, _scaled(logs.pixels[test_sample], THUMB))


def test_a_log_without_images_served_without_them_has_no_image(logs) -> None:
    app, client = _served(logs, "none")
    layout, _ = _page(app, client, "sample", "?run=tiny&sample=5")
    assert not _error_cards(layout)  # the page still renders, only the picture is missing
    assert client.get(f"/_relabscope/image?run=tiny&sample=5&size={THUMB}").status_code == 404


def _gradcam_card(app, client):
    from relabscope.dashboard import ids
    from relabscope.dashboard.harness import dash_call

    return dash_call(app, client, [f"{ids.SM_GRADCAM}.children"],
                     {f"{ids.SM_GRADCAM_GO}.n_clicks": 1, f"{ids.SM_ARGS}.data": {"run": "tiny", "sample": 5}})


def test_the_gradcam_card_says_what_it_needs_and_draws_with_the_model(logs) -> None:
    """Without a model: a note saying how to give one (no error card, no exception class,
    no path); served with ``--model``: the figure."""
    from relabscope.dashboard.app import create_app
    from relabscope.dashboard.harness import find, texts

    app, client = _served(logs, "recorded")
    out = _gradcam_card(app, client)
    assert not _error_cards(out)
    said = texts(out)
    assert "Grad-CAM is not available for a model relabscope did not build: give --model" in said
    assert "Error" not in said and str(logs.recorded) not in said
    spec = ModelSpec("tests.integrations.lightning_run:TinyNet", str(logs.weights), "backbone.0",
                     "tests.integrations.test_views_on_callback_logs:_as_input")
    app = create_app([logs.recorded.parent], refresh_seconds=0, host="127.0.0.1", model=spec)
    out = _gradcam_card(app, app.server.test_client())
    assert not _error_cards(out) and find(out, lambda c: c.get("type") == "Graph")


# ---------------------------------------------------------------------- report
#: TinyNet as the command line names it: its factory, the checkpoint, the layer, the input transform
MODEL_ARGS = ["--model", "tests.integrations.lightning_run:TinyNet", "--layer", "backbone.0",
              "--transform", "tests.integrations.test_views_on_callback_logs:_as_input"]


def _report(logs: Logs, out: Path, *extra: str):
    from click.testing import CliRunner

    from relabscope.cli import main

    result = CliRunner().invoke(main, ["report", str(logs.bare), "--out", str(out), "--no-png",
                                       "--images", str(logs.folder), *extra])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines() == [str(out / "index.html")]
    return result


def test_cli_report_draws_every_view_and_says_what_gradcam_needs(logs, tmp_path) -> None:
    """``relabscope report RUN --images FOLDER`` on the log that records none: every figure
    and table is written; Grad-CAM, which needs the user's model, is listed as not
    available with what to give, and no view failed."""
    out = tmp_path / "report"
    result = _report(logs, out)
    assert result.stderr.strip() == ""
    text = (out / "index.html").read_text()
    assert "class='error'" not in text and "Views that failed" not in text
    assert "Grad-CAM is not available for a model relabscope did not build: give --model" in text
    assert not list((out / "figures").glob("tiny__gradcam*"))
    figures = {p.name.split("__", 1)[1].removesuffix(".html") for p in (out / "figures").glob("tiny__*.html")}
    for view in ("accuracy", "class_accuracy", "confusion", "relabels_per_epoch", "class_counts", "label_flow",
                 "flipflops", "oscillations", "consistency", "consistency_by_lag", "gap_change",
                 "consistency_scatter", "compactness", "projection", "projection_given", "projection_flipflops",
                 "data_map", "noise_recovery", "noise_detection"):
        assert view in figures, view
        assert f"figures/tiny__{view}.html" in text
    with rs.open_run(logs.bare) as run:
        top = rs.plot.select_flipflopping(run.flipflops(), 3)["sample_id"].tolist()
        for sid in top:
            assert {f"distances_sample{sid}", f"timeline_sample{sid}", f"probabilities_sample{sid}"} <= figures
        for table in ("metrics", "flipflops", "consistency", "consistency_by_lag", "compactness", "dynamics",
                      "class_counts", "noise_detection"):
            assert (out / "tables" / f"tiny__{table}.csv").is_file(), table
        flips = np.loadtxt(out / "tables" / "tiny__flipflops.csv", delimiter=",", skiprows=1, usecols=0)
        assert len(flips) == int(run.train_mask.sum())


def test_cli_report_with_the_model_draws_gradcam_as_run_gradcam_does(logs, tmp_path) -> None:
    from relabscope.report import _chosen_samples

    out = tmp_path / "report"
    _report(logs, out, *MODEL_ARGS, "--weights", str(logs.weights))
    drawn = (out / "figures" / "tiny__gradcam.html").read_text()
    with rs.open_run(logs.bare, images=logs.folder) as run:
        chosen, _ = _chosen_samples(run, 4)
        expected = rs.plot.gradcam(run, chosen[:4], model=TinyNet, weights=logs.weights, layer="backbone.0",
                                   transform=_as_input)
    arrays = re.findall(r'"bdata":"([^"]+)"', expected.to_json())
    assert arrays and all(a in drawn for a in arrays)  # the same images and heat maps, byte for byte


def test_a_recorded_model_factory_needs_no_model_argument(tmp_path) -> None:
    """``model_factory=`` on the callback is stored in the log: Grad-CAM finds the model
    later without being told (here an untrained TinyNet: the factory's own weights)."""
    data = make_data()
    fit(tmp_path / "run", 1, data=data, callback_options={
        "model_factory": "tests.integrations.lightning_run:TinyNet", "cam_layer": "backbone.0", "image_size": 8,
        "images": _images_npy(tmp_path, data)})
    with rs.open_run(tmp_path / "run") as run:
        assert run.config["model"] == {"factory": "tests.integrations.lightning_run:TinyNet", "layer": "backbone.0"}
        cam = run.gradcam([0, 1], transform=_as_input)
    assert cam.heatmaps.shape == (2, 8, 8)


def _images_npy(folder: Path, data: TinyData) -> Path:
    path = folder / "images.npy"
    np.save(path, np.concatenate([_as_pixels(data.x_train), _as_pixels(data.x_test)]))
    return path


# ---------------------------------------------------------------------- Grad-CAM
def _gradcam(run, ids, logs: Logs, **options):
    return run.gradcam(ids, model=TinyNet, weights=logs.weights, layer="backbone.0", image_size=8,
                       transform=_as_input, **options)


def test_gradcam_of_the_users_model_from_its_lightning_checkpoint(logs) -> None:
    ids = [3, 5, 100]
    with rs.open_run(logs.recorded) as run:
        cam = _gradcam(run, ids, logs, label="effect")
        np.testing.assert_array_equal(cam.labels, run.final_labels()[ids])
        with pytest.raises(NotApplicable, match="give --model"):
            run.gradcam(ids)  # without a model: none recorded, and this run has no relabscope checkpoint
    np.testing.assert_array_equal(cam.images[..., 0], logs.pixels[ids])
    logs.model.eval()
    with torch.no_grad():  # the trained weights, loaded from the checkpoint, on the folder's pixels
        expected = logs.model(_as_input(torch.from_numpy(logs.pixels[ids]))).softmax(1).numpy()
    np.testing.assert_allclose(cam.probabilities, expected, rtol=1e-5, atol=1e-6)
    assert cam.heatmaps.shape == (3, 8, 8) and cam.heatmaps.min() >= 0 and cam.heatmaps.max() <= 1
    assert all(m.max() in (0.0, 1.0) for m in cam.heatmaps)  # each map normalised to its peak (or empty)
    assert (cam.heatmaps.reshape(3, -1).max(1) == 1).any()


def test_gradcam_reads_the_folder_given_at_open(logs) -> None:
    with rs.open_run(logs.bare, images=logs.folder) as run:
        cam = _gradcam(run, [7], logs, label="given")
    np.testing.assert_array_equal(cam.images[0, ..., 0], logs.pixels[7])
