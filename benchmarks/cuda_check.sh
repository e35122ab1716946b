#!/usr/bin/env bash
# The torch backend on a CUDA machine, in one go: the GPU tests, cases A-F on CUDA, then the
# rest of the torch tests (on the CPU, with that machine's torch). Run it from the repository
# root where python3 has torch with CUDA (and pytest-xdist); logs and JSON go to $OUT.
#
#   OUT=/tmp/cuda-check bash benchmarks/cuda_check.sh
set -u
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
status=0
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name())" || exit 1
if ! python3 -m pip install -q --no-deps --no-build-isolation --no-cache-dir . ; then
    echo "pip install failed: using the source tree"
    export PYTHONPATH=$PWD:$PWD/backends
fi

echo "== GPU tests"
timeout 200 python3 -m pytest tests/backend_torch -m gpu -q -p no:cacheprovider -n 8 \
    --junitxml="$OUT/gpu-tests.xml" 2>&1 | tee "$OUT/gpu-tests.log" | tail -25
[ "${PIPESTATUS[0]}" = 0 ] || status=1

echo "== cases A-F on CUDA"
timeout 200 python3 benchmarks/run.py --impl torch --device cuda --cases A B C D E F \
    --steps 10 --warmup 3 --json "$OUT/cuda.json" 2>&1 | tee "$OUT/bench.log" | tail -12
[ "${PIPESTATUS[0]}" = 0 ] || status=1

if [ "${CUDA_CHECK_ALL:-1}" = 1 ]; then
    echo "== the other torch tests (CPU) with this machine's torch"
    timeout "${CUDA_CHECK_ALL_TIMEOUT:-150}" python3 -m pytest tests/backend_torch \
        -m "not gpu" -q -p no:cacheprovider -n 12 2>&1 | tee "$OUT/cpu-tests.log" | tail -8
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
fi
exit $status
