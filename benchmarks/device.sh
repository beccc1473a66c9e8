#!/usr/bin/env bash
# The prepared run for a lent GPU machine: the GPU tests (CuPy kernels, CPU/GPU parity, on the
# real weights), the iteration benchmark on the GPU, and a full run of the authors' preset at
# 384 px (potrait1.jpg / picasso.jpg; the authors report 101 s on a Titan X).
#
# Here, first: `make device-bundle` (Chainer's wheel and the two paper images into .device/;
# the machine's image has CuPy, NumPy, Pillow and pytest). Then through the device tool, from
# the repository root:  run(command="bash benchmarks/device.sh", carry=[".device", "models"])
# Everything it prints is also written under $OUT (out/device without the tool); a dry run on
# a CPU: DEVICE=-1 bash benchmarks/device.sh (it skips what needs a GPU).
set -uo pipefail
out=${OUT:-out/device}
device=${DEVICE:-0}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/chainer-mrf-site .device/chainer-*.whl || exit 1
export PYTHONPATH=/tmp/chainer-mrf-site:$PWD
status=0
step() {  # step NAME COMMAND...: runs, logs to $out/NAME.log, remembers a failure
    echo "== $1: ${*:2}"
    "${@:2}" 2>&1 | tee "$out/$1.log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || status=1
}
if [ "$device" -ge 0 ]; then
    step gpu nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
step tests python3 -m pytest -q -rs -m gpu tests
step iteration python3 benchmarks/iteration.py --device "$device" --steps 10
start=$(date +%s%N)
step cnnmrf python3 scripts/generate.py --preset cnnmrf -g "$device" \
    -c .device/potrait1.jpg -s .device/picasso.jpg -o "$out/cnnmrf" --force
echo "cnnmrf whole run: $(( ($(date +%s%N) - start) / 1000000 )) ms (with start-up and saving)" \
    | tee -a "$out/cnnmrf.log"
exit $status
