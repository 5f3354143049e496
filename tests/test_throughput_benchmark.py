"""benchmarks/throughput.py and benchmarks/gpu_check.sh: the reference arm computes
relabscope's SCN loss on the same batch; --quick runs every CPU arm end to end and every
ratio in its JSON is the quotient of the two arms it names (a missing or swapped arm
fails); the GPU-decode path decodes what relabscope's loader decodes; a SIGTERM keeps the
arms that finished; the GPU check's plan fits its 540 s budget."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from relabscope.config import resolve
from relabscope.methods import build_method

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "throughput.py"
GPU_CHECK = ROOT / "benchmarks" / "gpu_check.sh"

# The CPU --quick run: every arm, what it is, whether it runs (bf16, CUDA graphs, compile
# and GPU decoding are recorded as skipped on a CPU; see the benchmark's docstring).
QUICK_ARMS = {  # name: (shape, kind, variant, precision, batch, runs)
    "rafdb.reference.fp32.b64": ("rafdb", "reference", None, "fp32", 64, True),
    "rafdb.relabscope.fp32.b64": ("rafdb", "relabscope", None, "fp32", 64, True),
    "rafdb.reference.bf16.b64": ("rafdb", "reference", None, "bf16", 64, False),
    "rafdb.relabscope.bf16.b64": ("rafdb", "relabscope", None, "bf16", 64, False),
    "limit.eager.fp32.b64": (None, "limit", "eager", "fp32", 64, True),
    "affectnet.reference.fp32.b64": ("affectnet", "reference", None, "fp32", 64, True),
    "affectnet.relabscope.fp32.b64": ("affectnet", "relabscope", None, "fp32", 64, True),
    "affectnet.decode_cpu.fp32.b64": ("affectnet", "decode_cpu", None, "fp32", 64, True),
    "affectnet.decode_gpu.fp32.b64": ("affectnet", "decode_gpu", None, "fp32", 64, False),
    "limit.graph.fp32.b64": (None, "limit", "graph", "fp32", 64, False),
    "limit.compiled.fp32.b64": (None, "limit", "compiled", "fp32", 64, False),
}
QUICK_RATIOS = {  # name: (numerator, denominator)
    "rafdb.relabscope_over_reference.fp32.b64": ("rafdb.relabscope.fp32.b64", "rafdb.reference.fp32.b64"),
    "rafdb.relabscope_over_limit.fp32.b64": ("rafdb.relabscope.fp32.b64", "limit.eager.fp32.b64"),
    "affectnet.relabscope_over_reference.fp32.b64": ("affectnet.relabscope.fp32.b64", "affectnet.reference.fp32.b64"),
    "affectnet.relabscope_over_limit.fp32.b64": ("affectnet.relabscope.fp32.b64", "limit.eager.fp32.b64"),
}
QUICK_UNAVAILABLE = {"rafdb.relabscope_over_reference.bf16.b64", "affectnet.decode_gpu_over_cpu.fp32.b64"}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["throughput"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _env(tmp_path: Path) -> dict[str, str]:
    return {"RELABSCOPE_CACHE": str(tmp_path / "c"), "OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "")}


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


def test_quick_mode_reports_every_arm_and_each_ratio_is_its_arms_quotient(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    done = subprocess.run([sys.executable, str(BENCH), "--quick", "--workers", "0", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=_env(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["complete"] and result["device"] == "cpu"
    arms = {a["name"]: a for a in result["arms"]}
    assert list(arms) == list(QUICK_ARMS)  # every arm, in the documented order, none twice
    for name, (shape, kind, variant, precision, batch, runs) in QUICK_ARMS.items():
        arm = arms[name]
        assert (arm["shape"], arm["kind"], arm["variant"], arm["precision"], arm["batch_size"]) == \
            (shape, kind, variant, precision, batch), name
        if not runs:
            assert arm["status"] == "skipped" and arm["reason"] and arm["images_per_s"] is None, name
            continue
        assert arm["status"] == "done", (name, arm.get("reason"))
        assert arm["images_per_s"] == pytest.approx(arm["images_timed"] / arm["seconds_timed"], rel=1e-12)
        assert arm["images_per_s"] > 0 and arm["epochs_timed"] > 0
        if kind == "relabscope":  # the real `relabscope train`: its run log, the first epoch untimed
            assert arm["run_log"]["status"] == "finished" and arm["run_log"]["epochs"] == 2
            assert arm["epochs_timed"] == 1 and len(arm["train_seconds"]) == 2
            assert arm["seconds_timed"] == pytest.approx(arm["train_seconds"][1])
            assert arm["images_timed"] == arm["num_train"] == 128
            assert arm["settings"]["data_path"] == ("decode cache" if shape == "rafdb" else "streaming DataLoader")
        else:  # 1 warm-up step, then 4 timed steps of 64
            assert arm["steps_timed"] == 4 and arm["images_timed"] == 4 * 64 and arm["epochs_timed"] == 2.0
        if kind == "reference":
            assert arm["settings"]["data_path"] == "per-image decode"
    ratios = {r["name"]: r for r in result["ratios"]}
    assert set(ratios) == set(QUICK_RATIOS)
    for name, (numerator, denominator) in QUICK_RATIOS.items():
        r = ratios[name]
        assert (r["numerator"], r["denominator"]) == (numerator, denominator), name
        top, bottom = arms[numerator], arms[denominator]
        assert r["value"] == pytest.approx(top["images_per_s"] / bottom["images_per_s"], rel=1e-12), name
        assert top["precision"] == bottom["precision"] and top["batch_size"] == bottom["batch_size"]
    assert {r["name"] for r in result["ratios_unavailable"]} == QUICK_UNAVAILABLE
    assert "rafdb.relabscope_over_reference.fp32.b64" in done.stdout


def test_ratios_take_the_fastest_limit_and_name_what_is_missing(bench) -> None:
    def arm(name: str, rate: float | None, status: str = "done") -> dict:
        shape, kind, precision, batch = name.split(".")
        limit = shape == "limit"
        return {"name": name, "shape": None if limit else shape, "kind": "limit" if limit else kind,
                "precision": precision, "batch_size": int(batch[1:]), "images_per_s": rate, "status": status}

    arms = [arm("rafdb.reference.bf16.b64", 100.0), arm("rafdb.relabscope.bf16.b64", 600.0),
            arm("limit.eager.bf16.b64", 700.0), arm("limit.compiled.bf16.b64", 800.0),
            arm("limit.graph.bf16.b64", None, "failed"), arm("rafdb.relabscope.bf16.b256", 900.0),
            arm("limit.eager.bf16.b256", None, "pending")]
    have, missing = bench.ratios(arms)
    assert {r["name"]: (r["numerator"], r["denominator"], r["value"]) for r in have} == {
        "rafdb.relabscope_over_reference.bf16.b64": ("rafdb.relabscope.bf16.b64", "rafdb.reference.bf16.b64", 6.0),
        "rafdb.relabscope_over_limit.bf16.b64": ("rafdb.relabscope.bf16.b64", "limit.compiled.bf16.b64", 0.75),
    }
    assert [r["name"] for r in missing] == ["rafdb.relabscope_over_limit.bf16.b256"]


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")  # torchvision >= 0.29
def test_gpu_decoding_gives_relabscopes_loader_images(bench, tmp_path: Path) -> None:
    """The decode_gpu arm's decode, face crop and resize (run here on the CPU) give the
    pixels relabscope's streaming loader gives, within a grey level of rounding."""
    from relabscope.data.pipeline import prepare

    bench.write_affectnet_like(tmp_path / "a", 6, 2, sides=(300, 400))
    data = prepare(resolve({"dataset": "affectnet", "data": str(tmp_path / "a"), "image_size": 224}))
    source = data.train.source
    datas = [torch.from_numpy(np.fromfile(source.describe(i), dtype=np.uint8)) for i in range(6)]
    mine = bench.gpu_decode_batch(datas, torch.tensor(source.boxes), 224, torch.device("cpu"))
    theirs = torch.stack([data.train[i][0] for i in range(6)])
    diff = (mine.int() - theirs.int()).abs()
    assert mine.shape == theirs.shape == (6, 3, 224, 224)
    assert diff.max() <= 2 and diff.float().mean() < 0.5


def test_sigterm_keeps_the_arms_that_finished(tmp_path: Path) -> None:
    """What `timeout` does to a step: the JSON keeps every finished arm, marks the one in
    flight stopped and leaves the rest pending."""
    out = tmp_path / "throughput.json"
    proc = subprocess.Popen([sys.executable, str(BENCH), "--quick", "--workers", "0", "--skip-affectnet",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=_env(tmp_path))
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            arms = json.loads(out.read_text())["arms"] if out.exists() else []
            if arms and arms[0]["status"] == "done" and arms[1]["status"] == "running":
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 143, output[-3000:]
    result = json.loads(out.read_text())
    status = {a["name"]: a["status"] for a in result["arms"]}
    assert status["rafdb.reference.fp32.b64"] == "done" and status["rafdb.relabscope.fp32.b64"] == "stopped"
    assert status["limit.eager.fp32.b64"] == "pending" and not result["complete"]
    assert [r["name"] for r in result["ratios"]] == []


def test_the_gpu_check_plan_fits_540_seconds() -> None:
    done = subprocess.run(["bash", str(GPU_CHECK), "--plan"], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ.get("PATH", "")})
    assert done.returncode == 0, done.stderr
    rows = dict(re.findall(r"^(\w+)\s+(-?\d+)\s", done.stdout, flags=re.M))
    assert list(rows) == ["setup", "throughput", "overhead", "callback", "speed", "dmue", "distributed", "sweep",
                          "total"]
    assert int(rows["total"]) == sum(int(v) for k, v in rows.items() if k != "total") <= 540
    over = subprocess.run(["bash", str(GPU_CHECK), "--plan"], capture_output=True, text=True, timeout=30,
                          env={"PATH": os.environ.get("PATH", ""), "THROUGHPUT_LIMIT": "500"})
    assert over.returncode != 0 and "over the 540 s budget" in over.stderr
