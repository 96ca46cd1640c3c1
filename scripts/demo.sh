#!/usr/bin/env bash
# make demo: a local registry (Debian's docker-registry, loopback only) seeded with
# a small busybox image built by umoci, then a pull-and-run of it with conveyor-run.
# Run from the checkout after `make setup` (make demo does that first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/conveyor-demo.XXXXXX)
source "$here/registry.sh"
cleanup() {
  local status=$?
  stop_registry
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

for cmd in docker-registry umoci skopeo runc; do
  command -v "$cmd" >/dev/null || { echo "demo: $cmd is missing: run 'make setup' as root first" >&2; exit 1; }
done

# 1. A registry on a free loopback port.
start_registry
trap cleanup EXIT # start_registry set its own
echo "demo: registry at $registry" >&2

# 2. A busybox image built by an independent tool (umoci), pushed with skopeo.
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:latest" >/dev/null
umoci unpack --image "$work/layout:latest" "$work/bundle" >/dev/null
rootfs="$work/bundle/rootfs"
mkdir -p "$rootfs"/{bin,etc,tmp,root,proc,sys,dev}
cp /bin/busybox "$rootfs/bin/busybox"
for applet in sh echo cat ls id hostname uname ps env; do ln -s busybox "$rootfs/bin/$applet"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$rootfs/etc/passwd"
printf 'root:x:0:\n' > "$rootfs/etc/group"
umoci repack --image "$work/layout:latest" "$work/bundle" >/dev/null
umoci config --image "$work/layout:latest" --config.cmd sh \
  --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin >/dev/null
image="$registry/demo/busybox:latest"
seed_image "$work/layout:latest" demo/busybox:latest
echo "demo: pushed $image" >&2

# 3. Pull and run it: img-fetch | layer-unpack | ctr-spawn.
echo "demo: conveyor-run $image sh -c '...'" >&2
node "$here/run.mjs" "$image" sh -c 'echo "hello from a conveyor container: $(hostname), pid $$, $(ps | wc -l) processes visible"; id'
