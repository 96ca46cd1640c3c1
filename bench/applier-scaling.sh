#!/usr/bin/env bash
# Applier scaling: a layer of N entries that replace directories by files, and one of N opaque
# markers (the CPU denial of service of issue 7: each such operation used to scan all of the
# layer's bookkeeping, so the time grew with N²). Unpacks N and 10N of each with
# `layer-unpack --flatten --threads 0` (file creation inline: no thread round trips, so the
# applier's own work shows) and prints the time ratio: about 10 means linear (less, with start-up
# costs), about 100 quadratic.
# Needs nothing from ../shared/images. LAYER_UNPACK=path/to/layer-unpack.js measures another build.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${SCALING_N:-5000}
RUNS=${SCALING_RUNS:-2}
BIN=${LAYER_UNPACK:-tools/layer-unpack/bin/layer-unpack.js}
command -v hyperfine >/dev/null || { echo "applier-scaling: hyperfine is not installed (make setup)"; exit 1; }
WORK=$(mktemp -d /tmp/conveyor-bench-scaling.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
for kind in dir-to-file opaque; do
  for n in "$N" "$((N * 10))"; do node bench/gen-layer.mjs "$kind" "$n" > "$WORK/$kind-$n.tar"; done
  hyperfine --warmup 1 --runs "$RUNS" --export-json "$WORK/$kind.json" --prepare "rm -rf $WORK/t" \
    -n "$kind N=$N" "node $BIN --threads 0 --flatten $WORK/t $WORK/$kind-$N.tar" \
    -n "$kind N=$((N * 10))" "node $BIN --threads 0 --flatten $WORK/t $WORK/$kind-$((N * 10)).tar" >/dev/null
  node -e '
    const [small, big] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results;
    console.log(`  ${process.argv[2].padEnd(12)} N: ${small.median.toFixed(2)} s, 10N: ${big.median.toFixed(2)} s, ratio ${(big.median / small.median).toFixed(1)}x (linear: ~10, quadratic: ~100)`);
  ' "$WORK/$kind.json" "$kind"
done
