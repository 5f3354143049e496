#!/usr/bin/env bash
# Every GPU check behind README's and docs/results.md's GPU figures, in ONE call of at most
# 540 s (9 minutes) of wall time, start-up and data generation included: a lent H200 is 15
# minutes of device time in all, machine start and any rerun included, and 10 minutes a
# command at most.
#
# Steps run in order of value. Each has a time limit, enforced with `timeout` (TERM at the
# limit - 5 s, KILL at the limit), and is skipped when the time left of the budget (BUDGET,
# 540 s, minus the time since the script started) cannot hold its limit. Each step's JSON is
# rewritten as each of its arms (or trials, methods, world sizes) finishes, so a step cut off
# keeps what it had measured. `benchmarks/gpu_check.sh --plan` prints the steps, their limits
# and the total, and runs nothing.
#
#   step        limit  what, and how its data is sized so each figure is steady state
#   setup         15   nvidia-smi, versions, the training stack imports (machine.log)
#   throughput   235   benchmarks/throughput.py: the SCN reference pipeline in fp32 and bf16,
#                      `relabscope train` in fp32 and bf16, the model-only limit (eager,
#                      torch.compile, CUDA graph), GPU JPEG decoding; RAF-DB-shaped data at
#                      its published size (12,271 / 3,068 JPEGs, 224 px: relabscope 3 epochs
#                      of 192 steps, the first untimed; the others 20 warm-up steps, then one
#                      epoch's worth), AffectNet-shaped 8,000 / 500 JPEGs of 300-500 px
#                      streamed (125 steps an epoch); batch 64, then 256 (throughput.json)
#   overhead      75   benchmarks/logging_overhead.py: the run log on / off, SCN-C, 20,000
#                      synthetic images at 224 px, batch 256, bf16: 79 steps an epoch, 3
#                      epochs a trial (the first untimed), 3 trials an arm, arms interleaved
#                      (logging_overhead.json)
#   callback      30   benchmarks/callback_overhead.py: Lightning's RelabscopeCallback on / off,
#                      a small CNN, 10,240 synthetic images at 64 px, batch 256: 40 steps an
#                      epoch, 3 epochs a trial (the first untimed), 2 trials an arm
#                      (callback_overhead.json); needs lightning (a wheel in WHEELS), else
#                      skipped at once
#   speed         55   benchmarks/method_speed.py: every method, 4,096 synthetic images at
#                      224 px (stored 100 px), batch 64, bf16, 2 epochs (the first untimed):
#                      64 timed steps each (method_speed.json)
#   dmue          60   DMUE-C's three center placements under bf16 on the synthetic 30 % grid
#                      (2,000 images, 32 px, 8 epochs, 1 seed: accuracy, not speed), three
#                      processes at once on the GPU (dmue.json, dmue-PLACE.log)
#   distributed   60   benchmarks/distributed.py over NCCL, 1 rank vs 2 (4, 8), only with 2+
#                      GPUs: SCN-C, 10,240 synthetic images at 224 px, global batch 256, bf16,
#                      3 epochs (the first untimed) (distributed.json); with one GPU it is
#                      skipped at once and its time goes to the sweep
#   sweep       rest   the synthetic sweep (seven methods, 30 % noise, 2 seeds) on CUDA with
#                      --amp, four processes sharing the grid, then its table: only with the
#                      time left (SWEEP_MIN, 60 s, at least; finished runs are kept, so a cut
#                      sweep reports the runs it finished) (sweep.log, runs.csv)
#
# STEPS picks some ("throughput overhead"), default all; they still run in the order above.
# THROUGHPUT_LIMIT, OVERHEAD_LIMIT, CALLBACK_LIMIT, SPEED_LIMIT, DMUE_LIMIT, DISTRIBUTED_LIMIT, BUDGET,
# SWEEP_MIN override the numbers; THROUGHPUT_ARGS, OVERHEAD_ARGS, CALLBACK_ARGS, SPEED_ARGS, DMUE_ARGS,
# SWEEP_ARGS, DISTRIBUTED_ARGS the arguments. Needs only the training stack (torch,
# torchvision, numpy, h5py, pandas, click, tqdm, tomli-w, tabulate); run from the repository
# root (the checkout goes on PYTHONPATH, so relabscope need not be installed, and so does
# each pure-Python wheel in WHEELS, default .whl/ (git-ignored): the GPU image has all but
# tomli-w); PYTHON names the interpreter (default python3). The script stops at once if the
# stack does not import. Results go to $OUT (default /tmp/gpu-check), with
# steps.tsv and steps.json: each step's limit, seconds and status.
#
# A dry run on a CPU (DEVICE=cpu: every step's default arguments become a small CPU setting,
# e.g. throughput.py --quick; the same budget and limits; distributed is skipped, no GPUs):
#   DEVICE=cpu PYTHON=.venv/bin/python OUT=/tmp/gpu-check-cpu benchmarks/gpu_check.sh
set -uo pipefail

DEVICE=${DEVICE:-cuda}
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu-check}
SWEEP_DIR=${SWEEP_DIR:-/tmp/gpu-sweep-30}
DMUE_DIR=${DMUE_DIR:-/tmp/gpu-dmue}
STEPS=${STEPS:-throughput overhead callback speed dmue distributed sweep}
BUDGET=${BUDGET:-540}
SETUP_LIMIT=15
THROUGHPUT_LIMIT=${THROUGHPUT_LIMIT:-235}
OVERHEAD_LIMIT=${OVERHEAD_LIMIT:-75}
CALLBACK_LIMIT=${CALLBACK_LIMIT:-30}
SPEED_LIMIT=${SPEED_LIMIT:-55}
DMUE_LIMIT=${DMUE_LIMIT:-60}
DISTRIBUTED_LIMIT=${DISTRIBUTED_LIMIT:-60}
SWEEP_MIN=${SWEEP_MIN:-60}
ORDER=(throughput overhead callback speed dmue distributed sweep)

if [ "$DEVICE" = cpu ]; then  # the dry run: small CPU settings
    small="-O num_train=32 -O num_test=16 --epochs 1 --batch-size 16"
    THROUGHPUT_ARGS=${THROUGHPUT_ARGS:---device cpu --quick}
    OVERHEAD_ARGS=${OVERHEAD_ARGS:---device cpu --num-train 128 --epochs 2 --repeats 1}
    CALLBACK_ARGS=${CALLBACK_ARGS:---device cpu --num-train 256 --num-test 64 --epochs 2 --repeats 1}
    SPEED_ARGS=${SPEED_ARGS:---device cpu --image-size 32 --num-train 64 --num-test 32 --epochs 2}
    DMUE_ARGS=${DMUE_ARGS:---device cpu $small}
    SWEEP_ARGS=${SWEEP_ARGS:---device cpu $small}
else
    THROUGHPUT_ARGS=${THROUGHPUT_ARGS:---device $DEVICE}
    OVERHEAD_ARGS=${OVERHEAD_ARGS:---device $DEVICE --image-size 224 --batch-size 256 --amp --num-train 20000 \
--epochs 3 --repeats 3}
    CALLBACK_ARGS=${CALLBACK_ARGS:---device $DEVICE --num-train 10240 --num-test 1024 --image-size 64 \
--batch-size 256 --epochs 3 --repeats 2}
    SPEED_ARGS=${SPEED_ARGS:---device $DEVICE --num-train 4096}
    DMUE_ARGS=${DMUE_ARGS:---device $DEVICE --amp}
    SWEEP_ARGS=${SWEEP_ARGS:---device $DEVICE --amp}
fi
DISTRIBUTED_ARGS=${DISTRIBUTED_ARGS:---device cuda --image-size 224 --batch-size 256 --num-train 10240 --amp --epochs 3}

want() { [[ " $STEPS " == *" $1 "* ]]; }
limit_of() {
    case $1 in
        setup) echo "$SETUP_LIMIT" ;;
        throughput) echo "$THROUGHPUT_LIMIT" ;;
        overhead) echo "$OVERHEAD_LIMIT" ;;
        callback) echo "$CALLBACK_LIMIT" ;;
        speed) echo "$SPEED_LIMIT" ;;
        dmue) echo "$DMUE_LIMIT" ;;
        distributed) echo "$DISTRIBUTED_LIMIT" ;;
    esac
}

what_of() {
    case $1 in
        throughput) echo "throughput.py: reference / relabscope train / limit, fp32 and bf16, GPU decode" ;;
        overhead) echo "logging_overhead.py: run log on / off (goal <= 1.02)" ;;
        callback) echo "callback_overhead.py: Lightning callback on / off (goal <= 1.05)" ;;
        speed) echo "method_speed.py: every method, one timed epoch each" ;;
        dmue) echo "DMUE-C's center placements under bf16 (three processes at once)" ;;
        distributed) echo "distributed.py over NCCL; only with 2+ GPUs, else skipped at once" ;;
    esac
}

plan() {
    local fixed=$SETUP_LIMIT step rest
    printf '%-12s %8s  %s\n' step "limit s" what
    printf '%-12s %8s  %s\n' setup "$SETUP_LIMIT" "nvidia-smi, versions, the training stack imports"
    for step in "${ORDER[@]}"; do
        [ "$step" = sweep ] && continue
        if want "$step"; then
            fixed=$((fixed + $(limit_of "$step")))
            printf '%-12s %8s  %s\n' "$step" "$(limit_of "$step")" "$(what_of "$step")"
        else
            printf '%-12s %8s  %s\n' "$step" 0 "not in STEPS"
        fi
    done
    rest=$((BUDGET - fixed))
    [ "$rest" -lt 0 ] && rest=0
    if ! want sweep; then
        printf '%-12s %8s  %s\n' sweep 0 "not in STEPS"
        rest=0
    elif want distributed; then
        printf '%-12s %8s  %s\n' sweep "$rest" "the time left: $rest s with 2+ GPUs, $((rest + DISTRIBUTED_LIMIT)) s with one\
 (plus what earlier steps leave); runs only with >= $SWEEP_MIN s left"
    else
        printf '%-12s %8s  %s\n' sweep "$rest" "the time left (plus what earlier steps leave); runs only with >= $SWEEP_MIN s left"
    fi
    printf '%-12s %8s  %s\n' total "$((fixed + rest))" "of a $BUDGET s budget: one call, start-up and data generation included"
    if [ "$fixed" -gt "$BUDGET" ]; then
        echo "the limits add up to $fixed s, over the $BUDGET s budget" >&2
        return 1
    fi
}

if [ "${1:-}" = --plan ]; then
    plan
    exit $?
fi

mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # the checkout's relabscope, installed or not
for wheel in "${WHEELS:-$PWD/.whl}"/*.whl; do  # carried pure-Python wheels (e.g. tomli-w) import from the zip
    [ -e "$wheel" ] && PYTHONPATH="$wheel:$PYTHONPATH"
done
: > "$OUT/steps.tsv"
STEP_JSON=()

record() {  # step limit seconds status: one line of steps.tsv, and steps.json rewritten
    printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$OUT/steps.tsv"
    STEP_JSON+=("{\"step\": \"$1\", \"limit_s\": $2, \"seconds\": $3, \"status\": \"${4//\"/\'}\"}")
    local IFS=,
    printf '{"budget_s": %s, "device": "%s", "elapsed_s": %s, "steps": [%s]}\n' \
        "$BUDGET" "$DEVICE" "$SECONDS" "${STEP_JSON[*]}" > "$OUT/steps.json.tmp" && mv "$OUT/steps.json.tmp" "$OUT/steps.json"
    echo "== $1: $4 ($3 s of $2; $SECONDS s of $BUDGET elapsed)"
}

status_of() {  # an exit code as a word
    case $1 in
        0) echo done ;;
        124|137|143) echo "timed out (rc $1)" ;;
        *) echo "failed (rc $1)" ;;
    esac
}

limited() {  # limit command...: the command under the step's limit (TERM at limit - 5, KILL at limit)
    local limit=$1; shift
    timeout -k 5 "$((limit > 10 ? limit - 5 : limit))" "$@"
}

run_step() {  # step limit: run step_<name> if wanted and the time left holds its limit
    local step=$1 limit=$2 left=$((BUDGET - SECONDS)) start=$SECONDS rc
    if ! want "$step"; then
        return
    fi
    if [ "$left" -lt "$limit" ]; then
        record "$step" "$limit" 0 "skipped: $left s left"
        return
    fi
    echo "== $step (limit $limit s, $left s left)"
    RECORDED=0
    "step_$step" "$limit"
    rc=$?
    if [ "$RECORDED" = 1 ]; then return; fi  # the step recorded itself (skipped)
    record "$step" "$limit" "$((SECONDS - start))" "$(status_of "$rc")"
}

step_throughput() {
    limited "$1" $PYTHON benchmarks/throughput.py $THROUGHPUT_ARGS --out "$OUT/throughput.json" \
        2>&1 | tee "$OUT/throughput.log"
    return "${PIPESTATUS[0]}"
}

step_overhead() {
    limited "$1" $PYTHON benchmarks/logging_overhead.py $OVERHEAD_ARGS --out "$OUT/logging_overhead.json" \
        2>&1 | tee "$OUT/logging_overhead.log"
    return "${PIPESTATUS[0]}"
}

step_callback() {
    if ! $PYTHON -c "import lightning.pytorch" 2>/dev/null; then
        record callback "$1" 0 "skipped: lightning does not import (put its wheels in WHEELS)"
        RECORDED=1
        return 0
    fi
    limited "$1" $PYTHON benchmarks/callback_overhead.py $CALLBACK_ARGS --out "$OUT/callback_overhead.json" \
        2>&1 | tee "$OUT/callback_overhead.log"
    return "${PIPESTATUS[0]}"
}

step_speed() {
    limited "$1" $PYTHON benchmarks/method_speed.py $SPEED_ARGS --out "$OUT/method_speed.json" \
        2>&1 | tee "$OUT/method_speed.log"
    return "${PIPESTATUS[0]}"
}

step_dmue() {  # the three placements at once, each a one-cell sweep
    local place ramp pids=() rc=0 pid
    for place in feature neck normalized; do
        ramp=$([ "$place" = feature ] && echo --dmue-center-ramp || echo --dmue-center-full)
        rm -rf "${DMUE_DIR:?}-$place"
        limited "$1" $PYTHON -m relabscope sweep --methods dmue-c --noise 0.3 --seeds 1 --dmue-center-on "$place" \
            "$ramp" $DMUE_ARGS --out "$DMUE_DIR-$place" -q > "$OUT/dmue-$place.log" 2>&1 &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || rc=$?
    done
    for place in feature neck normalized; do
        echo "-- dmue-c, center on $place"
        tail -n 12 "$OUT/dmue-$place.log"
        cp "$DMUE_DIR-$place/runs.csv" "$OUT/dmue-$place.csv" 2>/dev/null
    done | tee "$OUT/dmue.log"
    $PYTHON - "$DMUE_DIR" "$OUT/dmue.json" <<'EOF'
import csv, json, sys
from pathlib import Path
out = {}
for place in ("feature", "neck", "normalized"):
    runs = Path(f"{sys.argv[1]}-{place}") / "runs.csv"
    out[place] = list(csv.DictReader(runs.open())) if runs.is_file() else "no finished run"
Path(sys.argv[2]).write_text(json.dumps(out, indent=2))
EOF
    return "$rc"
}

step_distributed() {
    local gpus ranks
    gpus=$($PYTHON -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
    if [ "$DEVICE" = cpu ] || [ "${gpus:-0}" -lt 2 ]; then
        record distributed "$1" 0 "skipped: ${gpus:-0} GPU(s), needs 2+"
        RECORDED=1
        return 0
    fi
    ranks=$($PYTHON -c "print(','.join(str(n) for n in (1, 2, 4, 8) if n <= $gpus))")
    limited "$1" $PYTHON benchmarks/distributed.py --ranks "$ranks" $DISTRIBUTED_ARGS --out "$OUT/distributed.json" \
        2>&1 | tee "$OUT/distributed.log"
    return "${PIPESTATUS[0]}"
}

step_sweep() {  # limit: the time left; the processes stop 15 s before it, leaving time for the table
    local sweep pids=() i rc=0 pid
    sweep=($PYTHON -m relabscope sweep --methods baseline,scn,scn-c,rul,rul-c,dmue,dmue-c --noise 0.3 --seeds 2
           $SWEEP_ARGS --out "$SWEEP_DIR" -q)
    for i in 1 2 3 4; do  # each stops by 15 s before the step's limit (they start 2 s apart)
        OMP_NUM_THREADS=4 limited "$(($1 - 15 - 2 * (i - 1)))" "${sweep[@]}" > "$OUT/sweep-$i.log" 2>&1 &
        pids+=($!)
        sleep 2  # the first process writes sweep.toml; the others then find it
    done
    for pid in "${pids[@]}"; do
        wait "$pid" || rc=$?
    done
    echo "sweep: 4 processes, $SECONDS s elapsed" | tee "$OUT/sweep.log"
    cat "$OUT"/sweep-?.log >> "$OUT/sweep.log" && rm "$OUT"/sweep-?.log
    limited 15 $PYTHON -c "import sys; from relabscope.sweep import write_tables; print(write_tables(sys.argv[1])[1])" \
        "$SWEEP_DIR" 2>&1 | tee -a "$OUT/sweep.log"
    cp "$SWEEP_DIR/runs.csv" "$OUT/" 2>/dev/null
    return "$rc"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    limited "$SETUP_LIMIT" $PYTHON -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', \
torchvision.__version__, 'cuda', torch.version.cuda, 'GPUs', torch.cuda.device_count())"
} 2>&1 | tee "$OUT/machine.log"
# fail at once, not step by step, when the training stack is incomplete (the GPU image lacks tomli-w:
# carry its wheel in .whl/, see above)
if ! $PYTHON -c "import h5py, pandas, click, tqdm, tomli_w, tabulate, relabscope.training.runner" \
        >> "$OUT/machine.log" 2>&1; then
    tail -n 3 "$OUT/machine.log"
    record setup "$SETUP_LIMIT" "$SECONDS" "failed: the training stack does not import (machine.log)"
    exit 1
fi
record setup "$SETUP_LIMIT" "$SECONDS" done

for step in "${ORDER[@]}"; do
    if [ "$step" = sweep ]; then
        left=$((BUDGET - SECONDS))
        if want sweep && [ "$left" -lt "$SWEEP_MIN" ]; then
            record sweep "$left" 0 "skipped: $left s left, needs $SWEEP_MIN"
            continue
        fi
        run_step sweep "$left"
    else
        run_step "$step" "$(limit_of "$step")"
    fi
done
echo "gpu_check: $SECONDS s of $BUDGET; steps in $OUT/steps.tsv"
cat "$OUT/steps.tsv"
