#!/usr/bin/env bash
# One session on a lent GPU machine: the CUDA tests, then the GPU benchmarks, in one command.
#
# The machine has PyTorch but no aiida, ASE, vesin, core-optimizer or TorchANI, and cannot
# reach PyPI; the engine needs no aiida. Prepare here, in the repository root:
#   echo /.whl/ >> .git/info/exclude; echo /.devdata/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .whl ase==3.29.0 vesin==0.6.2 torchani==2.9.0
#   pip wheel --no-deps -w .whl core-optimizer==1.1.0
#   mkdir -p .devdata/data && cp -r ../shared/data/sn2 .devdata/data/
# then run `bash benchmarks/gpu_session.sh` there with .whl and .devdata carried. What it
# writes under $OUT comes back: the test log and the *_cuda.json results.
set -u
OUT=${OUT:-/tmp/lmlp-gpu}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TORCHANI_NO_WARN_EXTENSIONS=1
# the benchmarks and tests read the SN2 data from ../shared, as in a checkout here
if [ ! -d ../shared/data/sn2 ]; then mkdir -p ../shared && cp -r .devdata/data ../shared/; fi
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; python3 -c "import torch; print(torch.__version__)"; } | tee "$OUT/machine.txt"
step() {  # step NAME SECONDS COMMAND...: one part; a failure or a timeout does not stop the others
    local name=$1 seconds=$2
    shift 2
    echo "== $name"
    local start=$SECONDS
    timeout "$seconds" "$@" >"$OUT/$name.log" 2>&1
    echo "== $name: exit $? after $((SECONDS - start)) s"
    tail -n 25 "$OUT/$name.log"
}
step cuda_tests 150 python3 -m pytest -q --noconftest -p no:cacheprovider tests/potential/test_cuda.py
step profile 200 python3 benchmarks/gpu_profile.py --device cuda --compile
step ensemble 120 python3 benchmarks/ensemble_and_scaling.py --device cuda
step descriptor 120 python3 benchmarks/descriptor_throughput.py --device cuda
# the training benchmark is unchanged by most engine work: LMLP_GPU_TRAINING=1 adds it
[ "${LMLP_GPU_TRAINING:-0}" = 1 ] && step training 140 python3 benchmarks/training_throughput.py --device cuda
cp benchmarks/results/*_cuda.json "$OUT/" 2>/dev/null
ls -la "$OUT"
