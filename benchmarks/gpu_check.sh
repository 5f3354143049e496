#!/usr/bin/env bash
# Every GPU check behind README's and docs/results.md's GPU figures, in one command (a lent
# GPU machine is held for minutes, so everything that needs it runs in one go). Steps, each
# with its own time limit so a slow one cannot take the others' time:
#   speed       benchmarks/method_speed.py: one timed epoch of every method at 224 px, bf16
#   throughput  benchmarks/throughput.py: the reference SCN pipeline, relabscope and the
#               model-only limit at 224 px, RAF-DB- and AffectNet-shaped data (ratios)
#   overhead    benchmarks/logging_overhead.py: the run log on/off (and the probe pass)
#   dmue        the DMUE-C center placements under bf16 (the synthetic 30 % grid, 1 seed)
#   sweep       the synthetic sweep (seven methods, 30 % noise, 2 seeds) on CUDA with --amp,
#               four sweep processes sharing the grid, then its table
#   distributed benchmarks/distributed.py over NCCL when the machine has 2+ GPUs
# STEPS picks some ("speed throughput"), default all of them. Needs only the training stack
# (torch, torchvision, numpy, h5py, pandas, click, tqdm, tomli-w, tabulate); run from the
# repository root with the package importable (installed, or the checkout on PYTHONPATH).
# Results go to $OUT (default /tmp/gpu-check). A dry run on a CPU:
#   DEVICE=cpu STEPS="speed throughput" SPEED_ARGS="--device cpu --image-size 32 --num-train 64 \
#     --num-test 64 --epochs 1" THROUGHPUT_ARGS="--device cpu --quick" benchmarks/gpu_check.sh
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
SWEEP_DIR=${SWEEP_DIR:-/tmp/gpu-sweep-30}
STEPS=${STEPS:-speed throughput overhead dmue sweep distributed}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

want() { [[ " $STEPS " == *" $1 "* ]]; }

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    python3 -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)"
} 2>&1 | tee "$OUT/machine.log"

if want speed; then
    timeout "${SPEED_LIMIT:-200}" python3 benchmarks/method_speed.py ${SPEED_ARGS:---device cuda} \
        --out "$OUT/method_speed.json" 2>&1 | tee "$OUT/method_speed.log"
fi

if want throughput; then
    timeout "${THROUGHPUT_LIMIT:-420}" python3 benchmarks/throughput.py ${THROUGHPUT_ARGS:---device cuda} \
        --out "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log"
fi

if want overhead; then
    timeout "${OVERHEAD_LIMIT:-240}" python3 benchmarks/logging_overhead.py ${OVERHEAD_ARGS:---device cuda \
        --image-size 224 --batch-size 256 --amp --num-train 20000 --arms off,on,probe} \
        --out "$OUT/logging_overhead.json" 2>&1 | tee "$OUT/logging_overhead.log"
fi

if want dmue; then
    for place in feature neck normalized; do
        ramp=$([ "$place" = feature ] && echo --dmue-center-ramp || echo --dmue-center-full)
        timeout "${DMUE_LIMIT:-200}" python3 -m relabscope sweep --methods dmue-c --noise 0.3 --seeds 1 \
            --dmue-center-on "$place" "$ramp" ${DMUE_ARGS:---device cuda --amp} --out "$OUT/dmue-$place" -q \
            2>&1 | tail -n 12
    done 2>&1 | tee "$OUT/dmue.log"
fi

if want sweep; then
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
    python3 -c "import sys; from relabscope.sweep import write_tables; print(write_tables(sys.argv[1])[1])" \
        "$SWEEP_DIR" 2>&1 | tee -a "$OUT/sweep.log"
    cp "$SWEEP_DIR/runs.csv" "$OUT/" 2>/dev/null
fi

if want distributed; then
    gpus=$(python3 -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
    if [ "${gpus:-0}" -ge 2 ]; then
        ranks=$(python3 -c "print(','.join(str(n) for n in (1, 2, 4, 8) if n <= $gpus))")
        timeout "${DISTRIBUTED_LIMIT:-300}" python3 benchmarks/distributed.py --device cuda --ranks "$ranks" \
            --image-size 224 --batch-size 256 --num-train 20000 --amp --out "$OUT/distributed.json" \
            2>&1 | tee "$OUT/distributed.log"
    else
        echo "distributed: $gpus GPU(s), needs 2+: skipped" | tee "$OUT/distributed.log"
    fi
fi
