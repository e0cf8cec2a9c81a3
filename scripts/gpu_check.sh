#!/usr/bin/env bash
# Issue 21's GPU checks as one prepared command, for a CUDA machine with PyTorch and Triton but no
# network (flash-linear-attention's pure-Python wheels travel with the working tree in .whl/).
#
#   bash scripts/gpu_check.sh fetch    # here, once, with the package registry: wheels into .whl/
#   bash scripts/gpu_check.sh check    # there: scripts/gpu_check.py (< 8 min): contract, tests, benchmark
#   bash scripts/gpu_check.sh extra    # there: compile gain, fused step loops, mamba's modes (< 5 min;
#                                      # on the same warm machine if 6 minutes of device time remain)
#   bash scripts/gpu_check.sh tiny     # anywhere: every stage at toy size on the CPU (checks this script)
#
# Results and logs go to $OUT (the device tool's folder that comes back) or ./gpu_out; each stage
# writes its file as it finishes, so a stage cut off by its time limit keeps the ones before it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_out}
stage=${1:-check}

if [ "$stage" = fetch ]; then
    python3 -m pip download --no-deps --only-binary=:all: -d .whl "fla-core==0.6.0" "flash-linear-attention==0.6.0"
    exclude=$(git rev-parse --git-path info/exclude)
    grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >>"$exclude"
    exit 0
fi

case "$stage" in
check | extra | tiny) ;;
*)
    echo "unknown stage '$stage': expected fetch, check, extra or tiny" >&2
    exit 2
    ;;
esac

mkdir -p "$out"
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 - <<'PY' | tee "$out/machine.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
for name in ("triton", "fla"):
    try:
        print(name, __import__(name).__version__)
    except ImportError:
        print(name, "not installed")
PY

# run NAME SECONDS COMMAND...: one stage, its output in $out/NAME.log; a failure does not stop the rest
status=0
run() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (at most $limit s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.log" || status=1
}

case "$stage" in
check)
    run gpu_check 470 python3 scripts/gpu_check.py --device cuda --out "$out/gpu_check.md"
    ;;
extra)
    mixers=gla,rwkv6,deltanet,retention,mamba2
    run compile_gain 180 python3 benchmarks/compile_gain.py --device cuda --mixers "$mixers" \
        --seq-len 4096 --batch-size 4 --rounds 2
    run sequential_loops 60 python3 benchmarks/sequential_loops.py --device cuda --seq-len 1024 --dtype bfloat16
    run mamba_chunk 60 python3 benchmarks/mamba_chunk.py --device cuda --seq-lens 1024,4096 --batch-size 4 \
        --dtype bfloat16
    ;;
tiny)
    run gpu_check 600 python3 scripts/gpu_check.py --device cpu --tiny --tests-k "cpu and gla" \
        --skip checks --out "$out/gpu_check.md"
    run compile_gain 300 python3 benchmarks/compile_gain.py --mixers linear_attention --seq-len 64 \
        --dim 32 --rounds 1 --repeats 1
    run sequential_loops 120 python3 benchmarks/sequential_loops.py --seq-len 16 --dim 32 --repeats 1
    run mamba_chunk 120 python3 benchmarks/mamba_chunk.py --seq-lens 32 --dim 32 --rounds 1
    ;;
esac
exit $status
