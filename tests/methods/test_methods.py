"""SCN's relabel rule, rank regularisation and the center loss, against float64
computations written out independently here (loops, not the library's vector code)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from relabscope.config import TrainConfig
from relabscope.methods import build_method
from relabscope.methods.center_loss import CenterLoss
from relabscope.methods.scn import low_importance, rank_regularization, relabel_rule


def _softmax64(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("delta", [0.0, 0.2, 0.5])
def test_relabel_rule_matches_equation_1(delta: float) -> None:
    rng = np.random.default_rng(1)
    probs = _softmax64(rng.normal(scale=2.0, size=(200, 7)))
    labels = rng.integers(0, 7, 200)
    got = relabel_rule(torch.tensor(probs), torch.tensor(labels), delta).numpy()
    for i in range(200):
        p_max, y_max = probs[i].max(), int(probs[i].argmax())
        expected = y_max if p_max - probs[i, labels[i]] > delta else labels[i]
        assert got[i] == expected
    assert (got != labels).any() and (got == labels).any()  # both branches exercised


def test_relabel_rule_respects_eligibility_and_keeps_labels_at_argmax() -> None:
    probs = torch.tensor([[0.1, 0.9], [0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 0])
    eligible = torch.tensor([True, True, False])
    assert relabel_rule(probs, labels, 0.2, eligible).tolist() == [1, 0, 0]


def _rr64(weights: np.ndarray, beta: float, margin: float) -> float:
    ranked = sorted(weights.tolist(), reverse=True)
    k = int(beta * len(ranked))
    high = sum(ranked[:k]) / k
    low = sum(ranked[k:]) / (len(ranked) - k)
    return max(0.0, margin - (high - low))


@pytest.mark.parametrize("margin", [0.0, 0.07, 0.15, 0.9])
def test_rank_regularization_matches_definition(margin: float) -> None:
    rng = np.random.default_rng(2)
    w = rng.uniform(0.3, 0.7, size=64)
    got = rank_regularization(torch.tensor(w), 0.7, margin).item()
    assert got == pytest.approx(_rr64(w, 0.7, margin), abs=1e-12)


def test_rank_regularization_gradient_pushes_groups_apart() -> None:
    w = torch.tensor([0.5, 0.52, 0.48, 0.51, 0.49, 0.5, 0.53, 0.47, 0.5, 0.5], dtype=torch.float64, requires_grad=True)
    rank_regularization(w, 0.7, 0.15).backward()
    top = torch.topk(w.detach(), 7).indices
    low = torch.tensor([i for i in range(10) if i not in top.tolist()])
    assert (w.grad[top] < 0).all() and (w.grad[low] > 0).all()  # descent raises high, lowers low


def test_low_importance_is_complement_of_top_beta() -> None:
    w = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4, 0.5, 0.05])
    mask = low_importance(w, 0.7)
    assert mask.sum().item() == 3
    assert sorted(torch.nonzero(mask).flatten().tolist()) == [1, 3, 9]


def test_center_loss_value_and_wen_update_match_float64() -> None:
    rng = np.random.default_rng(3)
    k, d, b = 4, 5, 16
    centers0 = rng.normal(size=(k, d))
    x = rng.normal(size=(b, d))
    y = rng.integers(0, k - 1, b)  # class k-1 absent from the batch
    cl = CenterLoss(k, d, alpha=0.5).double()
    cl.centers.copy_(torch.tensor(centers0))
    cl.initialised.fill_(True)

    expected_loss = sum(float(((x[i] - centers0[y[i]]) ** 2).sum()) for i in range(b)) / b
    assert cl.loss(torch.tensor(x), torch.tensor(y)).item() == pytest.approx(expected_loss, rel=1e-6)

    cl.update(torch.tensor(x), torch.tensor(y))
    expected = centers0.copy()
    for j in range(k):
        members = [i for i in range(b) if y[i] == j]
        delta = sum((centers0[j] - x[i] for i in members), np.zeros(d)) / (1 + len(members))
        expected[j] = centers0[j] - 0.5 * delta
    np.testing.assert_allclose(cl.centers.numpy(), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(cl.centers.numpy()[k - 1], centers0[k - 1])  # untouched


def test_center_loss_gradient_is_2_over_b_times_offset() -> None:
    cl = CenterLoss(2, 3).double()
    cl.centers.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    cl.initialised.fill_(True)
    x = torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 1.0]], dtype=torch.float64, requires_grad=True)
    cl.loss(x, torch.tensor([0, 1])).backward()
    np.testing.assert_allclose(x.grad.numpy(), [[1.0, 0, 0], [0, 2.0, 1.0]])  # 2/B * (x - c)
    assert cl.centers.grad is None  # centers move only by the update rule


def test_center_starts_at_first_batch_mean_and_follows_new_labels() -> None:
    cl = CenterLoss(2, 2, alpha=0.5)
    x = torch.tensor([[1.0, 1.0], [3.0, 1.0], [10.0, 10.0]])
    cl.update(x, torch.tensor([0, 0, 1]))
    np.testing.assert_allclose(cl.centers.numpy(), [[2.0, 1.0], [10.0, 10.0]])
    assert cl.loss(x, torch.tensor([0, 0, 1])).item() == pytest.approx((1 + 1 + 0) / 3)
    # relabel sample 2 to class 0: it now pulls class 0's center toward it
    cl.update(x[2:], torch.tensor([0]))
    np.testing.assert_allclose(cl.centers[0].numpy(), [2.0 + 0.5 * (8.0 / 2), 1.0 + 0.5 * (9.0 / 2)])


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(image_size=32, **kw)


def test_scn_logits_are_importance_scaled_and_loss_sums_terms() -> None:
    torch.manual_seed(0)
    m = build_method("scn-c", 7, _cfg(gamma=0.5))
    x = torch.randn(12, 3, 32, 32)
    y = torch.randint(0, 7, (12,))
    m.center.update(m.backbone(x).detach(), y)  # initialise centers so L_C is non-zero
    out = m.training_step(x, y, epoch=0)
    emb = out.embedding.double()
    alpha = torch.sigmoid(emb @ m.attention.weight.double().T + m.attention.bias.double()).squeeze(1)
    logits = alpha.unsqueeze(1) * (emb @ m.fc.weight.double().T + m.fc.bias.double())
    torch.testing.assert_close(out.logits.double(), logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.fields["weight"].double(), alpha, rtol=1e-5, atol=1e-6)
    ce = torch.nn.functional.cross_entropy(logits, y)
    rr = _rr64(alpha.detach().numpy(), 0.7, 0.15)
    lc = ((emb - m.center.centers.double()[y]) ** 2).sum(1).mean()
    assert out.loss.item() == pytest.approx(ce.item() + rr + 0.5 * lc.item(), rel=1e-4)
    assert out.parts["center"].item() > 0


def test_scn_without_rr_and_without_center() -> None:
    torch.manual_seed(0)
    m = build_method("scn", 7, _cfg(rr=False))
    out = m.training_step(torch.randn(6, 3, 32, 32), torch.randint(0, 7, (6,)), epoch=0)
    assert m.center is None
    assert out.loss.item() == pytest.approx(out.sample_loss.mean().item(), rel=1e-6)


def test_scn_relabel_scope_low_only_touches_low_importance_group() -> None:
    torch.manual_seed(0)
    m = build_method("scn", 3, _cfg(relabel_scope="low", delta=0.0))
    out = m.training_step(torch.randn(10, 3, 32, 32), torch.zeros(10, dtype=torch.long), epoch=20)
    new = m.relabel(out, torch.zeros(10, dtype=torch.long), epoch=20)
    low = low_importance(out.fields["weight"], 0.7)
    assert (new[~low] == 0).all()


def test_baseline_c_center_term_uses_labels_in_effect() -> None:
    torch.manual_seed(0)
    m = build_method("baseline-c", 3, _cfg(gamma=1.0))
    x = torch.randn(4, 3, 32, 32)
    emb = m.backbone(x).detach()
    m.center.update(emb, torch.tensor([0, 0, 1, 2]))
    a = m.training_step(x, torch.tensor([0, 0, 1, 2]), 0).parts["center"].item()
    b = m.training_step(x, torch.tensor([1, 0, 1, 2]), 0).parts["center"].item()
    d_old = ((emb[0] - m.center.centers[0]) ** 2).sum().item()
    d_new = ((emb[0] - m.center.centers[1]) ** 2).sum().item()
    assert b - a == pytest.approx((d_new - d_old) / 4, rel=1e-4, abs=1e-5)
    assert not math.isclose(a, b)


class _Recorded(TrainConfig):
    """A TrainConfig that records which settings are read."""

    def __getattribute__(self, name: str):
        if not name.startswith("_") and name in type(self).__dataclass_fields__:
            object.__getattribute__(self, "_reads").add(name)
        return object.__getattribute__(self, name)


def _settings_read(name: str) -> set[str]:
    """Every setting method ``name`` reads while it is built, steps twice (the second with
    centers), relabels and updates its state."""
    import dataclasses

    from relabscope.config import resolve

    cfg = _Recorded(**dataclasses.asdict(resolve({"method": name, "dataset": "synthetic"})))
    object.__setattr__(cfg, "_reads", set())
    images, labels = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(8) % 4
    model = build_method(name, 4, cfg)
    out = model.training_step(images, labels, epoch=4)
    model.after_step(out, labels)
    out = model.training_step(images, labels, epoch=4)
    model.relabel(out, labels, epoch=4)
    model.after_step(out, labels)
    reads: set[str] = object.__getattribute__(cfg, "_reads")
    return reads


def test_method_only_settings_are_read_by_their_methods_only() -> None:
    """A sweep skips comparing a method's own setting (``config.readers``) for the methods
    that do not read it, so those methods must not read it at all: every setting a method
    reads while it is built, trains, relabels and updates is shared or declared by its
    registry entry. The map names real settings and methods."""
    from relabscope.config import INTRODUCED, SPECS, readers
    from relabscope.methods import METHODS

    fields = set(TrainConfig.__dataclass_fields__)
    method_only = {key: methods for key in SPECS if (methods := readers(key)) is not None}
    assert method_only and set(INTRODUCED) <= fields
    assert set().union(*method_only.values()) <= set(METHODS)
    for name in METHODS:
        reads = _settings_read(name)
        foreign = sorted(key for key in reads if key in method_only and name not in method_only[key])
        assert not foreign, f"{name} reads settings its registry entry does not declare: {foreign}"
        own = {key for key, methods in method_only.items() if name in methods}
        if name in ("scn", "dmue-c"):  # the check sees reads: methods with settings of their own read some
            assert reads & own, name
