# A throwaway loopback registry (Debian's docker-registry) for the demo and the
# benchmarks. Source it, then: start_registry (sets $registry = 127.0.0.1:PORT and
# stops it on exit), seed_image LAYOUT:TAG NAME:TAG.

start_registry() {
  registry_dir=$(mktemp -d /tmp/conveyor-registry.XXXXXX)
  registry_port=$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')
  cat > "$registry_dir/config.yml" <<YAML
version: 0.1
log: { level: error, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: $registry_dir/data } }
http: { addr: 127.0.0.1:$registry_port }
YAML
  docker-registry serve "$registry_dir/config.yml" >"$registry_dir/log" 2>&1 &
  registry_pid=$!
  registry="127.0.0.1:$registry_port"
  trap stop_registry EXIT
  for _ in $(seq 100); do curl -fs "http://$registry/v2/" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "registry: did not start; its log:" >&2
  cat "$registry_dir/log" >&2
  return 1
}

stop_registry() {
  local status=$?
  if [ -n "${registry_pid:-}" ]; then kill "$registry_pid" 2>/dev/null; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "${registry_dir:-/nonexistent}"
  return "$status"
}

seed_image() { # LAYOUT:TAG NAME:TAG
  skopeo copy -q --dest-tls-verify=false "oci:$1" "docker://$registry/$2"
}
