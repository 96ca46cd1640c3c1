#!/usr/bin/env bash
# Unpack benchmark: layer-unpack --flatten vs GNU tar -xzf vs umoci raw unpack on the 30 MB
# debian image (../shared/images/debian:bookworm-slim, one tar+gzip layer), side by side with
# hyperfine. Prints the ratios against the goals: within 1.2x GNU tar, 2x faster than umoci.
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGES=${SHARED_IMAGES:-$(cd .. && pwd)/shared/images}
LAYOUT="$IMAGES/debian"
RUNS=${RUNS:-10}
if [ ! -f "$LAYOUT/index.json" ]; then
  echo "unpack: skipped ($LAYOUT absent)"
  exit 0
fi
for tool in hyperfine umoci tar jq; do
  command -v "$tool" >/dev/null || { echo "unpack: $tool is not installed (make setup)"; exit 1; }
done
manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "bookworm-slim") | .digest' "$LAYOUT/index.json")
layer=$(jq -r '.layers[0].digest' "$LAYOUT/blobs/sha256/${manifest#sha256:}")
BLOB="$LAYOUT/blobs/sha256/${layer#sha256:}"
WORK=$(mktemp -d /tmp/conveyor-bench-unpack.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
T="$WORK/target"
OUT="$WORK/results.json"
hyperfine --warmup 1 --runs "$RUNS" --export-json "$OUT" \
  --prepare "rm -rf $T" \
  -n layer-unpack "node tools/layer-unpack/bin/layer-unpack.js --flatten $T $BLOB" \
  -n tar "mkdir $T && tar -xzf $BLOB -C $T" \
  -n umoci "umoci raw unpack --image $LAYOUT:bookworm-slim $T"
jq -r '
  (.results | map({(.command): .median}) | add) as $m
  | "unpack medians: layer-unpack \($m["layer-unpack"] * 1000 | floor) ms, tar -xzf \($m.tar * 1000 | floor) ms, umoci \($m.umoci * 1000 | floor) ms",
    "layer-unpack / tar   = \($m["layer-unpack"] / $m.tar * 100 | round / 100)x (goal <= 1.2)",
    "umoci / layer-unpack = \($m.umoci / $m["layer-unpack"] * 100 | round / 100)x (goal >= 2)"' "$OUT"
