# Shared by the bench scripts: tool paths, the shared images, the loopback
# registry (scripts/registry.sh) and hyperfine reports.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared_images="$bench_root/../shared/images"
tool() { echo "node $bench_root/tools/$1/bin/$1.js"; }
# Node spawning runc and nothing else (bench/spawn-floor.cjs): the floor of any ctr-spawn written in Node.
spawn_floor="node $bench_root/bench/spawn-floor.cjs"

# This machine's environment sets NODE_EXTRA_CA_CERTS (to the system CA bundle, next to a dozen other
# tools' CA variables), and Node parses that file at every process start: node -e 0 took 0.105-0.118 s
# with it, 0.042-0.049 s without (~55 ms of CPU each time). That is the environment's cost, not a tool's,
# and no Go peer pays it: the figures are taken without it, as on a machine where nobody set it, and
# run.sh measures `node -e 0` with it beside them. The tools still honour it when a user sets it.
bench_extra_ca_certs=${NODE_EXTRA_CA_CERTS:-}
unset NODE_EXTRA_CA_CERTS

source "$bench_root/scripts/registry.sh"

require_shared_images() {
  if [ ! -f "$shared_images/debian/index.json" ]; then
    echo "bench: $shared_images is absent; the benchmarks measure those images, nothing to do" >&2
    exit 0
  fi
}

# hyperfine --export-json → "name: median s" lines and ratios against the first command, with the
# peak RSS from RSS_TSV (key, name, kB) when given.
report() { # JSON_FILE [RSS_TSV KEY]
  node -e '
    const fs = require("fs");
    const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8")).results;
    const rss = new Map();
    if (process.argv[2] && fs.existsSync(process.argv[2]))
      for (const l of fs.readFileSync(process.argv[2], "utf8").split("\n")) {
        const [k, n, kb] = l.split("\t");
        if (k === process.argv[3]) rss.set(n, kb);
      }
    const base = r[0].median;
    for (const x of r) {
      const mem = rss.get(x.command) ? `   peak RSS ${(rss.get(x.command) / 1024).toFixed(0)} MB` : "";
      console.log(`  ${x.command.padEnd(36)} median ${x.median.toFixed(3)} s   ${(x.median / base).toFixed(2)}x of ${r[0].command}${mem}`);
    }
  ' "$@"
}

# measure KEY RUNS WARMUP PREPARE NAME CMD [NAME CMD]...: hyperfine (-N) of the commands into
# $results/KEY.json, then each command once more under GNU time for its peak RSS (of the largest
# process it ran; a pipeline's figure is its biggest stage) into $results/rss.tsv. Prints the medians.
measure() {
  local key=$1 runs=$2 warm=$3 prep=$4; shift 4
  local args=() names=() cmds=()
  # hyperfine -N runs --prepare without a shell too: a script file keeps `;` and redirections working.
  if [ -n "$prep" ]; then printf '%s\n' "$prep" > "$results/$key.prepare.sh"; args+=(--prepare "bash $results/$key.prepare.sh"); fi
  while [ $# -gt 0 ]; do
    args+=(-n "$1" "$2"); names+=("$1"); cmds+=("$2")
    printf '%s\t%s\t%s\n' "$key" "$1" "$2" >> "$results/commands.tsv"
    shift 2
  done
  if ! hyperfine -N -i -w "$warm" -r "$runs" --export-json "$results/$key.json" "${args[@]}" >/dev/null 2>"$results/$key.err"; then
    echo "  $key: hyperfine failed: $(tail -3 "$results/$key.err")"
    return 0
  fi
  local i kb
  for i in "${!names[@]}"; do
    if [ -n "$prep" ]; then bash -c "$prep" >/dev/null 2>&1 || true; fi
    # hyperfine -i keeps going past a failing command: this run says whether it failed (failed.tsv).
    if ! /usr/bin/time -f %M -o "$results/rss.tmp" bash -c "${cmds[$i]}" >/dev/null 2>"$results/cmd.err"; then
      echo "  ${names[$i]}: FAILED: $(tail -2 "$results/cmd.err" | tr '\n' ' ')"
      printf '%s\t%s\n' "$key" "${names[$i]}" >> "$results/failed.tsv"
    fi
    kb=$(tail -1 "$results/rss.tmp")
    printf '%s\t%s\t%s\n' "$key" "${names[$i]}" "$kb" >> "$results/rss.tsv"
  done
  report "$results/$key.json" "$results/rss.tsv" "$key"
}

# note KEY NAME SECONDS RSS_KB COMMAND: a figure measured by hand (the scale runs) for the table.
note() {
  printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" >> "$results/notes.tsv"
  printf '  %-40s %8.3f s   peak RSS %s MB\n' "$2" "$3" "$(( ${4:-0} / 1024 ))"
}

# peak_rss_of CMD...: runs CMD under GNU time; prints "SECONDS KB" (wall time, peak RSS of its largest process).
timed() {
  /usr/bin/time -f '%e %M' -o "$results/timed.tmp" "$@" >/dev/null 2>"$results/timed.err" || {
    echo "  failed: $* : $(tail -3 "$results/timed.err")" >&2
    tail -1 "$results/timed.tmp" | sed 's/^Command exited.*//'; return 1
  }
  tail -1 "$results/timed.tmp"
}

# rusage_bin DIR: bench/rusage.c compiled into DIR (once), for measure_ab; prints its path.
rusage_bin() {
  if [ ! -x "$1/rusage" ]; then
    command -v cc >/dev/null || { echo "bench: cc missing (make setup: gcc, libc6-dev)" >&2; return 1; }
    cc -O2 -o "$1/rusage" "$bench_root/bench/rusage.c" || return 1
  fi
  echo "$1/rusage"
}

# measure_interleaved KEY ROUNDS WARMUP PREP NAME CMD [NAME CMD]...: measure's arguments, measured as measure_ab does
# (interleaved run by run, each round in a new order, wall and CPU), with PREP (bash, untimed) before every run as
# hyperfine's --prepare. For the rows whose ratio is a goal: in hyperfine's blocks, one command's runs all came
# after another's, and a machine that drifted in between (load, writeback, dockerd's own work) moved the ratio.
# PREP (removing what a run pulled) also runs after each run, then a sync and a second's rest: the removal's
# discards and writeback would otherwise land in the next run, whichever command that is.
measure_interleaved() {
  local key=$1 rounds=$2 warm=$3 prep=$4; shift 4
  local args=()
  if [ -n "$prep" ]; then
    printf '%s\n' "$prep" > "$results/$key.prepare.sh"
    args+=(--prepare "bash $results/$key.prepare.sh" --cleanup "bash $results/$key.prepare.sh; sync" --settle 1)
  fi
  while [ $# -gt 0 ]; do args+=(-n "$1" "$2"); shift 2; done
  measure_ab "$key" "$rounds" "$warm" "${args[@]}"
}

# measure_ab KEY ROUNDS WARMUP [ab.mjs options] [-x K] [-p SH] [-i FILE] -n NAME CMD [...]: the commands interleaved run by run
# (bench/ab.mjs: each round in a new random order; wall and CPU of each run) into $results/KEY.json, with
# each command's median peak RSS in $results/rss.tsv, its command in commands.tsv and its failures in
# failed.tsv, as measure does. Prints the runner's lines.
measure_ab() {
  local key=$1 rounds=$2 warm=$3; shift 3
  local rusage
  rusage=$(rusage_bin "$results") || return 0
  local args=("$@") i stdin=""
  for ((i = 0; i < ${#args[@]}; i++)); do
    # -i FILE: the next command's stdin, shown as a redirection in the document's command.
    if [ "${args[$i]}" = -i ]; then stdin=" < ${args[$((i + 1))]}"; i=$((i + 1)); fi
    if [ "${args[$i]}" = -n ]; then printf '%s\t%s\t%s\n' "$key" "${args[$((i + 1))]}" "${args[$((i + 2))]}$stdin" >> "$results/commands.tsv"; i=$((i + 2)); stdin=""; fi
  done
  if ! node "$bench_root/bench/ab.mjs" --out "$results/$key.json" --rusage "$rusage" --rounds "$rounds" --warmup "$warm" "$@"; then
    echo "  $key: bench/ab.mjs failed"
    rm -f "$results/$key.json"
    return 0
  fi
  node -e '
    const fs = require("fs");
    const [file, key, dir] = process.argv.slice(1);
    for (const r of JSON.parse(fs.readFileSync(file, "utf8")).results) {
      if (r.rss_median_kb !== undefined) fs.appendFileSync(`${dir}/rss.tsv`, `${key}\t${r.command}\t${Math.round(r.rss_median_kb)}\n`);
      if (r.failed) fs.appendFileSync(`${dir}/failed.tsv`, `${key}\t${r.command}\n`);
    }
  ' "$results/$key.json" "$key" "$results"
}

# prepare_spawn_bundles (needs $out, $bb, $fetch, $unpack, $spawn): $out/rootfs.json (busybox pulled and unpacked
# into $out/store), $out/bundle (`runc spec`'s default bundle running /bin/true) and $out/ours with $ours_prepare and
# $ours_root: the config.json ctr-spawn itself writes, for runc alone. Used by run.sh and spawn.sh.
prepare_spawn_bundles() {
  local kept_before kept_id kept
  $fetch -q --root "$out/store" "$bb" | $unpack -q --root "$out/store" > "$out/rootfs.json"
  mkdir -p "$out/bundle"
  umoci raw unpack --image "$shared_images/busybox:latest" "$out/bundle/rootfs" 2>/dev/null
  (cd "$out/bundle" && runc spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"/"\/bin\/true"/' config.json)
  # runc run of the very config.json ctr-spawn writes (what its runs give runc: Docker's seccomp profile for two
  # architectures, a cgroup, masked and read-only paths, the overlay rootfs runc mounts itself, the same --root on a
  # tmpfs and --log), taken from one --keep run: runc's own share of a ctr-spawn run, where `runc spec`'s default
  # bundle above has none of that. Each timed run gets a fresh upper and work dir and cgroupsPath (untimed: hyperfine
  # --prepare), as each ctr-spawn container does; --net none's new, empty network namespace is kept.
  kept_before=$(ls "$out/store/containers" 2>/dev/null || true)
  $spawn --root "$out/store" --net none --keep -- /bin/true < "$out/rootfs.json"
  kept_id=$(comm -13 <(printf '%s\n' "$kept_before" | sort) <(ls "$out/store/containers" | sort) | head -1)
  kept="$out/store/containers/$kept_id"
  ours="$out/ours"; ours_root=/run/conveyor-bench-runc.$$
  mkdir -p "$ours/merged"
  cp "$kept/hostname" "$kept/hosts" "$kept/resolv.conf" "$ours/"
  cp -a "$kept/upper" "$ours/upper-template"
  sed "s|$kept|$ours|g; s|\"/conveyor/$kept_id\"|\"/conveyor/@CGROUP@\"|" "$kept/config.json" > "$ours/config.template"
  grep -q '@CGROUP@' "$ours/config.template" && ! grep -q "$kept_id\"" "$ours/config.template" || { echo "bench: ctr-spawn's config.json (from $kept) is not what bench/lib.sh expects" >&2; return 1; }
  $(tool ctr-rm) -q --root "$out/store" "$kept_id" >/dev/null
  ours_prepare="cd $ours && rm -rf upper work && cp -a upper-template upper && mkdir work && sed 's|@CGROUP@|bench-{run}-'\$RANDOM'|' config.template > config.json"
}
