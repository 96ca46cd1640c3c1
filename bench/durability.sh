#!/usr/bin/env bash
# The cost of durable writes (lib-common durable.ts: fsync before each publishing rename, the directory
# after, one syncfs per unpacked layer): the same commands with and without `eatmydata`, which turns
# fsync, fdatasync, sync and syncfs into no-ops with LD_PRELOAD (inherited by every tool and child).
#   pull + unpack: cold img-fetch | layer-unpack of the 30 MB debian from a loopback registry
#   build:         cold img-build of a small Dockerfile (FROM busybox, RUN, COPY)
#   layer sync:    the unpacked debian tree (4,203 entries, written with eatmydata so it is all
#                  dirty) made durable by one `sync -f` (what layer-unpack does) or by an fsync per file
# Prints medians, quartiles and ratios (target: under 1.10x on pull + unpack). Asserts nothing.
# Method (bench/ab.mjs): the two sides of each figure alternate round by round (each round in a random order),
# every run writes into a directory of its own, and what it wrote is removed and synced (`rm -rf; sync`, then a
# settle) after its clock stopped. The old method freed the previous tree in hyperfine's --prepare, right before
# the timed run: on this ext4 (online discard) the durable side's syncfs then waited behind those discards and
# behind the eatmydata side's dirty pages, while the eatmydata side never synced, and the figure moved from +3%
# to +118% over five runs of the same code.
set -euo pipefail
cd "$(dirname "$0")"
source ./lib.sh
require_shared_images
for t in eatmydata cc; do
  command -v "$t" >/dev/null || { echo "durability: $t is not installed (make setup)" >&2; exit 1; }
done
RUNS=${RUNS:-5}
# Each side runs twice RUNS times (interleaved), after one warm-up round; SETTLE seconds after each clean-up.
# (The syncfs-vs-fsync comparison, an 18x gap, runs RUNS times: its fsync side takes seconds a run.)
rounds=$((RUNS * 2)); settle=${SETTLE:-0.5}
out=$(mktemp -d /tmp/conveyor-bench-durability.XXXXXX)
results=$out
start_registry
trap 'rm -rf "$out"; stop_registry' EXIT
seed_image "$shared_images/debian:bookworm-slim" bench/debian:bookworm-slim
seed_image "$shared_images/busybox:latest" bench/busybox:latest
image="$registry/bench/debian:bookworm-slim"
fetch=$(tool img-fetch); unpack=$(tool layer-unpack); build=$(tool img-build)

mkdir -p "$out/runs"
# Nothing left dirty or freed by what ran before this script reaches the first timed run.
sync; sleep "$settle"
clean="rm -rf $out/runs/{run}; sync"
pull="bash -c '$fetch -q --root $out/runs/{run} $image | $unpack -q --root $out/runs/{run} >/dev/null'"
echo "== cold pull + unpack of the 30 MB debian, without and with fsync"
measure_ab pull "$rounds" 1 --cleanup "$clean" --settle "$settle" \
  -n 'pull + unpack (eatmydata: no fsync)' "eatmydata $pull" \
  -n 'pull + unpack (durable)' "$pull"

ctx="$out/context"
mkdir -p "$ctx"
head -c 1000000 /dev/urandom > "$ctx/data"
printf 'FROM %s\nRUN echo built > /built && mkdir -p /app\nCOPY data /app/data\nCMD ["cat", "/built"]\n' "$registry/bench/busybox:latest" > "$ctx/Dockerfile"
b="$build -q --root $out/runs/{run} -t bench $ctx"
echo "== cold img-build of a small Dockerfile (FROM busybox, RUN, COPY), without and with fsync"
measure_ab build "$rounds" 1 --cleanup "$clean" --settle "$settle" \
  -n 'img-build (eatmydata: no fsync)' "eatmydata $b" \
  -n 'img-build (durable)' "$b"

# The tree of one unpacked layer, written without any sync; each run syncs a fresh copy.
echo "== making an unpacked debian tree durable: one syncfs vs an fsync per file"
fsync_each="$out/fsync-each.mjs"
cat > "$fsync_each" <<'EOF'
import { lstatSync, openSync, fsyncSync, closeSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
const walk = (dir) => {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const info = lstatSync(path);
    if (info.isDirectory()) walk(path);
    if (!info.isFile() && !info.isDirectory()) continue;
    const fd = openSync(path, 'r');
    fsyncSync(fd);
    closeSync(fd);
  }
};
walk(process.argv[2]);
EOF
$fetch -q --root "$out/tree" "$image" > "$out/records"
# The old tree is removed and synced before the fresh one is written, not inside the timed sync.
fresh="rm -rf $out/tree/layers && sync && eatmydata $unpack -q --root $out/tree < $out/records >/dev/null"
measure_ab sync "$RUNS" 1 --prepare "$fresh" \
  -n 'sync -f (syncfs, one child)' "sync -f $out/tree/layers" \
  -n 'fsync per file and directory' "node $fsync_each $out/tree/layers"

# What the waits themselves cost, immune to the machine's load: the time spent inside fsync,
# fdatasync and syncfs during one durable pull + unpack (strace -T), beside that run's wall time.
if command -v strace >/dev/null; then
  echo "== time inside fsync/fdatasync/syncfs during one durable pull + unpack (strace -T)"
  rm -rf "$out/traced"
  start=$(date +%s.%N)
  strace -f -T -e trace=fsync,fdatasync,syncfs -o "$out/fetch.trace" $fetch -q --root "$out/traced" "$image" > "$out/traced.records"
  strace -f -T -e trace=fsync,fdatasync,syncfs -o "$out/unpack.trace" $unpack -q --root "$out/traced" < "$out/traced.records" >/dev/null
  wall=$(echo "$(date +%s.%N) - $start" | bc)
  node -e '
    const fs = require("fs");
    const [fetchTrace, unpackTrace, wall] = process.argv.slice(1);
    const waits = (file) => fs.readFileSync(file, "utf8").split("\n").filter((l) => /(fsync|syncfs)\(/.test(l)).map((l) => Number((/<([\d.]+)>$/.exec(l) ?? [0, 0])[1]));
    const sum = (xs) => xs.reduce((a, b) => a + b, 0);
    const f = waits(fetchTrace), u = waits(unpackTrace);
    console.log(`  img-fetch: ${f.length} calls, ${sum(f).toFixed(3)} s; layer-unpack: ${u.length} calls, ${sum(u).toFixed(3)} s; ${((sum(f) + sum(u)) / Number(wall) * 100).toFixed(1)}% of the traced run (${Number(wall).toFixed(2)} s)`);
  ' "$out/fetch.trace" "$out/unpack.trace" "$wall"
fi

# The cost round by round (each round ran both sides next to each other, so what drifts between rounds cancels):
# the median of the rounds' durable/eatmydata ratios is the figure, with their quartiles and range as its spread,
# and the ratio of the two sides' medians beside it.
node -e '
  const fs = require("fs");
  const load = (file) => JSON.parse(fs.readFileSync(file, "utf8")).results;
  const q = (xs, p) => { const s = [...xs].sort((a, b) => a - b); const at = (s.length - 1) * p, lo = Math.floor(at); return s[lo] + ((s[lo + 1] ?? s[lo]) - s[lo]) * (at - lo); };
  const pct = (x) => `${x >= 1 ? "+" : ""}${((x - 1) * 100).toFixed(1)}%`;
  const cost = (file) => {
    const [fast, durable] = load(file);
    if (!fast?.median || !durable?.median) return "not measured";
    const pairs = fast.times.length === durable.times.length ? durable.times.map((t, i) => t / fast.times[i]) : [];
    const ofMedians = `ratio of the medians ${pct(durable.median / fast.median)}`;
    if (!pairs.length) return ofMedians;
    return `${pct(q(pairs, 0.5))} (median of ${pairs.length} rounds; quartiles ${pct(q(pairs, 0.25))} to ${pct(q(pairs, 0.75))}, range ${pct(q(pairs, 0))} to ${pct(q(pairs, 1))}; ${ofMedians})`;
  };
  console.log(`durable writes cost: pull + unpack ${cost(process.argv[1])} (target under +10%)`);
  console.log(`durable writes cost: img-build ${cost(process.argv[2])}`);
' "$out/pull.json" "$out/build.json"
