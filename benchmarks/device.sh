#!/usr/bin/env bash
# The prepared run for a lent GPU machine: a preflight (a usable GPU, the weights), the GPU
# tests (CuPy kernels, the layers without cuDNN, CPU/GPU parity, on the real weights), the
# iteration benchmark on the GPU, and a full run of the authors' preset at 384 px
# (potrait1.jpg / picasso.jpg; the authors report 101 s on a Titan X).
#
# Here, first: `make device-bundle` (Chainer's wheel and the two paper images into .device/;
# the machine's image has CuPy, NumPy, Pillow and pytest). Then through the device tool, from
# the repository root:  run(command="bash benchmarks/device.sh", carry=[".device", "models"])
#
# The tool brings back at most 8 files from $OUT and the last 12,000 characters of output, so
# this writes $OUT/device.log (everything printed) and the run's folder $OUT/cnnmrf (out.png,
# trace.jsonl, settings.json: --save_iter beyond the run, so no snapshots), and ends by printing
# the test summary and the benchmark table. On the GPU machine a skipped test (GPU or not) or a
# missing weights file is a failure (CHAINER_MRF_NO_SKIP, CHAINER_MRF_REQUIRE_GPU,
# CHAINER_MRF_REQUIRE_WEIGHTS), and an unusable GPU stops it at once (exit 1).
#
# A dry run on a CPU: DEVICE=-1 bash benchmarks/device.sh (GPU tests skip there); QUICK=1
# makes it short (one benchmark step, a 64 px run; tests/test_device_script.py runs that).
# PYTHON picks the interpreter (default python3); Chainer's wheel is installed from .device/
# only where Chainer does not import.
set -uo pipefail
out=${OUT:-out/device}
device=${DEVICE:-0}
python=${PYTHON:-python3}
quick=${QUICK:-0}
mkdir -p "$out"
log="$out/device.log"
: > "$log"
export PYTHONUNBUFFERED=1 CHAINER_MRF_NO_SKIP=1 CHAINER_MRF_REQUIRE_WEIGHTS=1
say() { echo "$@" | tee -a "$log"; }
if ! "$python" -c 'import chainer_mrf, chainer' 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/chainer-mrf-site .device/chainer-*.whl || exit 1
    export PYTHONPATH=/tmp/chainer-mrf-site:$PWD
fi
# Preflight: minutes are scarce; a missing weights file or an unusable GPU ends it here.
if [ ! -f models/vgg16.npz ]; then
    say "preflight: models/vgg16.npz is absent (carry \"models\"; chainer-mrf-weights fetch)"
    exit 1
fi
if [ "$device" -ge 0 ]; then
    export CHAINER_MRF_REQUIRE_GPU=1
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$log"
    "$python" -c 'import sys, chainer_mrf
from chainer.backends import cuda
from chainer_mrf.synthesis import gpu_problem
problem = gpu_problem(int(sys.argv[1]))
version = cuda.cupy.__version__ if cuda.available else "absent"
print("preflight: CuPy %s, cuDNN %s, GPU %s: %s" % (version, cuda.cudnn_enabled, sys.argv[1],
                                                   problem or "usable"))
sys.exit(problem is not None)' "$device" 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
fi
status=0
step() {  # step NAME COMMAND...: runs, appends to the log, remembers a failure
    say "== $1: ${*:2}"
    "${@:2}" 2>&1 | tee -a "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
if [ "$quick" = 1 ]; then
    bench=(--steps 1 --warmup 0 --preset dsanno)
    run=(-c chainer_mrf/data/content_chelsea.png -s chainer_mrf/data/style_hubble_deep_field.png
         --max_size 64 --resolution_num 1 --iter 1)
else
    bench=(--steps 10)
    run=(-c .device/potrait1.jpg -s .device/picasso.jpg)
fi
tests=(-m gpu tests)
[ "$quick" = 1 ] && tests=(-m gpu tests/test_gpu_parity.py tests/test_matching.py)
step tests "$python" -m pytest -q -rs -p no:cacheprovider "${tests[@]}"
step iteration "$python" benchmarks/iteration.py --device "$device" "${bench[@]}"
start=$(date +%s%N)
step cnnmrf "$python" scripts/generate.py --preset cnnmrf -g "$device" "${run[@]}" \
    --save_iter 1000000 -o "$out/cnnmrf" --force
say "cnnmrf whole run: $(( ($(date +%s%N) - start) / 1000000 )) ms (with start-up and saving)"
# The end of the output is what comes back: the test summary and the benchmark table last.
echo "== summary"
grep -E '^(SKIPPED|FAILED|ERROR)|[0-9]+ (passed|failed|skipped|error)' "$log" | tail -n 40
sed -n '/^== iteration/,/^== cnnmrf/p' "$log" | grep -v '^== cnnmrf' | tail -n 60
grep 'cnnmrf whole run' "$log"
echo "device.sh: $([ $status -eq 0 ] && echo ok || echo FAILED), $(find "$out" -type f | wc -l) files under $out"
exit $status
