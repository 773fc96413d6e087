#!/usr/bin/env bash
# The one GPU call (bench/gpu_run.py says what it runs): installs in place on the GPU
# machine, then every stage in priority order, each in its own time box, its results in
# $OUT as it ends, the summary last. GPU_BUDGET_S (default 480) is the whole run's time.
# GPU_DRY_RUN=1 runs each stage on a tiny CPU case instead, without installing (CI does).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
if [[ "${GPU_DRY_RUN:-0}" != "1" ]]; then
  python3 -m pip install --quiet --no-deps --no-build-isolation -e . \
    || echo "gpu.sh: the editable install failed; running from the source tree" >&2
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
exec python3 bench/gpu_run.py
