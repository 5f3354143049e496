"""The embedding map's images, called as the browser calls them: the hover card of a point
(its image, sample id and labels) and the grid a lasso fills (which samples, in what order,
how many, linking where), with text only for a run without images and the log's own
pixels for a run that recorded an image array; the figure itself carries no image URL."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from relabscope.dashboard import embedding_map as mppage
from relabscope.dashboard import ids
from relabscope.dashboard.harness import dash_call, find, texts
from relabscope.plot._style import display_order

TIP = [f"{ids.MP_TOOLTIP}.children"]
GRID = [f"{ids.MP_GRID}.children"]
MAP = [f"{ids.MP_GRAPH}.figure", f"{ids.MP_STATUS}.children", f"{ids.MP_POLL}.disabled"]
#: the PCA map: drawn at once (UMAP / t-SNE are the other tests' business)
PICKS = {f"{ids.MP_METHOD}.value": "pca", f"{ids.MP_EPOCH}.value": None, f"{ids.MP_CLASSES}.value": None}


def _state(run_id="scn", colour="effect"):
    return {f"{ids.MP_ARGS}.data": {"run": run_id}, f"{ids.MP_COLOUR}.value": colour}


def _hover(app, client, sid, run_id="scn", colour="effect"):
    hover = {"points": [{"curveNumber": 0, "pointNumber": 0, "customdata": [str(sid)],
                         "bbox": {"x0": 10, "x1": 16, "y0": 20, "y1": 26}}]}
    out = dash_call(app, client, TIP, {f"{ids.MP_GRAPH}.hoverData": hover}, {**PICKS, **_state(run_id, colour)})
    return out[ids.MP_TOOLTIP]["children"]


def _grid(app, client, sample_ids, run_id="scn", colour="effect", changed=f"{ids.MP_GRAPH}.selectedData", **picks):
    selected = {"points": [{"curveNumber": 0, "customdata": [str(s)]} for s in sample_ids]} if sample_ids else None
    out = dash_call(app, client, GRID, {f"{ids.MP_GRAPH}.selectedData": selected, **PICKS, **picks},
                    _state(run_id, colour), changed=[changed])
    return out[ids.MP_GRID]["children"]


def _images(component):
    return [c["props"]["src"] for c in find(component, lambda c: c["type"] == "Img")]


def _tiles(component):
    return find(component, lambda c: c["type"] == "Link" and c["props"].get("className") == "sample-tile")


def _tile_id(tile) -> int:
    return int(tile["props"]["href"].rsplit("sample=", 1)[1])


def _write_log(folder, images=None, n_train: int = 40, n_test: int = 8, k: int = 3, seed: int = 0) -> None:
    """A two-epoch log written through RunLogWriter: no data set in its config, so its
    pixels are ``images`` (None: it has none)."""
    from relabscope.runlog import RunLogWriter, SampleTable

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    given = rng.integers(0, k, n)
    samples = SampleTable(key=[f"face/{i:03d}.png" for i in range(n)],
                          split=np.r_[np.zeros(n_train), np.ones(n_test)], given_label=given)
    with RunLogWriter.create(folder, samples, ["neutral", "happiness", "anger"][:k], embed_dim=4,
                             images=images) as log:
        for _ in range(2):
            emb = (np.eye(k, 4)[given] * 5 + rng.normal(0, 1, (n, 4))).astype(np.float32)
            logits = rng.normal(0, 1, (n, k)).astype(np.float32)
            train, test = np.arange(n_train), np.arange(n_train, n)
            log.log_batch(train, given[train], logits[train], emb[train], loss=rng.random(n_train))
            log.log_batch(test, given[test], logits[test], emb[test], phase="test")
            log.end_epoch(lr=0.001, seconds=1.0, save_embeddings=True)


@pytest.fixture(scope="module")
def own_pixels(tmp_path_factory):
    """An app over two logs relabscope did not train: ``bare`` (no pixels anywhere) and
    ``pixels`` (its pixels an .npy array recorded in the log), and that array."""
    from relabscope.dashboard import create_app

    root = tmp_path_factory.mktemp("own-pixels")
    pixels = np.random.default_rng(1).integers(0, 256, (48, 8, 8, 3), dtype=np.uint8)
    (root / "runs").mkdir()
    np.save(root / "runs" / "faces.npy", pixels)  # inside the folder served: a log's own images are read only there
    _write_log(root / "runs" / "bare")
    _write_log(root / "runs" / "pixels", images=root / "runs" / "faces.npy")
    app = create_app([root / "runs"], refresh_seconds=0)
    return app, app.server.test_client(), pixels


@pytest.fixture(scope="module")
def pca(app):
    run = app.relabscope.run("scn")
    epoch = run.embedding_epochs()[-1]
    return run, epoch, run.project("pca", epoch, max_points=app.relabscope.max_points)


# ---------------------------------------------------------------------- hover card
def test_hover_card_shows_the_samples_image_and_labels(app, client, pca) -> None:
    run, epoch, df = pca
    names = run.class_names
    moved = df[df["label"] != df["given_label"]]
    sid = int((moved if len(moved) else df)["sample_id"].iloc[0])
    card = _hover(app, client, sid)
    assert _images(card) == [f"/_relabscope/image?run=scn&sample={sid}&size={mppage.TIP_PX}"]
    shown = texts(card)
    assert f"sample {sid}" in shown
    assert f"given: {names[run.given_labels[sid]]}" in shown
    assert f"in effect: {names[run.labels()[epoch, sid]]} (epoch {epoch})" in shown
    assert f"clean: {names[run.clean_labels[sid]]}" in shown
    # the URL the card names serves that sample's picture at the card's width
    resp = client.get(_images(card)[0])
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    picture = Image.open(io.BytesIO(resp.data))
    assert picture.width == mppage.TIP_PX
    native = run.images([sid], size=mppage.TIP_PX)[0]  # the data set's own size when smaller (32 px)
    step = mppage.TIP_PX // native.shape[1]  # scaled up by repeating pixels
    assert np.array_equal(np.asarray(picture.convert("RGB"))[::step, ::step], native)


def test_hover_card_says_the_number_the_map_is_coloured_by(app, client, pca) -> None:
    run, _, df = pca
    flip = run.flipflops().set_index("sample_id")["flipflops"]
    sid = int(flip.loc[df["sample_id"]].idxmax())
    assert f"flip-flops: {int(flip[sid])}" in texts(_hover(app, client, sid, colour="flipflops"))
    assert "flip-flops" not in texts(_hover(app, client, sid, colour="given"))


def test_unhover_and_points_off_the_map_leave_the_card(app, client, pca) -> None:
    _, _, df = pca
    off_map = int(app.relabscope.run("scn").train_mask.size - 1)  # a test sample: never on the train map
    assert off_map not in set(df["sample_id"])
    assert _hover(app, client, off_map) is None
    gone = dash_call(app, client, TIP, {f"{ids.MP_GRAPH}.hoverData": None}, {**PICKS, **_state()})
    assert gone == {}  # nothing to update: the clientside callback hides the card


def test_a_run_without_images_shows_text_only(own_pixels) -> None:
    app, client, _ = own_pixels
    assert not app.relabscope.run("bare").has_images
    card = _hover(app, client, 3, run_id="bare")
    assert _images(card) == [] and "sample 3" in texts(card) and "given: " in texts(card)
    assert "clean:" not in texts(card)  # the log knows no clean labels
    tiles = _tiles(_grid(app, client, [1, 2, 3], run_id="bare"))
    assert sorted(_tile_id(t) for t in tiles) == [1, 2, 3] and _images(tiles) == []


def test_a_run_shows_the_pixels_its_log_recorded(own_pixels) -> None:
    app, client, pixels = own_pixels
    card = _hover(app, client, 5, run_id="pixels")
    assert _images(card) == [f"/_relabscope/image?run=pixels&sample=5&size={mppage.TIP_PX}"]
    picture = np.asarray(Image.open(io.BytesIO(client.get(_images(card)[0]).data)).convert("RGB"))
    step = mppage.TIP_PX // pixels.shape[2]
    assert picture.shape == (mppage.TIP_PX, mppage.TIP_PX, 3) and np.array_equal(picture[::step, ::step], pixels[5])
    grid = _grid(app, client, [7, 2], run_id="pixels")
    assert len(_images(grid)) == 2


# ---------------------------------------------------------------------- lasso grid
def test_grid_shows_the_first_selected_in_colour_order_and_links_them(app, client, pca) -> None:
    run, epoch, df = pca
    ctx = app.relabscope
    selected = df["sample_id"].tolist() + [int(run.train_mask.size - 1)]  # plus one sample not on the map
    assert len(df) > mppage.GRID_CAP
    flip = run.flipflops().set_index("sample_id")["flipflops"]
    grid = _grid(app, client, selected, colour="flipflops")
    tiles = _tiles(grid)
    shown = [_tile_id(t) for t in tiles]
    assert len(shown) == mppage.GRID_CAP
    want = sorted(df["sample_id"], key=lambda s: (-flip[s], s))[:mppage.GRID_CAP]
    assert shown == want  # most flip-flops first, then by sample id
    assert f"{mppage.GRID_CAP} of {len(df)} selected samples, most flip-flops first" in texts(grid)
    assert f"{len(df) - mppage.GRID_CAP} more in the table below" in texts(grid)
    for tile, sid in zip(tiles, shown):
        assert tile["props"]["href"] == f"/sample?run=scn&sample={sid}"  # as the rest of the dashboard links
        assert _images(tile) == [f"/_relabscope/image?run=scn&sample={sid}&size={mppage.TILE_PX}"]
        effect, given = run.class_names[run.labels()[epoch, sid]], run.class_names[run.given_labels[sid]]
        caption = f"{sid} {effect}" + (f" given {given}" if given != effect else "") + f" flip-flops {flip[sid]}"
        assert caption in texts(tile)
    # decoded in one batch before the browser asks: every thumbnail is in the image cache
    scn = ctx.run("scn")
    assert all(("scn", id(scn), sid, mppage.TILE_PX) in ctx.images.memo for sid in shown)


def test_grid_by_a_label_colouring_groups_classes_relabelled_first(app, client, pca) -> None:
    run, epoch, df = pca
    few = df["sample_id"].iloc[::3].tolist()
    assert len(few) < mppage.GRID_CAP
    grid = _grid(app, client, few, colour="given")
    shown = [_tile_id(t) for t in _tiles(grid)]
    legend = display_order(run.class_names)
    effect = run.labels()[epoch]
    relabelled = [s for s in few if effect[s] != run.given_labels[s]]
    assert relabelled, "the tiny scn run relabels"
    assert shown == sorted(few, key=lambda s: (legend.index(run.given_labels[s]), s not in relabelled, s))
    assert "more in the table" not in texts(grid)
    assert (f"{len(few)} of {len(few)} selected samples, a share of each given label, relabelled ones first"
            in texts(grid))


def test_grid_is_cleared_with_the_selection_and_by_another_map(app, client, pca) -> None:
    run, _, df = pca
    chosen = df["sample_id"].iloc[:5].tolist()
    assert len(_tiles(_grid(app, client, chosen))) == 5
    assert _grid(app, client, None) is None
    assert _grid(app, client, chosen, changed=f"{ids.MP_METHOD}.value", **{f"{ids.MP_METHOD}.value": "tsne"}) is None
    # another colouring of the same map keeps the selection, in its own order
    flip = run.flipflops().set_index("sample_id")["flipflops"]
    recoloured = _grid(app, client, chosen, colour="flipflops", changed=f"{ids.MP_COLOUR}.value")
    assert [_tile_id(t) for t in _tiles(recoloured)] == sorted(chosen, key=lambda s: (-flip[s], s))


def test_grid_ids_by_a_number_and_by_a_label() -> None:
    df = pd.DataFrame({"sample_id": [5, 3, 9, 1, 7, 4, 8], "x": 0.0, "y": 0.0, "label": [2, 0, 2, 1, 0, 0, 0],
                       "given_label": [0, 0, 2, 1, 0, 0, 2], "clean_label": [1, -1, 0, 1, -1, 0, 0]})
    names = ["fear", "neutral", "happiness"]  # the legend's order: neutral (1), happiness (2), fear (0)
    every = [5, 3, 9, 1, 7, 4, 8, 42]  # 42: not on the map
    aum = pd.Series({5: 0.4, 3: np.nan, 9: -1.0, 1: 0.4, 7: 2.0, 4: 3.0, 8: 5.0})
    assert mppage.grid_ids(df, every, names, "aum_given", aum) == ([9, 1, 5, 7, 4, 8, 3], 7)  # lowest first
    flips = pd.Series({5: 1, 3: 4, 9: 0, 1: 4, 4: 2, 8: 2})  # 7: no value
    assert mppage.grid_ids(df, every, names, "flipflops", flips, cap=4) == ([1, 3, 4, 8], 7)
    # by class in the legend's order; relabelled first (5: happiness, given fear; 8: fear, given happiness)
    assert mppage.grid_ids(df, every, names, "effect") == ([1, 5, 9, 8, 3, 4, 7], 7)
    # four tiles: each class's first, then the second of those with more; grouped by class
    assert mppage.grid_ids(df, every, names, "effect", cap=4) == ([1, 5, 9, 8], 7)
    assert mppage.grid_ids(df, every, names, "clean") == ([5, 1, 8, 4, 9, 3, 7], 7)  # no clean label: last
    assert mppage.grid_ids(df, [42], names, "effect") == ([], 0)


# ---------------------------------------------------------------------- the figure
def test_the_figure_carries_sample_ids_not_images(app, client) -> None:
    out = dash_call(app, client, MAP, {**PICKS, **_state(), f"{ids.LIVE_VERSION}.data": None,
                                       f"{ids.MP_POLL}.n_intervals": None})
    fig = out[ids.MP_GRAPH]["figure"]
    assert "_relabscope/image" not in json.dumps(fig)
    points = [t for t in fig["data"] if t.get("customdata")]
    assert points and all(t["hoverinfo"] == "none" and "hovertemplate" not in t for t in points)
