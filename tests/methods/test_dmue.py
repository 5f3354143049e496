"""DMUE and DMUE-C (relabscope/methods/dmue.py) against the reference facts
(docs/methods.md, "DMUE and DMUE-C", which cites the DMUE paper and code), each recomputed here in float64:

- routing: auxiliary branch c trains on exactly the samples not labelled c, and reads the
  latent distribution (eval mode, no gradient) of exactly those labelled c;
- the latent label distribution (softmax of branch c, sharpened with T, 0 inserted at c);
- the small helpers (label shift, sharpening, zero insertion, the two ramps);
- the pairwise-uncertainty input ``m_ik`` (mean cosine similarity, min-max normalised);
- L_soft and the structure-preserving loss (row-normalised Gram matrices);
- the whole step: L = r_up (L_main + 0.5 L_soft + w_sp L_sp) + r_down L_aux (w_sp 1000 by
  default, as the reference), every part
  recomputed from the network's pieces in float64;
- DMUE-C's center term on the 512-d target feature, the frozen-uncertainty option, and
  pretrained layer4 weights copied into every auxiliary branch.

Reference values are loops or float64 code written from the description, never the
function under test; tiny batches (B 8-10, K 3-4) at 32 px keep this a few seconds.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from relabscope.config import resolve
from relabscope.methods import build_method
from relabscope.methods.dmue import (
    class_similarity,
    gram_rows,
    insert_zero,
    ramp_down,
    ramp_up,
    route,
    sharpen,
    shift_labels,
    soft_loss,
)
from relabscope.models import build_backbone
from relabscope.training.optim import build_optimizer

SIZE = 32
K = 4
# class 3 absent: an absent class must add no branch loss, no latent rows, no similarity column
LABELS_ABSENT = [0, 1, 2, 0, 1, 0, 2, 1, 0, 2]
LABELS_ALL = [0, 1, 2, 3, 1, 0, 2, 3, 0, 1]


def _cfg(method: str = "dmue", **kw):
    return resolve({"method": method, "dataset": "synthetic", **kw})


def _model(method: str = "dmue", seed: int = 0, sharp_heads: bool = True, **kw):
    """A K-class model; ``sharp_heads`` re-initialises the (std 0.001) classifiers larger so
    softmaxes are far from uniform and the checks have something to bite on."""
    torch.manual_seed(seed)
    cfg = _cfg(method, **kw)
    model = build_method(method, K, cfg)
    if sharp_heads:
        with torch.no_grad():
            for layer in [*model.branch_fc, model.fc]:
                layer.weight.normal_(0.0, 0.3)
    model.train()
    return model, cfg


def _images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ce64(z: np.ndarray, y: int) -> float:
    m = float(z.max())
    return m + math.log(sum(math.exp(float(v) - m) for v in z)) - float(z[y])


def _r_up(e: float, a: float) -> float:
    return math.exp(-5.0 * (1.0 - e / a) ** 2) if e <= a else 1.0


def _r_down(e: float, a: float) -> float:
    return 1.0 if e < a else math.exp(-((1.0 - a / e) ** 2))


def _class_similarity64(f: np.ndarray, y: list[int], k: int, mask_absent: bool = True) -> np.ndarray:
    """The pairwise class similarity in float64 loops; an absent class gets the mean of the
    row's present entries (``mask_absent``) or 0."""
    n = len(y)
    unit = f / np.linalg.norm(f, axis=1, keepdims=True)
    s = unit @ unit.T
    present = [c for c in range(k) if c in y]
    out = np.zeros((n, k))
    for i in range(n):
        means = {c: float(np.mean([s[i, j] for j in range(n) if y[j] == c])) for c in present}
        lo, hi = min(means.values()), max(means.values())
        for c in present:
            out[i, c] = (means[c] - lo) / (hi - lo) if hi > lo else 0.0
        if mask_absent:
            neutral = float(np.mean([out[i, c] for c in present]))
            for c in set(range(k)) - set(present):
                out[i, c] = neutral
    return out


def _gram_rows64(x: np.ndarray) -> np.ndarray:
    g = x @ x.T
    return g / np.linalg.norm(g, axis=1, keepdims=True)


def _latent_row64(logits: np.ndarray, c: int, temperature: float) -> np.ndarray:
    p = _softmax64(logits) ** (1.0 / temperature)
    p = p / p.sum()
    return np.concatenate([p[:c], [0.0], p[c:]])


def _pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3))


# ---------------------------------------------------------------------------- routing
@pytest.mark.parametrize("labels", [LABELS_ABSENT, LABELS_ALL, [2, 2, 2, 2]])
def test_route_partitions_batch_by_label(labels: list[int]) -> None:
    same, other = route(torch.tensor(labels), K)
    assert len(same) == len(other) == K
    for c in range(K):
        with_c = {i for i, y in enumerate(labels) if y == c}
        assert sorted(same[c].tolist()) == sorted(with_c)
        assert sorted(other[c].tolist()) == sorted(set(range(len(labels))) - with_c)
        assert len(same[c]) + len(other[c]) == len(labels)  # no duplicates
    assert sorted(torch.cat(same).tolist()) == list(range(len(labels)))  # same[] partitions the batch


def test_branches_see_the_right_rows_in_training_and_latent_calls() -> None:
    model, _ = _model()
    labels = torch.tensor(LABELS_ABSENT)
    images = _images(len(labels))
    captured: dict[str, torch.Tensor] = {}
    calls: list[dict] = []

    def grab_shared(module, args, output):
        captured["shared"] = output.detach()

    def make_hook(c):
        def hook(module, args):
            calls.append({
                "branch": c,
                "grad": torch.is_grad_enabled(),
                "training": [m.training for m in module.modules()],
                "neck_training": model.branch_stats.training,  # the statistics the branches use
                "rows": args[0].detach().clone(),
            })
        return hook

    handles = [model.backbone.layer3.register_forward_hook(grab_shared)]
    handles += [b.register_forward_pre_hook(make_hook(c)) for c, b in enumerate(model.branches)]
    try:
        model.training_step(images, labels, epoch=0)
    finally:
        for h in handles:
            h.remove()

    shared = captured["shared"]

    def row_ids(x: torch.Tensor) -> list[int]:
        ids = []
        for r in x:
            hits = [j for j in range(shared.shape[0]) if torch.equal(shared[j], r)]
            assert len(hits) == 1
            ids.append(hits[0])
        return ids

    for c in range(K):
        train_calls = [d for d in calls if d["branch"] == c and d["grad"]]
        latent_calls = [d for d in calls if d["branch"] == c and not d["grad"]]
        assert len(train_calls) == 1
        ids = row_ids(train_calls[0]["rows"])
        assert all(labels[i].item() != c for i in ids)  # never a row labelled c
        assert sorted(ids) == [i for i in range(len(labels)) if labels[i] != c]
        assert all(train_calls[0]["training"]) and train_calls[0]["neck_training"]
        if c in LABELS_ABSENT:
            assert len(latent_calls) == 1
            ids = row_ids(latent_calls[0]["rows"])
            assert sorted(ids) == [i for i in range(len(labels)) if labels[i] == c]
            assert not any(latent_calls[0]["training"])  # every module of the branch in eval
            assert not latent_calls[0]["neck_training"]
        else:
            assert latent_calls == []  # absent class: no latent call
        # the latent call comes before the branch's training call
        order = [d["grad"] for d in calls if d["branch"] == c]
        assert order == sorted(order)
    assert all(m.training for b in model.branches for m in b.modules())
    assert model.neck.training and model.branch_stats.training


# ---------------------------------------------------------------------------- latent
def test_latent_distribution_matches_eval_mode_branch_in_float64() -> None:
    model, cfg = _model()
    model.dropout.p = 0.0
    labels_list = LABELS_ALL
    labels = torch.tensor(labels_list)
    images = _images(len(labels))
    ref = copy.deepcopy(model).double()  # the state the step starts from

    out = model.training_step(images, labels, epoch=0)
    latent = out.fields["latent"].detach().double().numpy()
    assert out.fields["latent"].shape == (len(labels), K)

    for i, c in enumerate(labels_list):
        assert latent[i, c] == 0.0
    assert (latent >= 0).all()
    np.testing.assert_allclose(latent.sum(axis=1), 1.0, rtol=1e-6)

    with torch.no_grad():
        x = images.double()
        shared = ref.backbone.stem(x)  # train mode: batch statistics, as in the step
        for m in (*ref.branches, ref.branch_stats):
            m.eval()
        for i, c in enumerate(labels_list):
            h = ref.branch_fc[c](ref.branch_neck(_pool(ref.branches[c](shared[i:i + 1]))))
            expected = _latent_row64(h[0].numpy(), c, cfg.dmue_temperature)
            np.testing.assert_allclose(latent[i], expected, rtol=1e-4, atol=1e-6)
    assert cfg.dmue_temperature == pytest.approx(1.2)
    assert latent.max() > 1.5 / (K - 1)  # not a near-uniform distribution: the check has teeth


# ---------------------------------------------------------------------------- helpers
def test_shift_labels_sharpen_insert_zero_match_formulas() -> None:
    labels = [0, 1, 2, 3, 4, 5, 6, 3, 0]
    k = 7
    for c in range(k):
        keep = [y for y in labels if y != c]
        got = shift_labels(torch.tensor(keep), c).tolist()
        assert got == [y if y < c else y - 1 for y in keep]
        assert all(0 <= g <= k - 2 for g in got)

    rng = np.random.default_rng(4)
    probs = _softmax64(rng.normal(scale=2.0, size=(6, 5)))
    for t in (0.5, 1.0, 1.2, 3.0):
        got = sharpen(torch.tensor(probs), t).numpy()
        for i in range(6):
            num = [p ** (1.0 / t) for p in probs[i]]
            np.testing.assert_allclose(got[i], [v / sum(num) for v in num], rtol=1e-12)
    assert np.argmax(sharpen(torch.tensor(probs), 1.2).numpy(), 1).tolist() == np.argmax(probs, 1).tolist()
    # T > 1 flattens (the reference's T = 1.2): the largest entry shrinks
    assert (sharpen(torch.tensor(probs), 1.2).numpy().max(1) <= probs.max(1) + 1e-15).all()

    dist = torch.tensor(rng.uniform(size=(3, 4)))
    for c in range(5):
        got = insert_zero(dist, c).numpy()
        assert got.shape == (3, 5)
        for i in range(3):
            row = dist[i].tolist()
            np.testing.assert_array_equal(got[i], row[:c] + [0.0] + row[c:])


def test_ramps_match_formulas() -> None:
    a = resolve({"method": "dmue", "dataset": "rafdb"}).dmue_ramp  # the reference's a (synthetic: 3)
    assert a == 6.0
    for e in range(13):
        assert ramp_up(e, a) == pytest.approx(_r_up(e, a), rel=1e-12)
        assert ramp_down(e, a) == pytest.approx(_r_down(e, a), rel=1e-12)
    assert ramp_up(0, a) == pytest.approx(math.exp(-5.0), rel=1e-12)
    assert ramp_up(6, a) == 1.0 and ramp_up(12, a) == 1.0
    assert ramp_down(0, a) == 1.0 and ramp_down(6, a) == 1.0
    assert ramp_down(12, a) == pytest.approx(math.exp(-0.25), rel=1e-12)
    ups = [ramp_up(e, a) for e in range(13)]
    downs = [ramp_down(e, a) for e in range(13)]
    assert ups == sorted(ups) and downs == sorted(downs, reverse=True)


# ---------------------------------------------------------------------------- similarity
@pytest.mark.parametrize("mask_absent", [True, False])
@pytest.mark.parametrize("labels", [LABELS_ABSENT, LABELS_ALL])
def test_class_similarity_matches_float64(labels: list[int], mask_absent: bool) -> None:
    rng = np.random.default_rng(5)
    f = rng.normal(size=(len(labels), 12)) + 0.5
    expected = _class_similarity64(f, labels, K, mask_absent)
    got = class_similarity(torch.tensor(f), torch.tensor(labels), K, mask_absent)
    assert got.shape == (len(labels), K)
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-5, atol=1e-6)
    got = got.numpy()
    assert (got >= 0).all() and (got <= 1 + 1e-6).all()
    present = sorted(set(labels))
    for i in range(len(labels)):  # min-max: each row's present classes reach 0 and 1
        assert got[i, present].min() == pytest.approx(0.0, abs=1e-6)
        assert got[i, present].max() == pytest.approx(1.0, abs=1e-6)
    for c in set(range(K)) - set(labels):  # absent: no evidence (the row's mean), or "least similar" (0)
        want = got[:, present].mean(axis=1) if mask_absent else np.zeros(len(labels))
        np.testing.assert_allclose(got[:, c], want, atol=1e-6)
        assert mask_absent or (got[:, c] == 0).all()


def test_class_similarity_counts_self_and_is_scale_invariant() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    y = torch.tensor([0, 1, 1])
    got = class_similarity(f, y, 2).numpy()
    np.testing.assert_allclose(got, _class_similarity64(f.numpy(), [0, 1, 1], 2), atol=1e-12)
    # row 0: class 0 = {self: 1}, class 1 = {0, 1/sqrt2}/2 -> 1 and 0 after min-max
    np.testing.assert_allclose(got[0], [1.0, 0.0], atol=1e-12)
    torch.testing.assert_close(class_similarity(f * torch.tensor([[3.0], [0.5], [7.0]], dtype=torch.float64), y, 2),
                               torch.tensor(got))


# ---------------------------------------------------------------------------- soft and sp
def test_soft_loss_matches_float64() -> None:
    rng = np.random.default_rng(6)
    b, k = 9, 5
    z = rng.normal(scale=2.0, size=(b, k))
    y = rng.integers(0, k, b)
    d = rng.uniform(size=(b, k))
    d[np.arange(b), y] = 0.0
    d /= d.sum(1, keepdims=True)
    total = 0.0
    for i in range(b):
        p = _softmax64(z[i])
        for j in range(k):
            q = 0.0 if j == y[i] else p[j]
            total += (q - d[i, j]) ** 2
    got = soft_loss(torch.tensor(z), torch.tensor(y), torch.tensor(d)).item()
    assert got == pytest.approx(total / (b * k), rel=1e-6)


def test_gram_rows_and_structure_loss_match_float64() -> None:
    rng = np.random.default_rng(7)
    n = 7
    a = rng.normal(size=(n, K - 1))  # a branch's logits
    h = rng.normal(size=(n, 512))  # the target's head input over the same rows
    ga, gh = _gram_rows64(a), _gram_rows64(h)
    got_a = gram_rows(torch.tensor(a)).double().numpy()
    np.testing.assert_allclose(got_a, ga, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got_a, axis=1), 1.0, rtol=1e-6)
    sp = sum((ga[i, j] - gh[i, j]) ** 2 for i in range(n) for j in range(n)) / (n * n)
    got = F.mse_loss(gram_rows(torch.tensor(a)), gram_rows(torch.tensor(h))).item()
    assert got == pytest.approx(sp, rel=1e-5)


# ---------------------------------------------------------------------------- full step
@pytest.mark.parametrize("epoch", [0, 6, 10])
def test_step_loss_is_ramped_sum_of_parts(epoch: int) -> None:
    model, cfg = _model()
    model.dropout.p = 0.0
    labels = torch.tensor(LABELS_ALL)
    out = model.training_step(_images(len(labels)), labels, epoch=epoch)
    p = {k: v.item() for k, v in out.parts.items()}
    a = cfg.dmue_ramp
    expected = _r_up(epoch, a) * (p["main"] + 0.5 * p["soft"] + cfg.dmue_sp_weight * p["sp"]) + _r_down(epoch, a) * p["aux"]
    assert p["center"] == 0.0
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)
    assert resolve({"method": "dmue", "dataset": "rafdb"}).dmue_sp_weight == 1000.0
    assert all(v > 0 for k, v in p.items() if k != "center")

    s = out.fields["weight"].detach().double()
    z = out.logits.detach().double().numpy()
    assert s.shape == (len(labels),) and ((s > 0) & (s < 1)).all()
    per = [_ce64(s[i].item() * z[i], int(labels[i])) for i in range(len(labels))]
    assert p["main"] == pytest.approx(sum(per) / len(per), rel=1e-6)
    np.testing.assert_allclose(out.sample_loss.detach().double().numpy(), per, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("labels", [LABELS_ALL, LABELS_ABSENT])
def test_step_parts_match_float64_recomputation(labels: list[int]) -> None:
    """main, soft, aux and sp rebuilt from the network's pieces in float64."""
    model, cfg = _model()
    model.dropout.p = 0.0
    y = torch.tensor(labels)
    images = _images(len(labels))
    ref = copy.deepcopy(model).double()
    out = model.training_step(images, y, epoch=3)
    n = len(labels)

    with torch.no_grad():
        shared = ref.backbone.stem(images.double())
        feature = _pool(ref.backbone.layer4(shared))
        head_in = ref.neck(feature)  # train mode, dropout p = 0
        z = (head_in @ ref.fc.weight.T).numpy()
        feat = feature.numpy()

        # latent (eval-mode branches, before any branch trains)
        for m in (*ref.branches, ref.branch_stats):
            m.eval()
        latent = np.zeros((n, K))
        for i, c in enumerate(labels):
            h = ref.branch_fc[c](ref.branch_neck(_pool(ref.branches[c](shared[i:i + 1]))))[0].numpy()
            latent[i] = _latent_row64(h, c, cfg.dmue_temperature)
        for m in (*ref.branches, ref.branch_stats):
            m.train()

        # weight s = sigmoid(MLP([m, onehot]))
        m_sim = _class_similarity64(feat, labels, K)
        onehot = np.eye(K)[labels]
        inp = torch.tensor(np.concatenate([m_sim, onehot], axis=1))
        s = torch.sigmoid(ref.uncertainty(inp)).squeeze(1).numpy()

        # aux and sp per present "other" group
        aux_terms, sp_terms = [], []
        for c in range(K):
            rows = [i for i in range(n) if labels[i] != c]
            if len(rows) < 2:
                continue
            a = ref.branch_fc[c](ref.branch_neck(_pool(ref.branches[c](shared[rows])))).numpy()
            shifted = [labels[i] - (1 if labels[i] > c else 0) for i in rows]
            aux_terms.append(sum(_ce64(a[r], shifted[r]) for r in range(len(rows))) / len(rows))
            sp_terms.append(float(((_gram_rows64(a) - _gram_rows64(head_in.numpy()[rows])) ** 2).mean()))

    main = sum(_ce64(s[i] * z[i], labels[i]) for i in range(n)) / n
    probs = _softmax64(z)
    probs[np.arange(n), labels] = 0.0
    soft = float(((probs - latent) ** 2).mean())

    np.testing.assert_allclose(out.logits.detach().double().numpy(), z, rtol=1e-4, atol=1e-5 * np.abs(z).max())
    np.testing.assert_allclose(out.fields["weight"].detach().double().numpy(), s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out.fields["latent"].double().numpy(), latent, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out.embedding.detach().double().numpy(), feat, rtol=1e-4, atol=1e-5)
    assert out.parts["main"].item() == pytest.approx(main, rel=1e-4)
    assert out.parts["soft"].item() == pytest.approx(soft, rel=1e-3, abs=1e-7)
    assert out.parts["aux"].item() == pytest.approx(np.mean(aux_terms), rel=1e-4)
    assert out.parts["sp"].item() == pytest.approx(np.mean(sp_terms), rel=1e-3, abs=1e-7)


# ---------------------------------------------------------------------------- -C and options
@pytest.mark.parametrize("ramp", [True, False])
def test_dmue_c_center_term_on_512d_target_feature(ramp: bool) -> None:
    """gamma * L_C on the pooled target feature, against the labels passed in (in effect);
    it enters the loss ramped up like the target branch's other losses, or at full weight
    with ``dmue_center_ramp=False``."""
    model, cfg = _model("dmue-c", gamma=0.5, dmue_center_ramp=ramp)
    model.dropout.p = 0.0
    assert model.center is not None and model.center.centers.shape == (K, 512)
    labels = torch.tensor(LABELS_ALL)
    images = _images(len(labels))
    first = model.training_step(images, labels, epoch=0)
    assert first.embedding.shape == (len(labels), 512)
    assert first.parts["center"].item() == 0.0
    model.after_step(first, labels)

    new_labels = torch.tensor([1, 1, 2, 3, 1, 0, 0, 3, 0, 2])
    second = model.training_step(images, new_labels, epoch=0)
    with torch.no_grad():
        feat = _pool(model.backbone.layer4(model.backbone.stem(images))).double().numpy()
    np.testing.assert_allclose(second.embedding.detach().double().numpy(), feat, rtol=1e-5, atol=1e-6)
    centers = model.center.centers.double().numpy()
    lc = sum(float(((feat[i] - centers[int(new_labels[i])]) ** 2).sum()) for i in range(len(labels))) / len(labels)
    assert second.parts["center"].item() == pytest.approx(cfg.gamma * lc, rel=1e-4)
    p = {k: v.item() for k, v in second.parts.items()}
    up = _r_up(0, cfg.dmue_ramp)
    assert 0.0 < up < 0.01  # epoch 0: the target losses are nearly off
    rest = up * (p["main"] + 0.5 * p["soft"] + cfg.dmue_sp_weight * p["sp"]) + p["aux"]
    assert second.loss.item() == pytest.approx(rest + (up if ramp else 1.0) * cfg.gamma * lc, rel=1e-5)


def test_dmue_without_c_has_no_center() -> None:
    model, _ = _model("dmue", sharp_heads=False)
    assert model.center is None and model.epoch_arrays() == {}
    out = model.training_step(_images(6), torch.tensor([0, 1, 2, 3, 0, 1]), epoch=0)
    assert out.parts["center"].item() == 0.0
    assert out.embedding.shape == (6, 512)


@pytest.mark.parametrize("train_uncertainty", [False, True])
def test_uncertainty_mlp_in_optimizer_only_when_trained(train_uncertainty: bool) -> None:
    torch.manual_seed(0)
    cfg = resolve({"method": "dmue", "dmue_train_uncertainty": train_uncertainty})
    model = build_method("dmue", 3, cfg)
    mlp_ids = {id(p) for p in model.uncertainty.parameters()}
    assert len(mlp_ids) == 5  # two Linear layers (weight, bias) and the PReLU slope
    assert all(p.requires_grad is train_uncertainty for p in model.uncertainty.parameters())
    in_groups = {id(p) for g in model.param_groups() for p in g["params"]}
    opt_ids = {id(p) for g in build_optimizer(model, cfg).param_groups for p in g["params"]}
    assert in_groups == opt_ids
    if train_uncertainty:
        assert mlp_ids <= opt_ids
    else:
        assert not (mlp_ids & opt_ids)
    # everything else that trains is in the optimiser exactly once
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert opt_ids == trainable
    all_listed = [id(p) for g in model.param_groups() for p in g["params"]]
    assert len(all_listed) == len(set(all_listed))


def test_load_pretrained_copies_layer4_into_every_branch(tmp_path: Path) -> None:
    torch.manual_seed(11)
    source = build_backbone("resnet18", SIZE).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(source, path)
    model, _ = _model(sharp_heads=False)
    report = model.load_pretrained(str(path))
    assert any(k.startswith("layer4.") for k in report.loaded)
    layer4 = {k[len("layer4."):]: v for k, v in source.items() if k.startswith("layer4.")}
    assert layer4
    for target in (model.backbone.layer4, *model.branches):
        state = target.state_dict()
        assert set(state) == set(layer4)
        for key, value in layer4.items():
            assert torch.equal(state[key], value), key
    # copies, not shared storage: training one branch must not move another
    ptrs = {b[0].conv1.weight.data_ptr() for b in model.branches} | {model.backbone.layer4[0].conv1.weight.data_ptr()}
    assert len(ptrs) == K + 1
    for key, value in source.items():
        if not key.startswith("layer4.") and key != "conv1.weight":
            assert torch.equal(model.backbone.state_dict()[key], value), key


def test_neck_statistics_track_the_target_branch_only() -> None:
    """Inference normalises the target feature with the neck's running statistics, so only
    target passes may move them; the auxiliary branches keep their own (same scale and
    shift parameters)."""
    model, _ = _model("dmue-c")
    model.dropout.p = 0.0  # the neck then sees the pooled target feature itself
    labels = torch.tensor(LABELS_ALL)
    images = _images(len(labels))
    with torch.no_grad():
        target = _pool(model.backbone.layer4(model.backbone.stem(images)))
    before = model.neck.running_mean.clone()
    model.training_step(images, labels, epoch=0)
    momentum = model.neck.momentum
    expected = (1 - momentum) * before + momentum * target.mean(dim=0)
    torch.testing.assert_close(model.neck.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not torch.equal(model.branch_stats.running_mean, torch.zeros_like(before))  # the branches moved theirs
    assert model.branch_stats.weight is None  # statistics only: the affine parameters are the neck's
