#!/usr/bin/env bash
# libmlp against FANN and PyTorch on the same shapes, side by side in one
# run (the machine is shared: only ratios taken together mean much).
#   bench/compare.sh [BUILD_DIR]
# Needs a configured build directory and Debian's libfann-dev and
# python3-torch. libmlp and FANN run on one thread; PyTorch on 1 and 2.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

meson compile -C "$build" bench/bench_mlp >/dev/null
cc -O2 -std=c11 bench/fann_bench.c -lfann -lm -o "$out/fann_bench"

echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "family $(grep -m1 'cpu family' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(nproc) cores; $(date -u +%Y-%m-%d)"
OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$build/bench/bench_mlp" >"$out/libmlp.txt"
"$out/fann_bench" >"$out/fann.txt"
OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/torch_bench.py 1 >"$out/torch1.txt"
OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/torch_bench.py 2 >"$out/torch2.txt"
# OpenBLAS's own choice of kernel, without this workplace's compatibility
# override (the roof as OpenBLAS would run it here).
env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OPENBLAS_NUM_THREADS=1 \
    "$build/bench/bench_mlp" | grep '^openblas' | sed 's/^openblas/openblas_native/' \
    >>"$out/libmlp.txt" || true

python3 - "$out" <<'PY'
import sys
out = sys.argv[1]
def load(name):
    rows = {}
    for line in open(f"{out}/{name}.txt"):
        key, value, unit = line.split()[:3]
        rows[key] = (float(value), unit)
    return rows
mine = load("libmlp")
others = {"FANN": load("fann"), "PyTorch 1T": load("torch1"), "PyTorch 2T": load("torch2")}
print(f"{'figure':46} {'libmlp':>12} " + " ".join(f"{k:>22}" for k in others))
for key, (value, unit) in mine.items():
    cells = []
    for rows in others.values():
        if key in rows:
            theirs = rows[key][0]
            # ns: lower is better; rates: higher is better. Ratio = libmlp's advantage.
            ratio = theirs / value if unit == "ns" else value / theirs
            cells.append(f"{theirs:>12.5g} ({ratio:5.2f}x)")
        else:
            cells.append(f"{'-':>22}")
    print(f"{key:46} {value:>12.5g} " + " ".join(cells) + f"  {unit}")
print("(x: libmlp's advantage, >1 means libmlp is faster)")
PY
