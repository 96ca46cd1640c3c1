# Shared by the bench scripts: a loopback registry seeded with test images.
# Source it; call start_registry, then seed_image LAYOUT:TAG NAME:TAG.

bench_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shared_images="$bench_root/../shared/images"
tool() { echo "node $bench_root/tools/$1/bin/$1.js"; }

start_registry() {
  registry_dir=$(mktemp -d /tmp/conveyor-bench-registry.XXXXXX)
  registry_port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  cat > "$registry_dir/config.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $registry_dir/data } }
http: { addr: 127.0.0.1:$registry_port }
YAML
  docker-registry serve "$registry_dir/config.yml" >"$registry_dir/log" 2>&1 &
  registry_pid=$!
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$registry_port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  registry="127.0.0.1:$registry_port"
  trap stop_registry EXIT
}

stop_registry() {
  if [ -n "${registry_pid:-}" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "${registry_dir:-/nonexistent}"
}

seed_image() { # LAYOUT:TAG NAME:TAG
  skopeo copy -q --dest-tls-verify=false "oci:$1" "docker://$registry/$2"
}

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
