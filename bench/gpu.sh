#!/usr/bin/env bash
# On a GPU machine: install in place, run the whole test suite on CUDA, the AOT compile
# report and the benchmarks; write JSON and logs to $OUT (or bench/results) and print
# the benchmark table last.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1
stamp="$(date -u +%Y-%m-%d)"
python -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv \
  | tee "$out/nvidia-smi.txt"
python -m pytest tests -q -ra 2>&1 | tee "$out/tests-cuda.log" | tail -n 25
python -m fastpgan.kernels.aot > "$out/aot.txt" 2>&1; echo "aot compile exit $?"
python -m pytest bench -q --benchmark-enable --benchmark-only \
  --benchmark-json="$out/bench-raw.json" "$@" > "$out/bench.log" 2>&1
echo "benchmarks exit $?"
python bench/train_bench.py --out "$out/train-bench.json" > "$out/train-bench.log" 2>&1
echo "training benchmark exit $?"; tail -n 25 "$out/train-bench.log"
device="$(python -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "-"))')"
python bench/summarize.py "$out/bench-raw.json" --out "$out/$stamp-$device.json" \
  | tee "$out/$stamp-$device.txt"
