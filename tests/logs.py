"""Run logs written by hand through ``RunLogWriter``: exact, machine-independent fixtures.

A trained fixture run decides by floating point which samples it relabels; a property a
test needs (a class relabelled empty) must not depend on that. These logs are written
batch by batch exactly as the trainer's hook writes them, from seeded numpy arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: The emptied-class log: 4 classes of 16 training samples each; in epoch 1 relabelling
#: moves every "anger" sample away (emptied) and 10 of 16 "sadness" samples to "happiness"
#: (shrunk below half); samples 0-3 then flip-flop between "neutral" and "happiness".
EMPTIED = {
    "class_names": ["neutral", "happiness", "sadness", "anger"],
    "per_class": 16,
    "num_test": 16,
    "epochs": 5,
    "embed_dim": 8,
    "emptied": "anger",
    "emptied_epoch": 1,
    "shrunk": "sadness",
    "shrunk_to": 6,
}


def write_emptied_log(run_dir: Path, seed: int = 0, method: str = "scn-c") -> Path:
    """Write the EMPTIED log as ``run_dir/run.h5`` (and its config.toml); returns run_dir."""
    from relabscope.runlog import RunLogWriter, SampleTable

    spec = EMPTIED
    names, k, per = spec["class_names"], len(spec["class_names"]), spec["per_class"]
    n_train, n_test, d = k * per, spec["num_test"], spec["embed_dim"]
    n = n_train + n_test
    rng = np.random.default_rng(seed)
    clean = np.r_[np.repeat(np.arange(k), per), np.arange(n_test) % k]
    given = clean.copy()
    given[[5, 21]] = [1, 0]  # two noisy labels with known clean ones
    samples = SampleTable(key=[f"img/{i:04d}.png" for i in range(n)],
                          split=np.r_[np.zeros(n_train), np.ones(n_test)], given_label=given, clean_label=clean)
    centers = np.eye(k, d, dtype=np.float32) * 6.0
    base = centers[clean] + rng.normal(0, 1.0, (n, d)).astype(np.float32)
    anger, sad, happy = names.index("anger"), names.index("sadness"), names.index("happiness")
    anger_ids = np.flatnonzero(given[:n_train] == anger)
    sad_moved = np.flatnonzero(given[:n_train] == sad)[:per - spec["shrunk_to"]]
    config = {"method": method, "dataset": "synthetic", "epochs": spec["epochs"], "noise": 0.0, "seed": seed,
              "embed_every": 1, "image_size": 16, "batch_size": 16}
    meta = {"method": method, "dataset": "synthetic", "num_train": n_train, "num_test": n_test,
            "method_relabels": 1, "device": "cpu", "created": "2026-01-01T00:00:00+00:00"}
    run_dir.mkdir(parents=True, exist_ok=True)
    effect = given[:n_train].copy()
    with RunLogWriter.create(run_dir, samples, names, embed_dim=d, fields={"weight": ()}, has_centers=True,
                             config=config, metadata=meta) as log:
        for e in range(spec["epochs"]):
            emb = base + rng.normal(0, 0.3, (n, d)).astype(np.float32)
            logits = rng.normal(0, 0.5, (n, k)).astype(np.float32)
            logits[np.arange(n), clean] += 2.0
            for step, ids in enumerate(np.array_split(np.arange(n_train), 4)):
                new = effect[ids].copy()
                if e == spec["emptied_epoch"]:
                    moved = np.isin(ids, anger_ids)
                    new[moved] = ids[moved] % 2  # to neutral or happiness
                    new[np.isin(ids, sad_moved)] = happy
                elif e >= 2:
                    flip = ids[ids < 4]
                    new[np.isin(ids, flip)] = np.where(effect[flip] == 0, happy, 0)
                log.log_batch(ids, effect[ids], logits[ids], emb[ids], loss=rng.random(len(ids)).astype(np.float32),
                              new_labels=new, step=e * 4 + step, fields={"weight": rng.random(len(ids))})
                effect[ids] = new
            test = np.arange(n_train, n)
            log.log_batch(test, given[test], logits[test], emb[test], phase="test")
            log.end_epoch(centers=centers, lr=1e-3, seconds=1.0, save_embeddings=True)
    (run_dir / "config.toml").write_text("".join(f"{key} = {_toml(v)}\n" for key, v in config.items()))
    return run_dir


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)
