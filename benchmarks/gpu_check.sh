#!/usr/bin/env bash
# The GPU checks behind docs/results.md, in one go (a lent GPU machine is held for
# minutes, so everything that needs it runs in one command):
#   1. benchmarks/method_speed.py: one timed epoch of every method at 224 px, bf16 autocast;
#   2. the synthetic sweep (all seven methods, 30 % noise, seeds 0 and 1) on CUDA with
#      --amp, four sweep processes sharing the grid, then its table.
# Needs only the training stack (torch, torchvision, numpy, h5py, pandas, click, tqdm,
# tomli-w, tabulate); run from the repository root, with the package importable
# (installed, or the checkout on PYTHONPATH). Results go to $OUT (default /tmp/gpu-check).
# Each step has its own time limit, so a slow step cannot take the others' time.
# SPEED_ARGS and SWEEP_ARGS replace the device options, e.g. for a quick dry run on a CPU:
#   SPEED_ARGS="--device cpu --image-size 32 --num-train 64 --num-test 64 --epochs 1" \
#   SWEEP_ARGS="--device cpu --epochs 1 --limit 64" benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
SWEEP_DIR=${SWEEP_DIR:-/tmp/gpu-sweep-30}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
    timeout "${SPEED_LIMIT:-200}" python3 benchmarks/method_speed.py ${SPEED_ARGS:---device cuda} --out "$OUT/method_speed.json"
} 2>&1 | tee "$OUT/method_speed.log"

sweep=(python3 -m relabscope sweep --methods baseline,scn,scn-c,rul,rul-c,dmue,dmue-c --noise 0.3 --seeds 2
       ${SWEEP_ARGS:---device cuda --amp} --out "$SWEEP_DIR" -q)
start=$(date +%s)
for i in 1 2 3 4; do
    OMP_NUM_THREADS=4 timeout "${SWEEP_LIMIT:-220}" "${sweep[@]}" > "$OUT/sweep-$i.log" 2>&1 &
    sleep 2  # the first process writes sweep.toml; the others then find it
done
wait
echo "sweep: 4 processes, $(( $(date +%s) - start )) s wall" | tee "$OUT/sweep.log"
cat "$OUT"/sweep-?.log >> "$OUT/sweep.log" && rm "$OUT"/sweep-?.log
python3 -c "import sys; from relabscope.sweep import write_tables; print(write_tables(sys.argv[1])[1])" "$SWEEP_DIR" \
    2>&1 | tee -a "$OUT/sweep.log"
cp "$SWEEP_DIR/runs.csv" "$OUT/" 2>/dev/null
