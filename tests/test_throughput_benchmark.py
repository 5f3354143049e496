"""benchmarks/throughput.py: its reference arm computes relabscope's SCN loss on the same
batch, and its quick mode runs end to end on the CPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from relabscope.config import resolve
from relabscope.methods import build_method

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("size", [32, 112])
def test_the_reference_computes_relabscopes_scn_loss(bench, size: int) -> None:
    """Same weights, same batch: the reference network's logits, importance weights and
    loss (cross-entropy + rank regularisation) are relabscope's SCN's."""
    cfg = resolve({"method": "scn", "image_size": size, "rr_margin": 0.15, "rr_beta": 0.7})
    torch.manual_seed(0)
    scn = build_method("scn", 7, cfg).train()
    ref = bench.ReferenceSCN.like(scn).train()
    x, y = torch.randn(16, 3, size, size), torch.arange(16) % 7
    ours = scn.training_step(x, y, epoch=0)
    logits, weight = ref(x)
    torch.testing.assert_close(logits, ours.logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(weight, ours.fields["weight"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bench.reference_loss(logits, weight, y), ours.loss, rtol=1e-5, atol=1e-6)


def test_quick_mode_runs_and_reports_every_ratio(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--workers", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env={"RELABSCOPE_CACHE": str(tmp_path / "c"),
                                                                           "OMP_NUM_THREADS": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert set(result["shapes"]) == {"rafdb", "affectnet"}
    for shape in result["shapes"].values():
        assert shape["reference_64"] > 0 and shape["relabscope_64"]["steady"] > 0
        assert shape["per_method"]["scn-c"]["limit"] > 0
        assert set(shape["ratios"]) == {"relabscope_64_over_reference", "best_over_limit", "first_epoch_over_limit"}
    assert "relabscope at 64 / reference" in done.stdout
