"""RUL and RUL-C (relabscope/methods/rul.py) against float64 computations written out
here from the reference facts (docs/methods.md, "RUL and RUL-C", which cites the RUL paper
and code):

- the uncertainty-proportional mixing ``f_i = (u_i mu_i + u_pi mu_pi) / (u_i + u_pi)``,
- the add-up loss ``0.5 CE(., y_i) + 0.5 CE(., y_pi(i))``,
- a whole training step (loss, logits = fc(mu) with no mixing, embedding = mu,
  uncertainty = mean(exp(logvar))) with the permutation pinned,
- RUL-C's center term on the 64-d mu with the labels in effect,
- the optimiser set-up: fc at 10x the base lr, ExponentialLR.

The reference values are plain per-sample loops or float64 tensor code that never calls
the function under test, so a vectorisation or broadcasting slip in the library shows.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from relabscope.config import resolve
from relabscope.methods import build_method
from relabscope.methods import rul as rul_module
from relabscope.methods.rul import add_up_loss, mix_features, mixing_weights
from relabscope.training.optim import build_optimizer, build_scheduler

B, K, SIZE = 8, 5, 32


def _cfg(method: str = "rul", **kw):
    return resolve({"method": method, "dataset": "synthetic", **kw})


def _model(method: str = "rul", seed: int = 0, **kw):
    torch.manual_seed(seed)
    cfg = _cfg(method, **kw)
    return build_method(method, K, cfg), cfg


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(B, 3, SIZE, SIZE, generator=g)
    labels = torch.tensor([0, 1, 2, 3, 4, 0, 2, 1])  # every class present
    return images, labels


def _no_dropout(model) -> None:
    """Make the two heads deterministic (train-mode batch norm stays as it is)."""
    model.mu_head.dropout.p = 0.0
    model.logvar_head.dropout.p = 0.0


def _ce64(z: np.ndarray, y: int) -> float:
    """Cross-entropy of one logit row with an explicit log-sum-exp."""
    m = float(z.max())
    return m + math.log(sum(math.exp(float(v) - m) for v in z)) - float(z[y])


# a permutation with one fixed point (sample 3 pairs with itself)
PERM = [5, 0, 7, 3, 1, 6, 2, 4]


def test_mixing_weights_and_mix_features_match_per_sample_float64() -> None:
    rng = np.random.default_rng(0)
    mu = rng.normal(size=(B, 6))
    u = rng.uniform(0.05, 3.0, size=B)
    perm = rng.permutation(B)
    w = mixing_weights(torch.tensor(u), torch.tensor(perm)).numpy()
    f = mix_features(torch.tensor(mu), torch.tensor(u), torch.tensor(perm)).numpy()
    for i in range(B):
        p = perm[i]
        assert w[i] == pytest.approx(u[i] / (u[i] + u[p]), rel=1e-12)
        np.testing.assert_allclose(f[i], (u[i] * mu[i] + u[p] * mu[p]) / (u[i] + u[p]), rtol=1e-12, atol=1e-12)

    # float32 inputs agree with the float64 reference to float32 precision
    w32 = mixing_weights(torch.tensor(u, dtype=torch.float32), torch.tensor(perm)).numpy()
    f32 = mix_features(torch.tensor(mu, dtype=torch.float32), torch.tensor(u, dtype=torch.float32), torch.tensor(perm)).numpy()
    np.testing.assert_allclose(w32, w, rtol=1e-6)
    np.testing.assert_allclose(f32, f, rtol=1e-5, atol=1e-6)


def test_mix_with_self_and_equal_uncertainty() -> None:
    mu = torch.tensor([[1.0, 2.0], [3.0, -4.0]], dtype=torch.float64)
    u = torch.tensor([0.7, 0.7], dtype=torch.float64)
    ident = torch.tensor([0, 1])
    torch.testing.assert_close(mix_features(mu, u, ident), mu)  # pairing with itself: no change
    swap = torch.tensor([1, 0])
    torch.testing.assert_close(mixing_weights(u, swap), torch.full((2,), 0.5, dtype=torch.float64))
    torch.testing.assert_close(mix_features(mu, u, swap), mu.mean(0).expand(2, 2))


def test_add_up_loss_matches_explicit_log_sum_exp() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(B, K))
    labels = rng.integers(0, K, B)
    perm = rng.permutation(B)
    got = add_up_loss(torch.tensor(logits), torch.tensor(labels), torch.tensor(perm)).numpy()
    assert got.shape == (B,)
    for i in range(B):
        expected = 0.5 * _ce64(logits[i], labels[i]) + 0.5 * _ce64(logits[i], labels[perm[i]])
        assert got[i] == pytest.approx(expected, rel=1e-12)
    got32 = add_up_loss(torch.tensor(logits, dtype=torch.float32), torch.tensor(labels), torch.tensor(perm)).numpy()
    np.testing.assert_allclose(got32, got, rtol=1e-5)


def test_training_step_matches_float64_recomputation(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _model("rul")
    model.train()
    _no_dropout(model)
    images, labels = _batch()

    calls = []

    def fixed_randperm(n, *args, **kwargs):
        calls.append(n)
        return torch.tensor(PERM, device=kwargs.get("device"))

    monkeypatch.setattr(rul_module.torch, "randperm", fixed_randperm)
    out = model.training_step(images, labels, epoch=0)
    monkeypatch.undo()
    assert calls == [B]

    with torch.no_grad():
        mu32, u32 = model.encode(images)  # train mode, batch statistics: same as in the step
        fmap = model.backbone.feature_map(images)
        logvar = model.logvar_head(fmap).double()
    mu = mu32.double().numpy()
    u = logvar.exp().numpy().mean(axis=1)  # mean over the 64 dims of exp(logvar)
    w_fc = model.fc.weight.detach().double().numpy()
    b_fc = model.fc.bias.detach().double().numpy()
    y = labels.numpy()

    per_sample = []
    for i in range(B):
        p = PERM[i]
        f = (u[i] * mu[i] + u[p] * mu[p]) / (u[i] + u[p])
        z = w_fc @ f + b_fc
        per_sample.append(0.5 * _ce64(z, y[i]) + 0.5 * _ce64(z, y[p]))
    expected_loss = sum(per_sample) / B

    assert out.loss.item() == pytest.approx(expected_loss, rel=1e-5)
    assert out.parts["add_up"].item() == pytest.approx(expected_loss, rel=1e-5)
    assert out.parts["center"].item() == 0.0
    np.testing.assert_allclose(out.sample_loss.detach().double().numpy(), per_sample, rtol=1e-5, atol=1e-6)

    # logged embedding is mu (64-d); logits are fc(mu), unmixed
    assert out.embedding.shape == (B, 64)
    np.testing.assert_allclose(out.embedding.detach().double().numpy(), mu, rtol=1e-5, atol=1e-6)
    assert out.logits.shape == (B, K)
    np.testing.assert_allclose(out.logits.detach().double().numpy(), mu @ w_fc.T + b_fc, rtol=1e-5, atol=1e-5)

    # uncertainty field: mean(exp(logvar)) over 64 dims of the logvar head's output
    assert logvar.shape == (B, 64)
    unc = out.fields["uncertainty"]
    assert unc.shape == (B,) and unc.dtype == torch.float32
    np.testing.assert_allclose(unc.detach().double().numpy(), u, rtol=1e-5)
    np.testing.assert_allclose(u32.double().numpy(), u, rtol=1e-5)
    assert set(out.fields) == set(model.sample_fields) == {"uncertainty"}


def test_training_step_draws_a_fresh_permutation_of_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    model, _ = _model("rul")
    seen = []
    real = torch.randperm

    def spy(n, *args, **kwargs):
        perm = real(n, *args, **kwargs)
        seen.append(perm)
        return perm

    images, labels = _batch()
    monkeypatch.setattr(rul_module.torch, "randperm", spy)
    torch.manual_seed(5)
    model.training_step(images, labels, 0)
    monkeypatch.undo()
    assert len(seen) == 1 and sorted(seen[0].tolist()) == list(range(B))


def test_rul_c_center_term_on_mu_with_labels_in_effect() -> None:
    model, cfg = _model("rul-c", gamma=0.5)
    assert model.center is not None
    assert model.center.centers.shape == (K, 64)
    model.train()
    _no_dropout(model)
    images, labels = _batch()

    first = model.training_step(images, labels, epoch=0)
    assert first.parts["center"].item() == 0.0  # no center initialised yet
    model.after_step(first, labels)
    emb1 = first.embedding.detach().double().numpy()
    for c in range(K):  # each center starts at its class's batch mean of mu
        members = [i for i in range(B) if labels[i] == c]
        np.testing.assert_allclose(model.center.centers[c].double().numpy(), emb1[members].mean(axis=0), rtol=1e-5, atol=1e-6)

    new_labels = torch.tensor([1, 1, 2, 3, 4, 0, 0, 1])  # the labels in effect now
    second = model.training_step(images, new_labels, epoch=1)
    with torch.no_grad():
        mu, _ = model.encode(images)
    mu = mu.double().numpy()
    centers = model.center.centers.double().numpy()
    lc = sum(float(((mu[i] - centers[int(new_labels[i])]) ** 2).sum()) for i in range(B)) / B
    assert second.parts["center"].item() == pytest.approx(cfg.gamma * lc, rel=1e-5)
    assert second.loss.item() == pytest.approx(second.parts["add_up"].item() + cfg.gamma * lc, rel=1e-5)
    old = sum(float(((mu[i] - centers[int(labels[i])]) ** 2).sum()) for i in range(B)) / B
    assert not math.isclose(lc, old, rel_tol=1e-3)  # the term really follows the labels passed in


def test_rul_without_c_has_no_center() -> None:
    model, _ = _model("rul")
    assert model.center is None
    images, labels = _batch()
    out = model.training_step(images, labels, epoch=0)
    assert out.parts["center"].item() == 0.0
    assert out.loss.item() == pytest.approx(out.parts["add_up"].item(), rel=1e-7)
    assert model.epoch_arrays() == {}


def test_rul_heads_param_groups_and_scheduler() -> None:
    model, cfg = _model("rul")
    assert cfg.lr == pytest.approx(2e-4) and cfg.head_lr_mult == pytest.approx(10.0)
    assert cfg.lr_schedule == "exponential"
    heads = model.heads()
    assert len(heads) == 1 and heads[0] is model.fc

    groups = model.param_groups()
    assert len(groups) == 2
    fc_ids = {id(p) for p in model.fc.parameters()}
    assert {id(p) for p in groups[1]["params"]} == fc_ids
    assert groups[1]["lr"] == pytest.approx(cfg.lr * cfg.head_lr_mult) == pytest.approx(2e-3)
    body_ids = [id(p) for p in groups[0]["params"]]
    assert "lr" not in groups[0]
    all_ids = {id(p) for p in model.parameters() if p.requires_grad}
    assert len(body_ids) == len(set(body_ids)) and set(body_ids) == all_ids - fc_ids

    opt = build_optimizer(model, cfg)
    assert isinstance(opt, torch.optim.Adam)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([2e-4, 2e-3])
    assert all(g["weight_decay"] == pytest.approx(cfg.weight_decay) for g in opt.param_groups)
    sched = build_scheduler(opt, cfg)
    assert isinstance(sched, torch.optim.lr_scheduler.ExponentialLR)
    assert sched.gamma == pytest.approx(0.9)


def test_rul_predict_is_unmixed_fc_of_mu_in_eval_mode() -> None:
    model, _ = _model("rul")
    model.eval()
    images, _ = _batch()
    with torch.no_grad():
        logits, emb = model.predict(images)
        mu, _ = model.encode(images)
    torch.testing.assert_close(emb, mu)
    expected = mu.double() @ model.fc.weight.double().T + model.fc.bias.double()
    torch.testing.assert_close(logits.double(), expected, rtol=1e-5, atol=1e-5)


def test_the_logged_embedding_passes_through_no_dropout() -> None:
    """One embedding definition across methods: RUL's logged ``mu`` (and RUL-C's center
    loss) is the training forward's ``mu`` without the head's dropout, so it does not vary
    with the dropout mask, and equals the head run with dropout off."""
    model, _ = _model("rul-c")
    model.train()
    images, labels = _batch()
    torch.manual_seed(1)
    a = model.training_step(images, labels, epoch=0)
    torch.manual_seed(2)  # another dropout mask
    b = model.training_step(images, labels, epoch=0)
    torch.testing.assert_close(a.embedding, b.embedding)
    assert not torch.allclose(a.loss, b.loss)  # the add-up loss still sees dropout
    _no_dropout(model)
    with torch.no_grad():
        mu, _ = model.encode(images)
    torch.testing.assert_close(a.embedding.detach(), mu, rtol=1e-5, atol=1e-5)
