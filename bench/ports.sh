#!/usr/bin/env bash
# Throughput through a published port (ctr-spawn -p: the userspace relay into
# the container's network namespace) beside the same transfer on the host's
# loopback: busybox httpd serves one 100 MB file both ways, curl fetches it
# to /dev/null. Medians and the ratio; asserts nothing. Loopback only.
set -euo pipefail
cd "$(dirname "$0")"
source ./lib.sh
require_shared_images
command -v hyperfine >/dev/null || { echo "bench: hyperfine missing (make setup)" >&2; exit 1; }
runs=${RUNS:-5}
out=$(mktemp -d /tmp/conveyor-bench-ports.XXXXXX)
root="$out/store"
spawn=$(tool ctr-spawn)
host_pid=""
container=""
cleanup() {
  [ -n "$container" ] && $(tool ctr-rm) -q --root "$root" -f "$container" >/dev/null 2>&1 || true
  [ -n "$host_pid" ] && kill "$host_pid" 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT

mkdir -p "$out/www"
head -c 100M /dev/urandom > "$out/www/blob"
$(tool img-import) -q --root "$root" --ref bench/busybox:latest "$shared_images/busybox" | $(tool layer-unpack) -q --root "$root" > "$out/rootfs.json"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

host_port=$(free_port)
busybox httpd -f -p "127.0.0.1:$host_port" -h "$out/www" &
host_pid=$!
published=$(free_port)
container=$($spawn --root "$root" -d -p "127.0.0.1:$published:80" -v "$out/www:/www:ro" -- busybox httpd -f -p 80 -h /www < "$out/rootfs.json" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).id))')
for port in "$host_port" "$published"; do
  for _ in $(seq 50); do curl -sf -o /dev/null "http://127.0.0.1:$port/blob" && break; sleep 0.1; done
done

hyperfine -N -w 1 -r "$runs" --export-json "$out/ports.json" \
  -n 'host loopback' "curl -sf -o /dev/null http://127.0.0.1:$host_port/blob" \
  -n 'published port (-p)' "curl -sf -o /dev/null http://127.0.0.1:$published/blob" >/dev/null
report "$out/ports.json"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results;
  for (const x of r) console.log(`  ${x.command.padEnd(28)} ${(100 * 1048576 / x.median / 1e6).toFixed(0)} MB/s`);
' "$out/ports.json"
