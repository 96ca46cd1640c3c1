#!/usr/bin/env bash
# make bench: conveyor side by side with its peers, in one run, on this machine, and
# docs/performance.md regenerated from what it measured (the issue-17 table, peak RSS beside every
# figure, each figure's command, the scale figures and the older sections' output).
# Reports medians and ratios; asserts nothing (timings belong here, not in tests).
# BENCH_QUICK=1: 2 runs per figure and smaller scale figures (a check of the script in a few minutes).
# BENCH_DOC=FILE writes the document elsewhere (default docs/performance.md); BENCH_RUNS=N runs per
# figure; BENCH_EXTRA_RUNS=N for the older scripts (unpack, ports, build, durability) alone.
set -euo pipefail
cd "$(dirname "$0")"
source ./lib.sh
require_shared_images
for t in hyperfine skopeo umoci runc; do
  command -v "$t" >/dev/null || { echo "bench: $t missing (make setup)" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time missing (make setup: GNU time)" >&2; exit 1; }
# A bundle older than the code tsc compiled falls back to dist/cli.js (lib-common/src/start.ts), which is slower:
# measure the bundles and their code caches, or say why not.
for t in img-fetch layer-unpack ctr-spawn img-ls; do
  said=$(CONVEYOR_START_DEBUG=1 $(tool "$t") --no-such-flag 2>&1 >/dev/null || true)
  [[ $said == *'(cache accepted)'* ]] || { echo "bench: $t does not run its bundle with its code cache (make build): $said" >&2; exit 1; }
done
quick=${BENCH_QUICK:-}
if [ -n "$quick" ]; then runs=${BENCH_RUNS:-2}; else runs=${BENCH_RUNS:-5}; fi
out=$(mktemp -d /tmp/conveyor-bench.XXXXXX)
results="$out/results"; mkdir -p "$results"
doc=${BENCH_DOC:-$bench_root/docs/performance.md}
began=$(date +%s)
node "$bench_root/bench/facts.mjs" before > "$results/facts-before.json"

cleanup() {
  local status=$?
  if [ -n "${docker_pid:-}" ]; then
    kill "$docker_pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$docker_pid" 2>/dev/null || break; sleep 0.1; done
    umount -R "$out/docker/data/overlay2" 2>/dev/null || true
  fi
  # An if, not `[ ] && kill`: stop_registry takes the status of the command before it as the run's.
  if [ -n "${slow_pid:-}" ]; then kill "$slow_pid" 2>/dev/null || true; fi
  stop_registry
  rm -rf "$out" "${ours_root:-/nonexistent}"
  return "$status"
}

start_registry
trap cleanup EXIT
seed_image "$shared_images/debian:bookworm-slim" bench/debian:bookworm-slim
seed_image "$shared_images/busybox:latest" bench/busybox:latest
image="$registry/bench/debian:bookworm-slim"
bb="$registry/bench/busybox:latest"
fetch=$(tool img-fetch); unpack=$(tool layer-unpack); spawn=$(tool ctr-spawn)

# A private dockerd (as test/helpers/dockerd.ts starts one): its own socket and data root, no host networking.
docker_reason=""
if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
  docker_reason="not installed"
else
  mkdir -p "$out/docker"
  dockerd -H "unix://$out/docker/docker.sock" --data-root "$out/docker/data" --exec-root "$out/docker/exec" \
    --pidfile "$out/docker/docker.pid" --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
    --bridge=none --userland-proxy=false --storage-driver overlay2 --exec-opt native.cgroupdriver=cgroupfs \
    --insecure-registry "$registry" > "$out/docker/log" 2>&1 &
  docker_pid=$!
  docker_reason="did not answer in 30 s"
  for _ in $(seq 120); do
    if ! kill -0 "$docker_pid" 2>/dev/null; then docker_reason="exited at start: $(tail -1 "$out/docker/log")"; break; fi
    if docker -H "unix://$out/docker/docker.sock" version >/dev/null 2>&1; then docker_reason=""; break; fi
    sleep 0.25
  done
fi
docker_="docker -H unix://$out/docker/docker.sock"
if [ -n "$docker_reason" ]; then echo "bench: docker skipped: dockerd $docker_reason"; fi
podman_reason=""
command -v podman >/dev/null || podman_reason="not installed"
printf '%s\n%s\n' "$docker_reason" "$podman_reason" > "$results/skips.txt"

echo "== pull 30 MB debian into an empty store (cold) beside skopeo copy"
measure_interleaved fetch "$((runs * 2))" 1 "rm -rf $out/skopeo $out/store" \
  skopeo "skopeo copy -q --src-tls-verify=false docker://$image oci:$out/skopeo:bench" \
  img-fetch "$fetch -q --root $out/store $image"

echo "== re-pull of a present image"
$fetch -q --root "$out/store" "$image" >/dev/null
measure repull "$((runs * 2))" 1 "" \
  'node -e 0' "node -e 0" \
  img-fetch "$fetch -q --root $out/store $image" \
  'img-fetch --pull=missing' "$fetch -q --pull=missing --root $out/store $image"

echo "== fetch + unpack of a cold image (streamed: img-fetch | layer-unpack)"
cmds=('img-fetch | layer-unpack' "bash -c '$fetch -q --root $out/cold $image | $unpack -q --root $out/cold >/dev/null'"
      'skopeo + umoci unpack' "bash -c 'skopeo copy -q --src-tls-verify=false docker://$image oci:$out/sk:b && umoci raw unpack --image $out/sk:b $out/umoci-rootfs'")
prep="rm -rf $out/sk $out/umoci-rootfs $out/cold $out/podman; mkdir -p $out/cold"
if [ -z "$docker_reason" ]; then
  cmds+=('docker pull' "$docker_ pull -q $image")
  prep="$prep; $docker_ rmi -f $image >/dev/null 2>&1; true"
fi
if [ -z "$podman_reason" ]; then
  cmds+=('podman pull' "podman --runtime runc --root $out/podman --runroot $out/podman-run pull -q --tls-verify=false $image")
fi
measure_interleaved cold "$((runs + 3))" 1 "$prep" "${cmds[@]}"

slow_mbit=100
echo "== fetch + unpack of a cold image over a $slow_mbit Mbit/s link (bench/slow-link.mjs in front of the registry)"
# Where the download takes seconds, as from a registry across the internet, layer-unpack unpacking a layer while it
# downloads (img-fetch's download records) shows; `img-fetch, then layer-unpack` is the same tools without that.
node "$bench_root/bench/slow-link.mjs" --to "$registry" --rate "$slow_mbit" > "$out/slow-link.port" &
slow_pid=$!
for _ in $(seq 50); do [ -s "$out/slow-link.port" ] && break; sleep 0.1; done
slow_image="127.0.0.1:$(cat "$out/slow-link.port")/bench/debian:bookworm-slim"
cmds=('img-fetch | layer-unpack' "bash -c '$fetch -q --root $out/cold $slow_image | $unpack -q --root $out/cold >/dev/null'"
      'img-fetch, then layer-unpack' "bash -c '$fetch -q --root $out/cold $slow_image > $out/fetched.ndjson && $unpack -q --root $out/cold < $out/fetched.ndjson >/dev/null'"
      'skopeo + umoci unpack' "bash -c 'skopeo copy -q --src-tls-verify=false docker://$slow_image oci:$out/sk:b && umoci raw unpack --image $out/sk:b $out/umoci-rootfs'")
prep="rm -rf $out/sk $out/umoci-rootfs $out/cold; mkdir -p $out/cold"
if [ -z "$docker_reason" ]; then
  # A loopback registry is insecure to dockerd without saying so (127.0.0.0/8).
  cmds+=('docker pull' "$docker_ pull -q $slow_image")
  prep="$prep; $docker_ rmi -f $slow_image >/dev/null 2>&1; true"
fi
measure_interleaved slow "$runs" 1 "$prep" "${cmds[@]}"
kill "$slow_pid" 2>/dev/null; slow_pid=""

echo "== run /bin/true from a present image"
# --net none on every side: docker run's --network none (the private dockerd has no bridge) and runc's default spec
# (a new network namespace, nothing in it); ctr-spawn's default (pasta, outbound access) is not what the peers do.
prepare_spawn_bundles
# Like for like: docker run's pull policy is `missing` (no registry request for a present image), as is conveyor-run's
# (scripts/run.mjs: img-fetch --pull=missing | layer-unpack | ctr-spawn); `--pull=always` on both sides asks the
# registry for the manifest first (img-fetch's own default, docker pull's behaviour).
cmds=('img-fetch --pull=missing | layer-unpack | ctr-spawn' "bash -c '$fetch -q --pull=missing --root $out/store $bb | $unpack -q --root $out/store | $spawn --root $out/store --net none -- /bin/true'"
      'img-fetch | layer-unpack | ctr-spawn' "bash -c '$fetch -q --root $out/store $bb | $unpack -q --root $out/store | $spawn --root $out/store --net none -- /bin/true'"
      'ctr-spawn < rootfs record' "bash -c '$spawn --root $out/store --net none -- /bin/true < $out/rootfs.json'"
      'runc run' "runc run --bundle $out/bundle bench-$$"
      'node -e 0' "node -e 0"
      # The floor of any pipeline of three Node tools on this machine, before any of them does work.
      '3 piped node -e 0' "bash -c 'node -e 0 | node -e 0 | node -e 0'")
if [ -z "$docker_reason" ]; then
  $docker_ pull -q "$bb" >/dev/null
  cmds+=('docker run' "$docker_ run --rm --network none $bb /bin/true"
         'docker run --pull=always' "$docker_ run --rm --pull=always --network none $bb /bin/true")
fi
if [ -z "$podman_reason" ]; then
  podman --runtime runc --root "$out/podman2" --runroot "$out/podman2-run" pull -q --tls-verify=false "$bb" >/dev/null
  cmds+=('podman run' "podman --runtime runc --root $out/podman2 --runroot $out/podman2-run run --rm --network none $bb /bin/true")
fi
measure_interleaved run "$((runs * 3))" 2 "" "${cmds[@]}"

echo "== ctr-spawn alone beside runc (runc spec's default bundle, ctr-spawn's own config.json) and node -e 0, interleaved (bench/ab.mjs)"
# The goal "node start + runc + 20 ms" adds up three figures a few tens of ms each: measured in hyperfine blocks one
# after another, a loaded machine moved each block (runc's default bundle came out slower than the full spec):
# here they alternate run by run, each round in a new random order, with CPU (user+sys) beside wall time.
# The record is ctr-spawn's stdin by ab.mjs -i, not through `bash -c '... < file'`: runc and node -e 0 are run with
# no shell either (bash's start-up was 3-15 ms of the row's figure on this VM).
measure_ab spawn "$((runs * 4))" 2 \
  -i "$out/rootfs.json" -n 'ctr-spawn < rootfs record' "$spawn --root $out/store --net none -- /bin/true" \
  -n 'runc run' "runc run --bundle $out/bundle bench-$$" \
  -p "$ours_prepare" -n "runc run (ctr-spawn's config.json)" "runc --root $ours_root --log $ours/runtime.log --log-format json run --bundle $ours bench-ours-$$" \
  -p "$ours_prepare" -n 'node spawning runc (floor)' "$spawn_floor runc --root $ours_root --log $ours/runtime.log --log-format json run --bundle $ours bench-floor-$$" \
  -n 'node -e 0' "node -e 0"

echo "== tool start-up: --help of every tool beside node -e 0, interleaved run by run (bench/ab.mjs)"
# A --help run is Node plus a few ms: on a ~40 ms base, the 3-8 ms of noise between runs decided which tools came
# out over 1.2x when each was measured in its own hyperfine block. Here every round runs all 28 tools once and
# `node -e 0` ten times (a baseline next to every few tools) in a new random order, so that drift lands on both
# sides alike; each run's CPU (user+sys, bench/rusage.c) is reported beside its wall time, as it is far less
# disturbed by the other jobs on the machine. About two minutes at the default 5 runs (60 rounds).
startup_rounds=${BENCH_STARTUP_ROUNDS:-$([ -n "$quick" ] && echo 4 || echo $((runs * 12)))}
cmds=(-x 10 -n 'node -e 0' "node -e 0")
# What every Node process here would pay with the environment's NODE_EXTRA_CA_CERTS (lib.sh unsets it).
[ -n "$bench_extra_ca_certs" ] && cmds+=(-n 'node -e 0 with NODE_EXTRA_CA_CERTS' "env NODE_EXTRA_CA_CERTS=$bench_extra_ca_certs node -e 0")
for t in "$bench_root"/tools/*/; do
  t=$(basename "$t")
  cmds+=(-n "$t" "$(tool "$t") --help")
done
started=$(date +%s)
measure_ab startup "$startup_rounds" 1 "${cmds[@]}"
echo "  (start-up took $(( $(date +%s) - started )) s)"

echo "== scale: img-ls with many images, a many-layer image, a big layer, many containers (bench/scale.sh)"
results=$results bash scale.sh "$registry" | tee "$results/scale.txt"

for section in "unpack.sh|unpack 30 MB debian (one layer) into a directory" \
               "applier-scaling.sh|applier scaling: 10x the entries should take about 10x the time" \
               "ports.sh|100 MB through a published port (ctr-spawn -p, the userspace relay) beside the host's loopback" \
               "build.sh|img-build beside buildah bud: a multi-step Dockerfile cold and cached" \
               "durability.sh|the cost of durable writes: pull + unpack and img-build with and without eatmydata"; do
  script=${section%%|*}; title=${section#*|}
  echo "== $title (bench/$script)"
  printf '%s\n' "$title" > "$results/extra-$script.title"
  RUNS=${BENCH_EXTRA_RUNS:-$runs} SCALING_RUNS=$([ -n "$quick" ] && echo 1 || echo 2) SCALING_N=$([ -n "$quick" ] && echo 1000 || echo 5000) bash "$script" 2>&1 | tee "$results/extra-$script.txt" || true
done

node "$bench_root/bench/facts.mjs" after > "$results/facts-after.json"
node "$bench_root/bench/table.mjs" "$results" "$doc" "$(( $(date +%s) - began ))" "${quick:+quick}" "$runs"
echo "bench: wrote $doc"
