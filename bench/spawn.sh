#!/usr/bin/env bash
# The ctr-spawn goal row of make bench alone, in a minute or two: `ctr-spawn --net none -- /bin/true` from a
# rootfs record beside runc (runc spec's default bundle, and the config.json ctr-spawn itself writes), node -e 0
# and the floor of a Node wrapper (bench/spawn-floor.cjs), interleaved run by run (bench/ab.mjs), with the goal
# "node start + runc + 20 ms" computed both ways and the time over node + runc split into Node's and ctr-spawn's own.
# SPAWN_ROUNDS=N rounds (default 40). Asserts nothing; for A/B work on ctr-spawn's own time.
set -euo pipefail
cd "$(dirname "$0")"
source ./lib.sh
require_shared_images
out=$(mktemp -d /tmp/conveyor-bench-spawn.XXXXXX)
results="$out/results"; mkdir -p "$results"
cleanup() {
  local status=$?
  stop_registry
  [ -n "${SPAWN_KEEP:-}" ] && { echo "kept $out (registry stopped)" >&2; return "$status"; }
  rm -rf "$out" "${ours_root:-/nonexistent}"
  return "$status"
}
start_registry
trap cleanup EXIT
seed_image "$shared_images/busybox:latest" bench/busybox:latest
bb="$registry/bench/busybox:latest"
fetch=$(tool img-fetch); unpack=$(tool layer-unpack); spawn=$(tool ctr-spawn)
prepare_spawn_bundles
measure_ab spawn "${SPAWN_ROUNDS:-40}" 2 \
  -i "$out/rootfs.json" -n 'ctr-spawn < rootfs record' "$spawn --root $out/store --net none -- /bin/true" \
  -n 'runc run' "runc run --bundle $out/bundle bench-$$" \
  -p "$ours_prepare" -n "runc run (ctr-spawn's config.json)" "runc --root $ours_root --log $ours/runtime.log --log-format json run --bundle $ours bench-ours-$$" \
  -p "$ours_prepare" -n 'node spawning runc (floor)' "$spawn_floor runc --root $ours_root --log $ours/runtime.log --log-format json run --bundle $ours bench-floor-$$" \
  -n 'node -e 0' "node -e 0"
node --input-type=module -e '
  import { readFileSync } from "node:fs";
  import { SPAWN, spawnSplit, spawnTarget } from "./spawn-goal.mjs";
  const results = JSON.parse(readFileSync(process.argv[1], "utf8")).results;
  const median = (name) => results.find((r) => r.command === name)?.median;
  const spawn = median(SPAWN.ours), target = spawnTarget(median);
  for (const runc of [SPAWN.runcDefault, SPAWN.runcOurs]) {
    const goal = target(median(runc));
    console.log(`  goal with ${runc}: ${goal.toFixed(3)} s; ctr-spawn ${spawn.toFixed(3)} s, ${((spawn - goal) * 1000).toFixed(1)} ms ${spawn <= goal ? "under" : "over"}`);
  }
  const split = spawnSplit(median);
  if (split) console.log(`  beyond node + runc: Node spawning runc ${split.node.toFixed(1)} ms (the floor), ctr-spawn\x27s own work ${split.own.toFixed(1)} ms`);
' "$results/spawn.json"
