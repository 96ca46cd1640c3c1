#!/usr/bin/env bash
# make bench: conveyor side by side with its peers, in one run, on this machine.
# Reports medians and ratios; asserts nothing (timings belong here, not in tests).
set -euo pipefail
cd "$(dirname "$0")"
source ./lib.sh
require_shared_images
command -v hyperfine >/dev/null || { echo "bench: hyperfine missing (make setup)" >&2; exit 1; }
out=$(mktemp -d /tmp/conveyor-bench.XXXXXX)
runs=${BENCH_RUNS:-5}

start_registry
seed_image "$shared_images/debian:bookworm-slim" bench/debian:bookworm-slim
seed_image "$shared_images/busybox:latest" bench/busybox:latest
image="$registry/bench/debian:bookworm-slim"
fetch=$(tool img-fetch); unpack=$(tool layer-unpack); spawn=$(tool ctr-spawn); ls_=$(tool img-ls)

echo "== pull 30 MB debian into an empty OCI layout (cold)"
hyperfine -N -w 1 -r "$runs" --export-json "$out/fetch.json" \
  --prepare "rm -rf $out/skopeo $out/store" \
  -n skopeo "skopeo copy -q --src-tls-verify=false docker://$image oci:$out/skopeo:bench" \
  -n img-fetch "$fetch -q --root $out/store $image" >/dev/null
report "$out/fetch.json"

echo "== re-pull of a present image"
$fetch -q --root "$out/store" "$image" >/dev/null
hyperfine -N -w 1 -r "$((runs * 2))" --export-json "$out/repull.json" \
  -n 'node -e 0' "node -e 0" \
  -n img-fetch "$fetch -q --root $out/store $image" \
  -n 'img-fetch --pull=missing' "$fetch -q --pull=missing --root $out/store $image" >/dev/null
report "$out/repull.json"

echo "== unpack 30 MB debian (one layer) into a directory"
RUNS=$runs bash unpack.sh

echo "== applier scaling: 10x the entries should take about 10x the time"
bash applier-scaling.sh

echo "== fetch + unpack of a cold image (streamed: img-fetch | layer-unpack)"
cmds=(-n 'skopeo + umoci unpack' "bash -c 'skopeo copy -q --src-tls-verify=false docker://$image oci:$out/sk:b && umoci raw unpack --image $out/sk:b $out/umoci-rootfs'"
      -n 'img-fetch | layer-unpack' "bash -c '$fetch -q --root $out/cold $image | $unpack -q --root $out/cold >/dev/null'")
if command -v podman >/dev/null; then
  cmds+=(-n 'podman pull' "podman --runtime runc --root $out/podman --runroot $out/podman-run pull -q --tls-verify=false $image")
fi
hyperfine -N -w 1 -r "$runs" --export-json "$out/cold.json" \
  --prepare "bash -c 'rm -rf $out/sk $out/umoci-rootfs $out/cold $out/podman; mkdir -p $out/cold'" "${cmds[@]}" >/dev/null
report "$out/cold.json"

echo "== run /bin/true from a present image"
bb="$registry/bench/busybox:latest"
$fetch -q --root "$out/store" "$bb" | $unpack -q --root "$out/store" > "$out/rootfs.json"
mkdir -p "$out/bundle"
umoci raw unpack --image "$shared_images/busybox:latest" "$out/bundle/rootfs" 2>/dev/null
(cd "$out/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' config.json)
cmds=(-n 'runc run' "runc run --bundle $out/bundle bench-$$"
      -n 'ctr-spawn < rootfs record' "bash -c '$spawn --root $out/store -- /bin/true < $out/rootfs.json'"
      -n 'img-ls | layer-unpack | ctr-spawn' "bash -c '$ls_ --root $out/store $bb | $unpack -q --root $out/store | $spawn --root $out/store -- /bin/true'")
if command -v podman >/dev/null; then
  podman --runtime runc --root "$out/podman2" --runroot "$out/podman2-run" pull -q --tls-verify=false "$bb" >/dev/null
  cmds+=(-n 'podman run' "podman --runtime runc --root $out/podman2 --runroot $out/podman2-run run --rm --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --network none $bb /bin/true")
fi
hyperfine -N -w 2 -r "$((runs * 2))" --export-json "$out/run.json" "${cmds[@]}" >/dev/null
report "$out/run.json"

echo "== 100 MB through a published port (ctr-spawn -p, the userspace relay) beside the host's loopback (bench/ports.sh)"
RUNS=$runs bash ports.sh

echo "== img-build beside buildah bud: a multi-step Dockerfile cold and cached (bench/build.sh)"
RUNS=$runs bash build.sh

echo "== the cost of durable writes: pull + unpack and img-build with and without eatmydata (bench/durability.sh)"
RUNS=$runs bash durability.sh
rm -rf "$out"
