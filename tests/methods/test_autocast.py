"""RUL and DMUE under bf16 autocast (what ``--amp`` does on CUDA; here on the CPU, which
CI has): a step runs, its loss is finite and float32, gradients reach every trained
parameter group, and what the trainer logs is float32."""

from __future__ import annotations

import pytest
import torch

from relabscope.config import resolve
from relabscope.methods import build_method


@pytest.mark.parametrize("name", ["rul", "rul-c", "dmue", "dmue-c"])
def test_step_under_bf16_autocast(name: str) -> None:
    torch.manual_seed(0)
    cfg = resolve({"method": name, "dataset": "synthetic", "image_size": 32})
    model = build_method(name, 5, cfg)
    images, labels = torch.randn(12, 3, 32, 32), torch.arange(12) % 5
    for step in range(2):  # the second step has initialised centers
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.training_step(images, labels, epoch=4)
        assert out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
        assert out.logits.dtype == torch.float32 and out.sample_loss.dtype == torch.float32
        model.zero_grad()
        out.loss.backward()
        for group in model.param_groups():
            assert any(p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
                       for p in group["params"])
        model.after_step(out, labels)
    for value in out.fields.values():
        assert torch.isfinite(value.float()).all()
