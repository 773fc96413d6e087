#!/usr/bin/env bash
# On a GPU machine: install in place, then run the stages named in $STAGES (default all):
#   tests  the whole test suite on CUDA and the AOT compile report
#   bench  the pytest-benchmark suites ($BENCH_FILTER, if set, is passed to -k)
#   train  bench/train_bench.py (the training step per resolution, projected schedule)
# JSON and logs go to $OUT (or bench/results); the benchmark table is printed last.
# One device call is limited to 10 minutes: run the stages in separate calls if needed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
stages="${STAGES:-tests bench train}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
stamp="$(date -u +%Y-%m-%d)"
python -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
  | tee "$out/nvidia-smi.txt"
device="$(python -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "-"))')"
if [[ " $stages " == *" tests "* ]]; then
  python -m pytest tests -q -ra 2>&1 | tee "$out/tests-cuda.log" | tail -n 25
  python -m fastpgan.kernels.aot > "$out/aot.txt" 2>&1; echo "aot compile exit $?"
fi
if [[ " $stages " == *" train "* ]]; then
  python bench/train_bench.py --out "$out/train-bench.json" > "$out/train-bench.log" 2>&1
  echo "training benchmark exit $?"; tail -n 25 "$out/train-bench.log"
fi
if [[ " $stages " == *" bench "* ]]; then
  python -m pytest bench -q --benchmark-enable --benchmark-only \
    ${BENCH_FILTER:+-k "$BENCH_FILTER"} --benchmark-json="$out/bench-raw.json" "$@" \
    > "$out/bench.log" 2>&1
  echo "benchmarks exit $?"
  python bench/summarize.py "$out/bench-raw.json" --out "$out/$stamp-$device.json" \
    | tee "$out/$stamp-$device.txt"
fi
