#!/usr/bin/env bash
# One-shot GPU suite for a lent GPU machine (no network; torch cu130 preinstalled):
# build for sm_90, GPU tests, compute-sanitizer, device ceilings, benchmarks.
# Everything lands in $OUT (at most 8 files come back). Run it through the device tool:
#   run(command="bash benchmarks/gpu_suite.sh", timeout_s=600)
set -uo pipefail
OUT=${OUT:-gpu-suite-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
step() { echo "=== $1 ($(date +%T))"; }

step "environment"
{ nvidia-smi; python -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__)"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

step "build"
TORCH_CUDA_ARCH_LIST=9.0 STYLEGAN_OPS_CUDA=1 MAX_JOBS=16 \
  pip install --no-build-isolation --no-deps -v -e . > "$OUT/build.log" 2>&1 || { tail -n 60 "$OUT/build.log"; exit 1; }
python -c "import stylegan_ops as so; print(so.build_info(), so.available_backends('cuda'))" | tee -a "$OUT/env.txt"

step "tests (all, GPU-marked included)"
timeout 150 python -m pytest -q -p no:cacheprovider tests > "$OUT/tests.log" 2>&1
echo "pytest status $?"; tail -n 5 "$OUT/tests.log"

step "compute-sanitizer"
SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
for tool in memcheck racecheck; do
  timeout 60 "$SANITIZER" --tool "$tool" --error-exitcode 1 python benchmarks/sanitizer_run.py >> "$OUT/sanitizer.log" 2>&1
  echo "$tool status $?" | tee -a "$OUT/sanitizer.log"
done

step "ceilings"
timeout 30 python benchmarks/ceilings.py "$OUT/ceilings.json"

step "benchmarks"
timeout 200 python -m pytest -q -p no:cacheprovider benchmarks/ \
  --benchmark-json "$OUT/bench.json" --benchmark-columns=median,iqr > "$OUT/bench.log" 2>&1
echo "benchmark status $?"; tail -n 40 "$OUT/bench.log"
