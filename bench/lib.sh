# Shared by the bench scripts: tool paths, the shared images, the loopback
# registry (scripts/registry.sh) and hyperfine reports.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared_images="$bench_root/../shared/images"
tool() { echo "node $bench_root/tools/$1/bin/$1.js"; }

source "$bench_root/scripts/registry.sh"

require_shared_images() {
  if [ ! -f "$shared_images/debian/index.json" ]; then
    echo "bench: $shared_images is absent; the benchmarks measure those images, nothing to do" >&2
    exit 0
  fi
}

# hyperfine --export-json → "name: median s" lines and ratios against the first command.
report() { # JSON_FILE
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).results;
    const base = r[0].median;
    for (const x of r) console.log(`  ${x.command.padEnd(28)} median ${x.median.toFixed(3)} s   ${(x.median / base).toFixed(2)}x of ${r[0].command}`);
  ' "$1"
}
