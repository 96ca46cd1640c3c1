#!/usr/bin/env bash
# Scale figures for make bench (issue 17): what grows.
#   img-ls with 1,000 images in the store (one image tagged ~1,000 times plus distinct small images);
#   a 200-layer image: img-fetch, layer-unpack, overlay-mount beside a 20-layer one (time per layer flat?);
#   a 1 GB layer: img-fetch and layer-unpack, peak RSS (goal: under 150 MB);
#   two layers of 20,000 small files unpacked at once: peak RSS (goal: under 150 MB);
#   50 containers started at once (ctr-spawn -d): wall time, peak RSS per supervisor.
# bash bench/scale.sh REGISTRY (run.sh passes its registry and $results; alone it starts its own).
# BENCH_QUICK=1: 200 images, 50 layers, a 200 MB layer, 5,000 files a layer, 10 containers. Asserts nothing; a step that
# fails prints why and the others still run.
set -uo pipefail
cd "$(dirname "$0")"
source ./lib.sh
work=$(mktemp -d /tmp/conveyor-scale.XXXXXX)
own_results=""
if [ -z "${results:-}" ]; then results="$work/results"; own_results=1; mkdir -p "$results"; fi
quick=${BENCH_QUICK:-}
if [ -n "$quick" ]; then
  images=200; layers=50; big=$((200 << 20)); files=5000; containers=10; runs=2
else
  images=1000; layers=200; big=$((1 << 30)); files=20000; containers=50; runs=${BENCH_RUNS:-5}
fi
fetch=$(tool img-fetch); unpack=$(tool layer-unpack); spawn=$(tool ctr-spawn); mount_=$(tool overlay-mount)
store="$work/store"

finish() {
  if [ -d "$store/containers" ]; then
    node "$bench_root/tools/ctr-rm/bin/ctr-rm.js" -q -f --root "$store" $(ls "$store/containers" 2>/dev/null | grep -E '^[0-9a-f]{64}$') >/dev/null 2>&1 || true
    $mount_ -q --unmount --root "$store" $(ls "$store/containers" 2>/dev/null | grep -E '^[0-9a-f]{64}$') >/dev/null 2>&1 || true
  fi
  [ -n "${registry_pid:-}" ] && stop_registry
  rm -rf "$work"
}
trap finish EXIT
if [ -n "${1:-}" ]; then registry=$1; else start_registry; trap finish EXIT; fi

# ---- img-ls with N images
echo "== img-ls with $images images in the store"
skopeo copy -q --dest-tls-verify=false "oci:$shared_images/busybox:latest" "docker://$registry/scale/busybox:latest"
$fetch -q --root "$store" "$registry/scale/busybox:latest" >/dev/null
distinct=20
for i in $(seq 1 $distinct); do
  node gen-image.mjs "$work/small-$i" "small$i" 1 $((i * 512)) >/dev/null
  node "$bench_root/tools/img-import/bin/img-import.js" -q --root "$store" --ref "scale/small:$i" "$work/small-$i" >/dev/null 2>"$work/import.err" \
    || { echo "  img-import of a generated layout failed: $(tail -2 "$work/import.err")"; break; }
  rm -rf "$work/small-$i"
done
targets=(); for i in $(seq 1 $((images - distinct - 1))); do targets+=("scale/many:t$i"); done
node "$bench_root/tools/img-tag/bin/img-tag.js" -q --root "$store" "$registry/scale/busybox:latest" "${targets[@]}"
count=$(node "$bench_root/tools/img-ls/bin/img-ls.js" --root "$store" | wc -l)
echo "  the store lists $count images"
measure scale-ls "$runs" 1 "" "img-ls ($count images)" "$(tool img-ls) --root $store" "img-ls -q ($count images)" "$(tool img-ls) -q --root $store"

# ---- a many-layer image beside a 20-layer one
for n in 20 "$layers"; do
  echo "== a $n-layer image (4 KiB per layer): img-fetch, layer-unpack, overlay-mount"
  node gen-image.mjs "$work/layers-$n" latest "$n" 4096
  skopeo copy -q --dest-tls-verify=false "oci:$work/layers-$n:latest" "docker://$registry/scale/layers$n:latest"
  rm -rf "$work/layers-$n"
  ref="$registry/scale/layers$n:latest"
  if r=$(timed $fetch -q --root "$store" "$ref"); then
    note layers "img-fetch $n layers" ${r% *} ${r#* } "img-fetch --root STORE $ref"
  fi
  $fetch --root "$store" "$ref" > "$work/layer-records-$n.json" 2>/dev/null
  if r=$(timed bash -c "$unpack --root $store < $work/layer-records-$n.json > $work/rootfs-$n.json"); then
    note layers "layer-unpack $n layers" ${r% *} ${r#* } "img-fetch --root STORE $ref | layer-unpack --root STORE"
  fi
  $unpack --root "$store" < "$work/layer-records-$n.json" > "$work/rootfs-$n.json" 2>/dev/null
  if r=$(timed bash -c "$mount_ --root $store < $work/rootfs-$n.json > $work/mount-$n.json"); then
    note layers "overlay-mount $n layers" ${r% *} ${r#* } "overlay-mount --root STORE < rootfs-record"
    if true; then
      merged=$(node -e 'const r=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").trim().split("\n").pop()); console.log(r.target ?? "")' "$work/mount-$n.json")
      have=$(ls "$merged" 2>/dev/null | grep -c '^layer-')
      echo "  the merged tree shows $have of $n layer files"
    fi
    $mount_ -q --unmount --root "$store" < "$work/mount-$n.json" >/dev/null 2>&1 || true
  else
    echo "  overlay-mount of $n layers FAILED: $(tail -3 "$results/timed.err")"
  fi
done

# ---- a big layer
mb=$((big >> 20))
echo "== one $mb MB layer (uncompressed tar): img-fetch, layer-unpack (goal: peak RSS under 150 MB)"
node gen-image.mjs "$work/big" latest 1 "$big" tar
skopeo copy -q --dest-tls-verify=false "oci:$work/big:latest" "docker://$registry/scale/big:latest"
rm -rf "$work/big"
ref="$registry/scale/big:latest"
if r=$(timed bash -c "$fetch --root $store $ref > $work/big.json"); then
  note big "img-fetch $mb MB layer" ${r% *} ${r#* } "img-fetch --root STORE $ref"
fi
if r=$(timed bash -c "$unpack --root $store < $work/big.json > $work/big-rootfs.json"); then
  note big "layer-unpack $mb MB layer" ${r% *} ${r#* } "layer-unpack --root STORE < layer-records"
fi
node "$bench_root/tools/img-rm/bin/img-rm.js" -q --root "$store" "$ref" >/dev/null 2>&1 || true
node "$bench_root/tools/img-prune/bin/img-prune.js" -q --root "$store" >/dev/null 2>&1 || true

# ---- many small files: two layers unpacked at once (layer-unpack's default --jobs 2)
echo "== two layers of $files files each (1,000 bytes a file), unpacked at once (goal: peak RSS under 150 MB)"
node gen-image.mjs "$work/files" latest 2 $((files * 1000)) gzip "$files"
skopeo copy -q --dest-tls-verify=false "oci:$work/files:latest" "docker://$registry/scale/files:latest"
rm -rf "$work/files"
ref="$registry/scale/files:latest"
$fetch --root "$store" "$ref" > "$work/files.json" 2>/dev/null
if r=$(timed bash -c "$unpack --root $store < $work/files.json > $work/files-rootfs.json"); then
  note files "layer-unpack 2 x $files files" ${r% *} ${r#* } "layer-unpack --root STORE < layer-records (2 layers of $files files)"
fi
node "$bench_root/tools/img-rm/bin/img-rm.js" -q --root "$store" "$ref" >/dev/null 2>&1 || true
node "$bench_root/tools/img-prune/bin/img-prune.js" -q --root "$store" >/dev/null 2>&1 || true

# ---- many containers at once
echo "== $containers containers started at once (ctr-spawn -d ... sleep 300)"
$fetch -q --root "$store" "$registry/scale/busybox:latest" | $unpack -q --root "$store" > "$work/bb-rootfs.json"
cat > "$work/spawn-many.sh" <<SH
for i in \$(seq 1 $containers); do $spawn -d -q --root $store -- sleep 300 < $work/bb-rootfs.json & done
wait
SH
if r=$(timed bash "$work/spawn-many.sh"); then
  note many "ctr-spawn -d x$containers (wall)" ${r% *} ${r#* } "ctr-spawn -d --root STORE -- sleep 300 < rootfs-record (x$containers, in parallel)"
fi
running=0; sup_kb=(); 
for st in "$store"/containers/*/state.json; do
  [ -f "$st" ] || continue
  pid=$(node -e 'const s=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); console.log(s.supervisor?.pid ?? "")' "$st")
  [ -n "$pid" ] && [ -r "/proc/$pid/status" ] || continue
  running=$((running + 1))
  sup_kb+=("$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")")
done
if [ "$running" -gt 0 ]; then
  max=$(printf '%s\n' "${sup_kb[@]}" | sort -n | tail -1)
  med=$(printf '%s\n' "${sup_kb[@]}" | sort -n | sed -n "$(( (running + 1) / 2 ))p")
  echo "  $running supervisors running; peak RSS per supervisor: median $((med / 1024)) MB, max $((max / 1024)) MB"
  note many "supervisor peak RSS (median of $running)" 0 "$med" "VmHWM of each container's supervisor (/proc/PID/status)"
fi
