#!/usr/bin/env bash
# The speed-up from threads: bench_mlp from an OpenMP build (-Dopenmp=enabled)
# run with 1 and with 2 threads, alternating, ROUNDS times each; the best
# figure of each thread count (the machine is shared: single runs with 2
# threads vary by up to 40%) and their ratio, for the batch figures.
#   bench/threads.sh [BUILD_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-omp}
rounds=${2:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

meson configure "$build" 2>/dev/null | grep -E '^ *openmp +enabled' >/dev/null ||
    echo "note: $build may not be an OpenMP build (meson setup $build -Dopenmp=enabled)" >&2
meson compile -C "$build" bench/bench_mlp >/dev/null
for r in $(seq "$rounds"); do
    for t in 1 2; do
        OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=1 "$build/bench/bench_mlp" >"$out/$t.$r"
    done
done

python3 - "$out" "$rounds" <<'PY'
import sys
out, rounds = sys.argv[1], int(sys.argv[2])
best = {1: {}, 2: {}}
for t in (1, 2):
    for r in range(1, rounds + 1):
        for line in open(f"{out}/{t}.{r}"):
            key, value, unit = line.split()[:3]
            if unit == "samples/s":
                best[t][key] = max(best[t].get(key, 0.0), float(value))
print(f"{'figure (samples/s, best of %d)' % rounds:46} {'1 thread':>12} {'2 threads':>12} {'speed-up':>9}")
for key, one in best[1].items():
    if key.endswith("_b1") or key.startswith("openblas"):
        continue  # single samples are not split among threads; the roof is OpenBLAS's
    two = best[2][key]
    print(f"{key:46} {one:12.0f} {two:12.0f} {two / one:8.2f}x")
PY
