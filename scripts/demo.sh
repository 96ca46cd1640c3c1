#!/usr/bin/env bash
# make demo: a local registry (Debian's docker-registry, loopback only) seeded with
# a small busybox image built by umoci, then a pull-and-run of it with conveyor-run.
# Run from the checkout after `make setup` (make demo does that first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/conveyor-demo.XXXXXX)
registry_pid=
cleanup() {
  local status=$?
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

for cmd in docker-registry umoci skopeo runc; do
  command -v "$cmd" >/dev/null || { echo "demo: $cmd is missing: run 'make setup' as root first" >&2; exit 1; }
done

# 1. A registry on a free loopback port.
port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
cat > "$work/registry.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $work/registry } }
http: { addr: 127.0.0.1:$port }
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
echo "demo: registry at 127.0.0.1:$port" >&2

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
image="127.0.0.1:$port/demo/busybox:latest"
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://$image"
echo "demo: pushed $image" >&2

# 3. Pull and run it: img-fetch | layer-unpack | ctr-spawn.
echo "demo: conveyor-run $image sh -c '...'" >&2
node "$here/run.mjs" "$image" sh -c 'echo "hello from a conveyor container: $(hostname), pid $$, $(ps | wc -l) processes visible"; id'
