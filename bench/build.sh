#!/usr/bin/env bash
# Build benchmark: img-build beside `buildah bud --layers` (Debian's buildah, the peer) on the same
# multi-step Dockerfile and context: FROM the 30 MB debian (../shared/images, served by a loopback
# registry), three RUNs, ENV/WORKDIR/CMD, and a COPY of a 2,000-file context.
#   cold:   an empty store / empty buildah storage: pull FROM, run every step
#   cached: the same build again, nothing changed: every step a cache hit (beside `node -e 0` and a
#           sha256sum of the context: what an unchanged rebuild cannot avoid)
# Prints hyperfine medians, the ratios against the goals (no slower than buildah cold, 10x faster
# cached) and each builder's peak RSS (/usr/bin/time -f %M: the largest process of the run).
set -euo pipefail
cd "$(dirname "$0")"
source ./lib.sh
require_shared_images
for t in hyperfine buildah jq /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "build: $t is not installed (make setup)" >&2; exit 1; }
done
RUNS=${RUNS:-5}
out=$(mktemp -d /tmp/conveyor-bench-build.XXXXXX)
start_registry
# stop_registry is the EXIT trap; buildah's storage (unmounted) and our work dir go with it, on failure too.
trap 'eval "${wipe_buildah:-true}"; rm -rf "$out"; stop_registry' EXIT
seed_image "$shared_images/debian:bookworm-slim" bench/debian:bookworm-slim
build=$(tool img-build)

# The context: 40 directories of 50 files (~1 KB each), a Dockerfile, a .dockerignore.
ctx="$out/context"
node -e '
  const fs = require("fs"), path = require("path");
  const [ctx] = process.argv.slice(1);
  for (let d = 0; d < 40; d++) {
    const dir = path.join(ctx, "src", `pkg${d}`);
    fs.mkdirSync(dir, { recursive: true });
    for (let f = 0; f < 50; f++) fs.writeFileSync(path.join(dir, `file${f}.txt`), `package ${d} file ${f}\n`.repeat(40));
  }
' "$ctx"
printf '*.log\n' > "$ctx/.dockerignore"
cat > "$ctx/Dockerfile" <<EOF
FROM $registry/bench/debian:bookworm-slim
ENV APP=/opt/app
RUN mkdir -p /opt/app && echo one > /opt/app/one && rm -rf /usr/share/doc /usr/share/man
COPY src/ /opt/app/src/
RUN find /opt/app -type f | wc -l > /opt/app/count && chmod -R go-w /opt/app
RUN useradd -m -u 1000 app 2>/dev/null || echo 'app:x:1000:1000::/home/app:/bin/sh' >> /etc/passwd
WORKDIR /opt/app
USER app
CMD ["cat", "count"]
EOF

store="$out/store"
b_root="$out/buildah"
buildah_cmd="buildah --root $b_root/root --runroot $b_root/runroot --storage-driver overlay bud --runtime runc --ulimit nofile=20000:20000 --ulimit nproc=4096:4096 --tls-verify=false --network none --layers -q -t bench $ctx"
ours_cmd="$build -q --root $store -t bench $ctx"
# buildah's overlay storage may leave mounts under its root: unmount before removing.
wipe_buildah="bash -c 'buildah --root $b_root/root --runroot $b_root/runroot --storage-driver overlay rmi -a -f >/dev/null 2>&1; grep -o \" $b_root[^ ]*\" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l; rm -rf $b_root'"

# One build each first: it must work, and it shows the output once.
eval "$ours_cmd" >/dev/null || { echo "build: img-build failed on the bench context" >&2; exit 1; }
eval "$buildah_cmd" >/dev/null || { echo "build: buildah bud failed on the bench context" >&2; exit 1; }

echo "== build a multi-step Dockerfile (FROM debian, 3 RUNs, COPY of 2,000 files), cold"
hyperfine -N -r "$RUNS" --export-json "$out/cold.json" \
  -n 'buildah bud --layers (cold)' --prepare "$wipe_buildah" "$buildah_cmd" \
  -n 'img-build (cold)' --prepare "rm -rf $store" "$ours_cmd" >/dev/null
report "$out/cold.json"

echo "== the same build again, nothing changed (cached)"
eval "$ours_cmd" >/dev/null
eval "$buildah_cmd" >/dev/null
hyperfine -N -w 1 -r "$((RUNS * 2))" --export-json "$out/cached.json" \
  -n 'buildah bud --layers (cached)' "$buildah_cmd" \
  -n 'img-build (cached)' "$ours_cmd" \
  -n 'node -e 0' 'node -e 0' \
  -n 'sha256sum of the context' "bash -c 'find $ctx -type f -print0 | xargs -0 sha256sum >/dev/null'" >/dev/null
report "$out/cached.json"

# Peak RSS of one more run of each (cold after a wipe, then cached).
rss() { /usr/bin/time -f %M -o "$out/rss" bash -c "$1" >/dev/null 2>&1; cat "$out/rss"; }
eval "$wipe_buildah"; rm -rf "$store"
b_cold=$(rss "$buildah_cmd"); o_cold=$(rss "$ours_cmd")
b_cached=$(rss "$buildah_cmd"); o_cached=$(rss "$ours_cmd")
jq -r --slurpfile cached "$out/cached.json" \
  --arg bc "$b_cold" --arg oc "$o_cold" --arg bk "$b_cached" --arg ok "$o_cached" '
  (.results | map({(.command): .median}) | add) as $c
  | ($cached[0].results | map({(.command): .median}) | add) as $k
  | "build medians: cold img-build \($c["img-build (cold)"] * 1000 | floor) ms, buildah \($c["buildah bud --layers (cold)"] * 1000 | floor) ms; cached img-build \($k["img-build (cached)"] * 1000 | floor) ms, buildah \($k["buildah bud --layers (cached)"] * 1000 | floor) ms",
    "cold:   buildah / img-build = \($c["buildah bud --layers (cold)"] / $c["img-build (cold)"] * 100 | round / 100)x (goal >= 1)",
    "cached: buildah / img-build = \($k["buildah bud --layers (cached)"] / $k["img-build (cached)"] * 100 | round / 100)x (goal >= 10)",
    "peak RSS: cold img-build \($oc | tonumber / 1024 | floor) MB, buildah \($bc | tonumber / 1024 | floor) MB; cached img-build \($ok | tonumber / 1024 | floor) MB, buildah \($bk | tonumber / 1024 | floor) MB"' "$out/cold.json"
